#!/bin/sh
# On AWS Lambda, AWS_LAMBDA_RUNTIME_API is set and awslambdaric talks to it directly.
# Anywhere else, AWS's Runtime Interface Emulator serves the Lambda Invoke API
# (on AIRLAUNCH_RIE_ADDRESS, default 0.0.0.0:8080) in front of the same runtime.
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
  exec /usr/local/bin/aws-lambda-rie \
    --runtime-interface-emulator-address "${AIRLAUNCH_RIE_ADDRESS:-0.0.0.0:8080}" \
    python -m awslambdaric "$@"
fi
exec python -m awslambdaric "$@"
