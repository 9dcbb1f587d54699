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
    docker_scope: str = field(default_factory=lambda: _env("AIRLAUNCH_DOCKER_SCOPE", "default"))
    """AIRLAUNCH_DOCKER_SCOPE: labels this launcher's task containers; it finds, watches and reaps only those
    (so several stacks can share one Docker engine)."""
    docker_cpu_shares: int = field(default_factory=lambda: int(_env("AIRLAUNCH_DOCKER_CPU_SHARES", "256")))
    """AIRLAUNCH_DOCKER_CPU_SHARES: task containers' CPU weight (Docker's default is 1024). Low, so that when
    tasks saturate the machine the launcher, LocalStack and Airflow (which launch, watch and end them) still
    get the CPU; it only matters under contention. (The launcher's own container runs at 4096.)"""
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
    reap_interval_seconds: float = field(default_factory=lambda: float(_env("AIRLAUNCH_REAP_SECONDS", "30")))
    """AIRLAUNCH_REAP_SECONDS: how often the local launcher sweeps for ended containers and overdue tasks."""
    ecs_family_prefix: str = field(default_factory=lambda: _env("AIRLAUNCH_ECS_FAMILY_PREFIX", "airlaunch"))
    """AIRLAUNCH_ECS_FAMILY_PREFIX: catalog task ``t`` runs task definition family ``<prefix>-t`` (the stack name)."""
    run_role_arn: str = field(default_factory=lambda: os.environ.get("AIRLAUNCH_RUN_ROLE_ARN", ""))
    """AIRLAUNCH_RUN_ROLE_ARN: role whose per-run sessions give an ECS task its own run's files; empty: none."""
    launch_budget_seconds: float = field(default_factory=lambda: float(_env("AIRLAUNCH_LAUNCH_BUDGET_SECONDS", "20")))
    """AIRLAUNCH_LAUNCH_BUDGET_SECONDS: how long one invocation retries RunTask while ECS throttles or has no capacity
    or quota just now; then the launch fails as retryable and Airflow tries it again. Well under the function's
    timeout (60 s on AWS), which must also cover the launch's other calls."""
    ecs_run_task_rate: float = field(default_factory=lambda: float(_env("AIRLAUNCH_ECS_RUN_TASK_RATE", "20")))
    """AIRLAUNCH_ECS_RUN_TASK_RATE: RunTask calls a second that all the launcher's execution environments together
    may make (Fargate's sustained task launch rate, 20 a second per account and Region)."""
    launcher_concurrency: int = field(default_factory=lambda: int(_env("AIRLAUNCH_LAUNCHER_CONCURRENCY", "10")))
    """AIRLAUNCH_LAUNCHER_CONCURRENCY: how many execution environments of the launcher may run at once (the
    function's reserved concurrency, LauncherConcurrency in infra/template.yaml). Each environment spaces its
    RunTask calls by concurrency / AIRLAUNCH_ECS_RUN_TASK_RATE seconds, so that together they stay within it."""


