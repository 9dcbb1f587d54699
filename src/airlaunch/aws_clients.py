"""The botocore client configuration that the Airflow side's and the deploy tool's AWS clients start from.

Throttling (ECS RunTask, Lambda Invoke at a large fan-out, CloudFormation while a stack changes) is
retried with client-side rate limiting instead of failing the call. Not for the task runtime, which
loads botocore only after its SIGTERM handler is set and configures its own retries.
"""

from __future__ import annotations

from botocore.config import Config

ADAPTIVE_RETRIES = Config(retries={"mode": "adaptive", "max_attempts": 10})
