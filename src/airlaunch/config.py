"""Every environment variable airlaunch reads, in one place.

Each side reads its settings once, at start-up, through one of these dataclasses; the
README's configuration reference is generated from the same names. Standard AWS variables
(AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, credentials) are read by boto3 itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from botocore.config import Config

# Every AWS client of the launcher and the Airflow side: throttling (ECS RunTask, Lambda Invoke at a
# large fan-out) is retried with client-side rate limiting instead of failing the task.
ADAPTIVE_RETRIES = Config(retries={"mode": "adaptive", "max_attempts": 10})


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default) or default


def _env_list(name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in os.environ.get(name, "").split(",") if part.strip())


@dataclass(frozen=True)
class LauncherSettings:
    """Settings of the launcher Lambda."""

    bucket: str = field(default_factory=lambda: _env("AIRLAUNCH_BUCKET", "airlaunch-results"))
    """AIRLAUNCH_BUCKET: the S3 bucket that holds params and results."""
    key_prefix: str = field(default_factory=lambda: _env("AIRLAUNCH_KEY_PREFIX", "runs"))
    """AIRLAUNCH_KEY_PREFIX: the key prefix under which every run's files live."""
    catalog_path: str = field(default_factory=lambda: _env("AIRLAUNCH_CATALOG", "tasks/catalog.yaml"))
    """AIRLAUNCH_CATALOG: path of the task catalog YAML (the Lambda image bakes it in)."""
    backend: str = field(default_factory=lambda: _env("AIRLAUNCH_BACKEND", "docker"))
    """AIRLAUNCH_BACKEND: ``docker`` (local) or ``ecs`` (AWS)."""
    docker_network: str = field(default_factory=lambda: _env("AIRLAUNCH_DOCKER_NETWORK", "bridge"))
    """AIRLAUNCH_DOCKER_NETWORK: Docker network for task containers (``host`` in the embedded stack)."""
    task_endpoint_url: str = field(default_factory=lambda: os.environ.get("AIRLAUNCH_TASK_AWS_ENDPOINT_URL", ""))
    """AIRLAUNCH_TASK_AWS_ENDPOINT_URL: AWS endpoint as task containers reach it (LocalStack); empty on AWS."""
    stop_grace_seconds: int = field(default_factory=lambda: int(_env("AIRLAUNCH_STOP_GRACE_SECONDS", "10")))
    """AIRLAUNCH_STOP_GRACE_SECONDS: time between SIGTERM and SIGKILL when a task is stopped."""
    ecs_cluster: str = field(default_factory=lambda: _env("AIRLAUNCH_ECS_CLUSTER", "airlaunch"))
    """AIRLAUNCH_ECS_CLUSTER: ECS cluster name or ARN for the ecs backend."""
    ecs_subnets: tuple[str, ...] = field(default_factory=lambda: _env_list("AIRLAUNCH_ECS_SUBNETS"))
    """AIRLAUNCH_ECS_SUBNETS: comma-separated subnet ids for Fargate tasks."""
    ecs_security_groups: tuple[str, ...] = field(default_factory=lambda: _env_list("AIRLAUNCH_ECS_SECURITY_GROUPS"))
    """AIRLAUNCH_ECS_SECURITY_GROUPS: comma-separated security group ids for Fargate tasks."""
    ecs_assign_public_ip: bool = field(
        default_factory=lambda: _env("AIRLAUNCH_ECS_ASSIGN_PUBLIC_IP", "false").lower() == "true"
    )
    """AIRLAUNCH_ECS_ASSIGN_PUBLIC_IP: ``true`` for subnets without a NAT gateway."""
    ecs_capacity_provider: str = field(default_factory=lambda: os.environ.get("AIRLAUNCH_ECS_CAPACITY_PROVIDER", ""))
    """AIRLAUNCH_ECS_CAPACITY_PROVIDER: e.g. ``FARGATE_SPOT``; empty uses launch type FARGATE."""
    ecs_family_prefix: str = field(default_factory=lambda: _env("AIRLAUNCH_ECS_FAMILY_PREFIX", "airlaunch"))
    """AIRLAUNCH_ECS_FAMILY_PREFIX: catalog task ``t`` runs task definition family ``<prefix>-t`` (the stack name)."""
    run_role_arn: str = field(default_factory=lambda: os.environ.get("AIRLAUNCH_RUN_ROLE_ARN", ""))
    """AIRLAUNCH_RUN_ROLE_ARN: role whose per-run sessions give an ECS task its own run's files; empty: none."""


