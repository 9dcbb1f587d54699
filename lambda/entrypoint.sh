#!/bin/sh
# On AWS Lambda, AWS_LAMBDA_RUNTIME_API is set and awslambdaric talks to it directly.
# Anywhere else, serve the Lambda Invoke API (on AIRLAUNCH_RIE_ADDRESS, default
# 127.0.0.1:9000) from AWS's Runtime Interface Emulator in front of the same runtime:
# AIRLAUNCH_LAMBDA_CONCURRENCY emulators (default 4) behind one endpoint, because one
# emulator serves a single invocation at a time (see airlaunch/launcher/local_pool.py).
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
  exec python -m airlaunch.launcher.local_pool "$@"
fi
exec python -m awslambdaric "$@"
