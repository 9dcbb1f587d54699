"""The launcher Lambda's settings, read from its environment once per execution environment.

On AWS the template sets them on the function (infra/template.yaml); locally the stack sets them on
the launcher's container. Standard library only, so the local Lambda endpoint (``local_pool``) can
read its own without loading boto3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from airlaunch.config import env, env_list


@dataclass(frozen=True)
class LauncherSettings:
    """Settings of the launcher Lambda."""

    bucket: str = field(default_factory=lambda: env("AIRLAUNCH_BUCKET", "airlaunch-results"))
    """AIRLAUNCH_BUCKET: the S3 bucket that holds params and results."""
    key_prefix: str = field(default_factory=lambda: env("AIRLAUNCH_KEY_PREFIX", "runs"))
    """AIRLAUNCH_KEY_PREFIX: the key prefix under which every run's files live."""
    catalog_path: str = field(default_factory=lambda: env("AIRLAUNCH_CATALOG", "tasks/catalog.yaml"))
    """AIRLAUNCH_CATALOG: path of the task catalog YAML (the Lambda image bakes it in)."""
    backend: str = field(default_factory=lambda: env("AIRLAUNCH_BACKEND", "docker"))
    """AIRLAUNCH_BACKEND: ``docker`` (local) or ``ecs`` (AWS)."""
    docker_network: str = field(default_factory=lambda: env("AIRLAUNCH_DOCKER_NETWORK", "bridge"))
    """AIRLAUNCH_DOCKER_NETWORK: Docker network for task containers (``host`` in the embedded stack)."""
    docker_scope: str = field(default_factory=lambda: env("AIRLAUNCH_DOCKER_SCOPE", "default"))
    """AIRLAUNCH_DOCKER_SCOPE: labels this launcher's task containers; it finds, watches and reaps only those
    (so several stacks can share one Docker engine)."""
    docker_cpu_shares: int = field(default_factory=lambda: int(env("AIRLAUNCH_DOCKER_CPU_SHARES", "256")))
    """AIRLAUNCH_DOCKER_CPU_SHARES: task containers' CPU weight (Docker's default is 1024). Low, so that when
    tasks saturate the machine the launcher, LocalStack and Airflow (which launch, watch and end them) still
    get the CPU; it only matters under contention. (The launcher's own container runs at 4096.)"""
    task_endpoint_url: str = field(default_factory=lambda: env("AIRLAUNCH_TASK_AWS_ENDPOINT_URL", ""))
    """AIRLAUNCH_TASK_AWS_ENDPOINT_URL: AWS endpoint as task containers reach it (LocalStack); empty on AWS."""
    stop_grace_seconds: int = field(default_factory=lambda: int(env("AIRLAUNCH_STOP_GRACE_SECONDS", "10")))
    """AIRLAUNCH_STOP_GRACE_SECONDS: time between SIGTERM and SIGKILL when a task is stopped."""
    ecs_cluster: str = field(default_factory=lambda: env("AIRLAUNCH_ECS_CLUSTER", "airlaunch"))
    """AIRLAUNCH_ECS_CLUSTER: ECS cluster name or ARN for the ecs backend."""
    ecs_subnets: tuple[str, ...] = field(default_factory=lambda: env_list("AIRLAUNCH_ECS_SUBNETS"))
    """AIRLAUNCH_ECS_SUBNETS: comma-separated subnet ids for Fargate tasks."""
    ecs_security_groups: tuple[str, ...] = field(default_factory=lambda: env_list("AIRLAUNCH_ECS_SECURITY_GROUPS"))
    """AIRLAUNCH_ECS_SECURITY_GROUPS: comma-separated security group ids for Fargate tasks."""
    ecs_assign_public_ip: bool = field(
        default_factory=lambda: env("AIRLAUNCH_ECS_ASSIGN_PUBLIC_IP", "false").lower() == "true"
    )
    """AIRLAUNCH_ECS_ASSIGN_PUBLIC_IP: ``true`` for subnets without a NAT gateway."""
    ecs_capacity_provider: str = field(default_factory=lambda: env("AIRLAUNCH_ECS_CAPACITY_PROVIDER", ""))
    """AIRLAUNCH_ECS_CAPACITY_PROVIDER: e.g. ``FARGATE_SPOT``; empty uses launch type FARGATE."""
    reap_interval_seconds: float = field(default_factory=lambda: float(env("AIRLAUNCH_REAP_SECONDS", "30")))
    """AIRLAUNCH_REAP_SECONDS: how often the local launcher sweeps for ended containers and overdue tasks."""
    ecs_family_prefix: str = field(default_factory=lambda: env("AIRLAUNCH_ECS_FAMILY_PREFIX", "airlaunch"))
    """AIRLAUNCH_ECS_FAMILY_PREFIX: catalog task ``t`` runs task definition family ``<prefix>-t`` (the stack name)."""
    run_role_arn: str = field(default_factory=lambda: env("AIRLAUNCH_RUN_ROLE_ARN", ""))
    """AIRLAUNCH_RUN_ROLE_ARN: role whose per-run sessions give an ECS task its own run's files; empty: none."""
    launch_budget_seconds: float = field(default_factory=lambda: float(env("AIRLAUNCH_LAUNCH_BUDGET_SECONDS", "20")))
    """AIRLAUNCH_LAUNCH_BUDGET_SECONDS: how long one invocation retries RunTask while ECS throttles or has no capacity
    or quota just now; then the launch fails as retryable and Airflow tries it again. Well under the function's
    timeout (60 s on AWS), which must also cover the launch's other calls."""
    ecs_run_task_rate: float = field(default_factory=lambda: float(env("AIRLAUNCH_ECS_RUN_TASK_RATE", "20")))
    """AIRLAUNCH_ECS_RUN_TASK_RATE: RunTask calls a second that all the launcher's execution environments together
    may make (Fargate's sustained task launch rate, 20 a second per account and Region)."""
    launcher_concurrency: int = field(default_factory=lambda: int(env("AIRLAUNCH_LAUNCHER_CONCURRENCY", "10")))
    """AIRLAUNCH_LAUNCHER_CONCURRENCY: how many execution environments of the launcher may run at once (the
    function's reserved concurrency, LauncherConcurrency in infra/template.yaml). Each environment spaces its
    RunTask calls by concurrency / AIRLAUNCH_ECS_RUN_TASK_RATE seconds, so that together they stay within it."""
    log_level: str = field(default_factory=lambda: env("AIRLAUNCH_LOG_LEVEL", "INFO"))
    """AIRLAUNCH_LOG_LEVEL: the level of the launcher's JSON logs."""


