"""Where the embedded stack lives and how its parts are configured: one dataclass, read once.

Every value is read from its environment variable when a ``StackConfig`` is made, the state folder
included, and never again: a config means one stack whatever the environment does afterwards. A
caller that wants another stack (another state folder, other ports) makes another ``StackConfig``,
with the values as arguments. ``env()`` gives the variables that make ``StackConfig()`` in a child
process (the supervisor, and what it starts) the same stack.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

_FROM_ENVIRONMENT = cast(Path, None)  # a state_dir not given: __post_init__ reads it


DEFAULT_AIRFLOW_PARALLELISM = 2
"""The LocalExecutor's slots, and so its worker processes: on its first task it forks all of them at once and
keeps them for the scheduler's life, each about 56 MiB (PSS) idle. A task airlaunch launches holds a slot only
while it launches (from a worker) or none at all (from the triggerer), so the stack's slots run only plain Python
tasks and the launches themselves; two match the machine the stack is sized for (two cores), and every stack test
runs at 2 (tests/conftest.py E2E_PARALLELISM). DAGs with many plain Python tasks at once can ask for more, at that
cost each: AIRLAUNCH_AIRFLOW_PARALLELISM."""


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


@dataclass(frozen=True)
class StackConfig:
    """Where the local stack lives; every value can be given, else the environment variable named sets it."""

    repo: Path = field(default_factory=lambda: Path(os.environ.get("AIRLAUNCH_REPO", Path.cwd())).resolve())
    localstack_port: int = field(default_factory=lambda: _env_int("AIRLAUNCH_LOCALSTACK_PORT", 4566))
    lambda_port: int = field(default_factory=lambda: _env_int("AIRLAUNCH_LAMBDA_PORT", 9000))
    bucket: str = field(default_factory=lambda: os.environ.get("AIRLAUNCH_BUCKET", "airlaunch-results"))
    status_queue: str = field(default_factory=lambda: os.environ.get("AIRLAUNCH_STATUS_QUEUE", "airlaunch-status"))
    region: str = field(default_factory=lambda: os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    launcher_image: str = field(
        default_factory=lambda: os.environ.get("AIRLAUNCH_LAUNCHER_IMAGE", "airlaunch/launcher:latest")
    )
    launcher_container: str = field(
        default_factory=lambda: os.environ.get("AIRLAUNCH_LAUNCHER_CONTAINER", "airlaunch-launcher")
    )
    docker_socket: str = field(
        default_factory=lambda: os.environ.get("AIRLAUNCH_DOCKER_SOCKET", "/var/run/docker.sock")
    )
    catalog_file: str = field(default_factory=lambda: os.environ.get("AIRLAUNCH_STACK_CATALOG", ""))
    airflow_port: int = field(default_factory=lambda: _env_int("AIRLAUNCH_AIRFLOW_PORT", 8080))
    airflow_parallelism: int = field(
        default_factory=lambda: _env_int("AIRLAUNCH_AIRFLOW_PARALLELISM", DEFAULT_AIRFLOW_PARALLELISM)
    )
    """AIRLAUNCH_AIRFLOW_PARALLELISM: Airflow's core.parallelism, the LocalExecutor's worker processes (see
    ``DEFAULT_AIRFLOW_PARALLELISM``)."""
    dags_folder: str = field(default_factory=lambda: os.environ.get("AIRLAUNCH_DAGS_FOLDER", ""))
    ecs_port: int = field(default_factory=lambda: _env_int("AIRLAUNCH_ECS_PORT", 4567))
    backend_choice: str = field(default_factory=lambda: os.environ.get("AIRLAUNCH_STACK_BACKEND") or "docker")
    """AIRLAUNCH_STACK_BACKEND: the launcher's backend for an ``up`` that names none (``backend`` says which runs)."""
    lambda_concurrency: int = field(default_factory=lambda: _env_int("AIRLAUNCH_LAMBDA_CONCURRENCY", 4))
    """AIRLAUNCH_LAMBDA_CONCURRENCY: the local launcher's execution environments (docker backend)."""
    rie_port_base: int = field(default_factory=lambda: _env_int("AIRLAUNCH_RIE_PORT_BASE", 19100))
    """AIRLAUNCH_RIE_PORT_BASE: the ports of those execution environments (and +100 for their runtime API)."""
    stop_grace_seconds: int = field(default_factory=lambda: _env_int("AIRLAUNCH_STOP_GRACE_SECONDS", 10))
    """AIRLAUNCH_STOP_GRACE_SECONDS: given to the local launcher (SIGTERM to SIGKILL on a stop)."""
    ecs_vcpu_quota: float = field(default_factory=lambda: _env_float("AIRLAUNCH_ECS_VCPU_QUOTA", 64))
    """AIRLAUNCH_ECS_VCPU_QUOTA: the emulated account's concurrent Fargate vCPUs (ECS mode). A new AWS account has
    6; the local default lets the demo's fan-outs run at once (the quota's own failure is a fault drill of its own)."""
    ecs_schedule_speedup: float = field(default_factory=lambda: _env_float("AIRLAUNCH_ECS_SCHEDULE_SPEEDUP", 1))
    """AIRLAUNCH_ECS_SCHEDULE_SPEEDUP: how many times as often the template's scheduled rules fire (ECS mode)."""
    state_dir: Path = _FROM_ENVIRONMENT
    """AIRLAUNCH_STATE_DIR, else ``<repo>/.stack``: pids, logs, LocalStack's files and Airflow's home; resolved
    (absolute) once, when the config is made."""

    def __post_init__(self) -> None:
        state_dir = self.state_dir or os.environ.get("AIRLAUNCH_STATE_DIR") or self.repo / ".stack"
        object.__setattr__(self, "state_dir", Path(state_dir).resolve())

    def env(self) -> dict[str, str]:
        """The variables that make ``StackConfig()`` in a child process this same stack (``Stack.up`` starts
        the supervisor with them, and the supervisor its components)."""
        return {
            "AIRLAUNCH_REPO": str(self.repo),
            "AIRLAUNCH_STATE_DIR": str(self.state_dir),
            "AIRLAUNCH_LOCALSTACK_PORT": str(self.localstack_port),
            "AIRLAUNCH_LAMBDA_PORT": str(self.lambda_port),
            "AIRLAUNCH_BUCKET": self.bucket,
            "AIRLAUNCH_STATUS_QUEUE": self.status_queue,
            "AWS_DEFAULT_REGION": self.region,
            "AIRLAUNCH_LAUNCHER_IMAGE": self.launcher_image,
            "AIRLAUNCH_LAUNCHER_CONTAINER": self.launcher_container,
            "AIRLAUNCH_DOCKER_SOCKET": self.docker_socket,
            "AIRLAUNCH_STACK_CATALOG": self.catalog_file,
            "AIRLAUNCH_AIRFLOW_PORT": str(self.airflow_port),
            "AIRLAUNCH_AIRFLOW_PARALLELISM": str(self.airflow_parallelism),
            "AIRLAUNCH_DAGS_FOLDER": self.dags_folder,
            "AIRLAUNCH_ECS_PORT": str(self.ecs_port),
            "AIRLAUNCH_STACK_BACKEND": self.backend_choice,
            "AIRLAUNCH_LAMBDA_CONCURRENCY": str(self.lambda_concurrency),
            "AIRLAUNCH_RIE_PORT_BASE": str(self.rie_port_base),
            "AIRLAUNCH_STOP_GRACE_SECONDS": str(self.stop_grace_seconds),
            "AIRLAUNCH_ECS_VCPU_QUOTA": f"{self.ecs_vcpu_quota:g}",
            "AIRLAUNCH_ECS_SCHEDULE_SPEEDUP": f"{self.ecs_schedule_speedup:g}",
        }

    @property
    def backend(self) -> str:
        """How the stack's launcher runs tasks: ``docker``, or ``ecs`` (the ECS mode: the ECS backend against
        the emulated account, airlaunch.stack.ecs_account). ``up`` records the choice in the state folder,
        so that the supervisor, a restarted launcher and ``status`` agree; AIRLAUNCH_STACK_BACKEND chooses
        for an ``up`` that names none."""
        try:
            return self.backend_file.read_text().strip() or "docker"
        except OSError:
            return self.backend_choice

    @property
    def backend_file(self) -> Path:
        return self.state_dir / "backend"

    @property
    def ecs_url(self) -> str:
        """The emulated account's endpoint (moto, with the Fargate stand-in) in the ECS mode."""
        return f"http://127.0.0.1:{self.ecs_port}"

    @property
    def ecs_account_file(self) -> Path:
        """What the running emulated account deployed (the launcher function's environment), with its pid."""
        return self.state_dir / "ecs-account.json"

    @property
    def docker_scope(self) -> str:
        """Labels this stack's task containers (its launcher sees only those): one per state folder."""
        return "embedded-" + hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]

    @property
    def catalog(self) -> Path:
        """The catalog the running launcher serves (re-read when it changes)."""
        return Path(self.catalog_file or self.repo / "tasks" / "catalog.yaml").resolve()

    @property
    def s3_journal(self) -> Path:
        """LocalStack's S3 journal: the local results, kept across restarts (see localstack/plugin)."""
        return self.state_dir / "s3" / "results.sqlite3"

    @property
    def localstack_url(self) -> str:
        return f"http://127.0.0.1:{self.localstack_port}"

    @property
    def lambda_url(self) -> str:
        return f"http://127.0.0.1:{self.lambda_port}"

    @property
    def localstack_python(self) -> Path:
        return self.repo / ".venv-localstack" / "bin" / "python"

    @property
    def airflow_home(self) -> Path:
        return self.state_dir / "airflow"

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.airflow_port}"

    @property
    def airflow_password_file(self) -> Path:
        return self.airflow_home / "simple_auth_manager_passwords.json.generated"

    def airflow_env(self) -> dict[str, str]:
        """Airflow's configuration for the embedded stack (SQLite, LocalExecutor, this repo's DAGs)."""
        secret_file = self.state_dir / "airflow-secret"
        if not secret_file.exists():
            secret_file.parent.mkdir(parents=True, exist_ok=True)
            secret_file.write_text(secrets.token_hex(32))
        secret = secret_file.read_text().strip()
        connection = {
            "conn_type": "aws",
            "login": "test",
            "password": "test",
            "extra": {
                "region_name": self.region,
                "endpoint_url": self.localstack_url,
                "service_config": {"lambda": {"endpoint_url": self.lambda_url}},
            },
        }
        return {
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(Path(self.dags_folder or self.repo / "airflow" / "dags").resolve()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.airflow_parallelism),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.airflow_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__API__PORT": str(self.airflow_port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__SECRET_KEY": secret,
            "AIRFLOW__API_AUTH__JWT_SECRET": secret,
            "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            # Unchanged DAG files are parsed again every 5 minutes, not every 30 s (Airflow's default; about
            # 0.4 CPU-s a file here, so 5% of a core for four files, idle or not); a changed file at once.
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": os.environ.get(
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL", "300"
            ),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_AIRLAUNCH_AWS": json.dumps(connection),
            "AIRLAUNCH_AWS_CONN_ID": "airlaunch_aws",
            "AIRLAUNCH_FUNCTION_NAME": "function",
            "AIRLAUNCH_STATUS_QUEUE": self.status_queue,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client_env(self) -> dict[str, str]:
        """What a client on this machine (tests, Airflow, the CLI) needs to talk to the stack."""
        return {
            "AWS_ENDPOINT_URL": self.localstack_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AIRLAUNCH_BUCKET": self.bucket,
            "AIRLAUNCH_LAMBDA_ENDPOINT_URL": self.lambda_url,
        }