@dataclass(frozen=True)
class RuntimeSettings:
    """Settings of the in-container task runtime, besides what the launcher passes (protocol.ENV_*)."""

    log_flush_seconds: float = field(default_factory=lambda: float(_env("AIRLAUNCH_LOG_FLUSH_SECONDS", "2")))
    """AIRLAUNCH_LOG_FLUSH_SECONDS: how often the running task's log is uploaded to S3."""
    log_tail_lines: int = field(default_factory=lambda: int(_env("AIRLAUNCH_LOG_TAIL_LINES", "20")))
    """AIRLAUNCH_LOG_TAIL_LINES: how many last log lines status.json keeps."""
    kill_grace_seconds: float = field(default_factory=lambda: float(_env("AIRLAUNCH_KILL_GRACE_SECONDS", "5")))
    """AIRLAUNCH_KILL_GRACE_SECONDS: time the task gets after SIGTERM before SIGKILL."""
    work_dir: str = field(default_factory=lambda: _env("AIRLAUNCH_WORK_DIR", "/tmp/airlaunch"))
    """AIRLAUNCH_WORK_DIR: scratch folder for params, result, log and notebook."""


@dataclass(frozen=True)
class AirflowSettings:
    """Defaults of the Airflow operators, sensor and trigger (each can also be set per task)."""

    aws_conn_id: str = field(default_factory=lambda: _env("AIRLAUNCH_AWS_CONN_ID", "aws_default"))
    """AIRLAUNCH_AWS_CONN_ID: Airflow AWS connection for Lambda and S3 (endpoints, region, credentials)."""
    function_name: str = field(default_factory=lambda: _env("AIRLAUNCH_FUNCTION_NAME", "airlaunch-launcher"))
    """AIRLAUNCH_FUNCTION_NAME: the launcher Lambda (``function`` under the local Runtime Interface Emulator)."""
    poll_interval: float = field(default_factory=lambda: float(_env("AIRLAUNCH_POLL_INTERVAL", "1")))
    """AIRLAUNCH_POLL_INTERVAL: seconds between the trigger's S3 requests for one task."""
    max_xcom_bytes: int = field(default_factory=lambda: int(_env("AIRLAUNCH_MAX_XCOM_BYTES", "49152")))
    """AIRLAUNCH_MAX_XCOM_BYTES: result.json up to this size goes to XCom; larger ones only by S3 key."""
    status_queue: str = field(default_factory=lambda: os.environ.get("AIRLAUNCH_STATUS_QUEUE", ""))
    """AIRLAUNCH_STATUS_QUEUE: SQS queue (name or URL) S3 notifies of each status.json; empty: poll S3 only."""


@dataclass(frozen=True)
class CliSettings:
    """Settings of the ``airlaunch`` results CLI; each has a flag that overrides it.

    The endpoint (AWS_ENDPOINT_URL or ``--endpoint-url``), region and credentials are boto3's own.
    """

    bucket: str = field(default_factory=lambda: _env("AIRLAUNCH_BUCKET", "airlaunch-results"))
    """AIRLAUNCH_BUCKET (``--bucket``): the S3 bucket the launcher writes results to."""
    key_prefix: str = field(default_factory=lambda: _env("AIRLAUNCH_KEY_PREFIX", "runs"))
    """AIRLAUNCH_KEY_PREFIX (``--prefix``): the key prefix under which every run's files live."""
    poll_seconds: float = field(default_factory=lambda: float(_env("AIRLAUNCH_CLI_POLL_SECONDS", "2")))
    """AIRLAUNCH_CLI_POLL_SECONDS (``--interval``): how often ``wait`` and ``log --follow`` look at S3."""