@dataclass(frozen=True)
class LocalPoolSettings:
    """Settings of the local Lambda endpoint (``airlaunch.launcher.local_pool``), which stands in for Lambda's
    concurrency off AWS: several Runtime Interface Emulators behind one address."""

    address: str = field(default_factory=lambda: env("AIRLAUNCH_RIE_ADDRESS", "127.0.0.1:9000"))
    """AIRLAUNCH_RIE_ADDRESS: where the local Lambda endpoint listens."""
    concurrency: int = field(default_factory=lambda: int(env("AIRLAUNCH_LAMBDA_CONCURRENCY", "4")))
    """AIRLAUNCH_LAMBDA_CONCURRENCY: how many emulators (execution environments) serve behind it."""
    port_base: int = field(default_factory=lambda: int(env("AIRLAUNCH_RIE_PORT_BASE", "19100")))
    """AIRLAUNCH_RIE_PORT_BASE: emulator i listens on base + i, its runtime API on base + 100 + i."""
    function_timeout: float = field(default_factory=lambda: float(env("AWS_LAMBDA_FUNCTION_TIMEOUT", "300")))
    """AWS_LAMBDA_FUNCTION_TIMEOUT (Lambda's own name): how long one invocation may take."""
    backend: str = field(default_factory=lambda: env("AIRLAUNCH_BACKEND", "docker"))
    """AIRLAUNCH_BACKEND: with ``docker`` the endpoint's process also watches Docker's events."""