@dataclass(frozen=True)
class RuntimeSettings:
    """Settings of the in-container task runtime, besides what the launcher passes (protocol.ENV_*)."""

    log_flush_seconds: float = field(default_factory=lambda: float(_env("AIRLAUNCH_LOG_FLUSH_SECONDS", "2")))
    """AIRLAUNCH_LOG_FLUSH_SECONDS: the shortest interval between uploads of the running task's log."""
    log_flush_max_seconds: float = field(default_factory=lambda: float(_env("AIRLAUNCH_LOG_FLUSH_MAX_SECONDS", "15")))
    """AIRLAUNCH_LOG_FLUSH_MAX_SECONDS: the longest; in between, a tenth of the task's age (``log_flush_interval``)."""
    log_tail_lines: int = field(default_factory=lambda: int(_env("AIRLAUNCH_LOG_TAIL_LINES", "20")))
    """AIRLAUNCH_LOG_TAIL_LINES: how many last log lines status.json keeps."""
    kill_grace_seconds: float = field(default_factory=lambda: float(_env("AIRLAUNCH_KILL_GRACE_SECONDS", "5")))
    """AIRLAUNCH_KILL_GRACE_SECONDS: time the task gets after SIGTERM before SIGKILL."""
    work_dir: str = field(default_factory=lambda: _env("AIRLAUNCH_WORK_DIR", "/tmp/airlaunch"))
    """AIRLAUNCH_WORK_DIR: scratch folder for params, result, log and notebook."""
    log_part_bytes: int = field(default_factory=lambda: int(_env("AIRLAUNCH_LOG_PART_BYTES", str(1024 * 1024))))
    """AIRLAUNCH_LOG_PART_BYTES: the largest part of the running log uploaded at once."""
    s3_retry_seconds: float = field(default_factory=lambda: float(_env("AIRLAUNCH_S3_RETRY_SECONDS", "300")))
    """AIRLAUNCH_S3_RETRY_SECONDS: how long the results and status.json are retried while S3 fails."""

    def log_flush_interval(self, age: float) -> float:
        """Seconds from an upload of the running log, ``age`` s into the task, to the next one.

        A tenth of the task's age, within the two bounds: the live log of a young task lags by
        seconds, that of a long one by at most the longest interval, and an hour-long task makes
        about 260 uploads instead of 1,800 at a fixed 2 s (each is an S3 PUT: billed on AWS, and
        with 200 tasks running, 100 requests a second that LocalStack's 2 cores could not keep up with).
        """
        return min(self.log_flush_max_seconds, max(self.log_flush_seconds, age / 10))

    def interim_log_uploads(self, seconds: float) -> int:
        """At most how many uploads of the running log a task of ``seconds`` makes."""
        count, age = 0, self.log_flush_interval(0)
        while age <= seconds:
            count, age = count + 1, age + self.log_flush_interval(age)
        return count


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
    retry_seconds: float = field(default_factory=lambda: float(_env("AIRLAUNCH_RETRY_SECONDS", "120")))
    """AIRLAUNCH_RETRY_SECONDS: how long a launch, stop or read is retried while Lambda or S3 fail transiently."""
    retry_max_backoff: float = field(default_factory=lambda: float(_env("AIRLAUNCH_RETRY_MAX_BACKOFF", "10")))
    """AIRLAUNCH_RETRY_MAX_BACKOFF: the longest pause between two retries (they double from 0.5 s)."""
    outage_seconds: float = field(default_factory=lambda: float(_env("AIRLAUNCH_OUTAGE_SECONDS", "900")))
    """AIRLAUNCH_OUTAGE_SECONDS: how long the trigger keeps watching through an S3/Lambda outage before it
    stops the container and fails the task."""
    triggerer_reads_per_second: float = field(
        default_factory=lambda: float(_env("AIRLAUNCH_TRIGGERER_READS_PER_SECOND", "20"))
    )
    """AIRLAUNCH_TRIGGERER_READS_PER_SECOND: the periodic reads (log parts, safety-net status reads, launcher
    checks) one triggerer makes for all its tasks together; with more tasks each reads less often."""
    sweep_seconds: float = field(default_factory=lambda: float(_env("AIRLAUNCH_SWEEP_SECONDS", "15")))
    """AIRLAUNCH_SWEEP_SECONDS: how often each triggerer stops containers whose Airflow task is no longer running."""
    log_read_bytes: int = field(default_factory=lambda: int(_env("AIRLAUNCH_LOG_READ_BYTES", "65536")))
    """AIRLAUNCH_LOG_READ_BYTES: the most of a task's log the trigger reads (and shows) per request."""
    stack_name: str = field(default_factory=lambda: os.environ.get("AIRLAUNCH_STACK_NAME", ""))
    """AIRLAUNCH_STACK_NAME: the deployed stack, whose names the extra link to a task's CloudWatch log stream is
    made of (``/airlaunch/<stack>/tasks/<catalog task>``, airlaunch.aws_names); empty: the cluster named in the
    task's ARN, which ``make deploy`` names after the stack."""


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
