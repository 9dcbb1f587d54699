"""The embedded default stack on this machine: LocalStack and the launcher Lambda.

``python -m airlaunch.stack up|down|status`` (used by ``make localstack-up``, ``make demo``,
``make down`` and the tests). LocalStack runs from localstack-core in its own venv on
127.0.0.1; the launcher Lambda runs as its container image under AWS's Runtime Interface
Emulator, on the host network, reaching Docker through the socket's group (never a
world-writable socket). Each component records a pid or container in ``.stack/`` so that
``down`` stops exactly what ``up`` started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

LAMBDA_CONTAINER = "airlaunch-launcher"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


@dataclass(frozen=True)
class StackConfig:
    """Where the local stack lives; every value can be changed by the environment variable named."""

    repo: Path = field(default_factory=lambda: Path(os.environ.get("AIRLAUNCH_REPO", Path.cwd())).resolve())
    localstack_port: int = field(default_factory=lambda: _env_int("AIRLAUNCH_LOCALSTACK_PORT", 4566))
    lambda_port: int = field(default_factory=lambda: _env_int("AIRLAUNCH_LAMBDA_PORT", 9000))
    bucket: str = field(default_factory=lambda: os.environ.get("AIRLAUNCH_BUCKET", "airlaunch-results"))
    status_queue: str = field(default_factory=lambda: os.environ.get("AIRLAUNCH_STATUS_QUEUE", "airlaunch-status"))
    region: str = field(default_factory=lambda: os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    launcher_image: str = field(
        default_factory=lambda: os.environ.get("AIRLAUNCH_LAUNCHER_IMAGE", "airlaunch/launcher:latest")
    )
    docker_socket: str = field(
        default_factory=lambda: os.environ.get("AIRLAUNCH_DOCKER_SOCKET", "/var/run/docker.sock")
    )
    airflow_port: int = field(default_factory=lambda: _env_int("AIRLAUNCH_AIRFLOW_PORT", 8080))
    airflow_parallelism: int = field(default_factory=lambda: _env_int("AIRLAUNCH_AIRFLOW_PARALLELISM", 4))

    @property
    def state_dir(self) -> Path:
        return Path(os.environ.get("AIRLAUNCH_STATE_DIR") or self.repo / ".stack").resolve()

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
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.repo / "airflow" / "dags"),
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


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def _get_json(url: str, timeout: float = 2.0) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _wait(what: str, ready, timeout: float, log: Path | None = None) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if ready():
            return time.monotonic() - start
        time.sleep(0.2)
    hint = f"; see {log}" if log else ""
    raise RuntimeError(f"{what} was not ready within {timeout:.0f} s{hint}")


# -- LocalStack ----------------------------------------------------------------------------------


class LocalStack:
    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.pid_file = cfg.state_dir / "localstack.pid"
        self.log = cfg.state_dir / "localstack.log"
        self.root = cfg.state_dir / "localstack"

    def healthy(self) -> bool:
        init = _get_json(f"{self.cfg.localstack_url}/_localstack/init/ready")
        return bool(init and init.get("completed"))

    def up(self) -> bool:
        """Start LocalStack unless one already answers; True if this call started it."""
        if self.healthy():
            return False
        if not self.cfg.localstack_python.exists():
            raise RuntimeError(f"{self.cfg.localstack_python} is missing: run `make install` first")
        init_dir = self.root / "etc" / "localstack" / "init"
        shutil.rmtree(init_dir, ignore_errors=True)
        shutil.copytree(self.cfg.repo / "localstack" / "init", init_dir)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOCALSTACK_")) and k != "PYTHONPATH"}
        env.update(
            OVERRIDE_IN_DOCKER="0",
            GATEWAY_SERVER="hypercorn",
            GATEWAY_LISTEN=f"127.0.0.1:{self.cfg.localstack_port}",
            FILESYSTEM_ROOT=str(self.root),
            AIRLAUNCH_BUCKET=self.cfg.bucket,
            AIRLAUNCH_STATUS_QUEUE=self.cfg.status_queue,
            AWS_DEFAULT_REGION=self.cfg.region,
            SKIP_SSL_CERT_DOWNLOAD="1",
            DISABLE_EVENTS="1",
        )
        say(f"Starting LocalStack on {self.cfg.localstack_url} (log: {self.log})")
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            proc = subprocess.Popen(
                [str(self.cfg.localstack_python), "-m", "localstack.runtime.main"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        took = _wait("LocalStack", self.healthy, 90, self.log)
        say(f"LocalStack healthy in {took:.1f} s: bucket s3://{self.cfg.bucket}, queue {self.cfg.status_queue}")
        return True

    def down(self) -> None:
        _stop_pid_file(self.pid_file, "LocalStack")


def _stop_pid_file(pid_file: Path, name: str, timeout: float = 30) -> None:
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
        say(f"Stopping {name} (pid {pid})")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it if this process started it
            os.killpg(pid, 0)
            time.sleep(0.2)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pid_file.unlink(missing_ok=True)


# -- The launcher Lambda -------------------------------------------------------------------------


class LauncherLambda:
    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg

    def running(self) -> bool:
        out = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Running}}", LAMBDA_CONTAINER], capture_output=True, text=True
        )
        return out.stdout.strip() == "true"

    def answers(self) -> bool:
        """The emulator answers an invocation only once the runtime inside is up."""
        request = urllib.request.Request(
            f"{self.cfg.lambda_url}/2015-03-31/functions/function/invocations", data=b'{"action": "ping"}'
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return bool(json.loads(response.read()).get("ok"))
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def up(self) -> bool:
        if self.running() and self.answers():
            return False
        subprocess.run(["docker", "rm", "-f", LAMBDA_CONTAINER], capture_output=True)
        socket_gid = os.stat(self.cfg.docker_socket).st_gid
        env = {
            "AIRLAUNCH_RIE_ADDRESS": f"127.0.0.1:{self.cfg.lambda_port}",
            "AIRLAUNCH_LAMBDA_CONCURRENCY": os.environ.get("AIRLAUNCH_LAMBDA_CONCURRENCY", "4"),
            "AIRLAUNCH_DOCKER_NETWORK": "host",
            "AIRLAUNCH_TASK_AWS_ENDPOINT_URL": self.cfg.localstack_url,
            "AIRLAUNCH_STOP_GRACE_SECONDS": os.environ.get("AIRLAUNCH_STOP_GRACE_SECONDS", "10"),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": "120",
            **{k: v for k, v in self.cfg.client_env().items() if k != "AIRLAUNCH_LAMBDA_ENDPOINT_URL"},
        }
        say(f"Starting the launcher Lambda ({self.cfg.launcher_image}) on {self.cfg.lambda_url}")
        command = ["docker", "run", "-d", "--name", LAMBDA_CONTAINER, "--network", "host"]
        command += ["--group-add", str(socket_gid), "-v", f"{self.cfg.docker_socket}:/var/run/docker.sock"]
        command += ["--label", "airlaunch.stack=launcher"]
        for key, value in env.items():
            command += ["-e", f"{key}={value}"]
        subprocess.run([*command, self.cfg.launcher_image], check=True, capture_output=True)
        took = _wait("the launcher Lambda", self.answers, 60)
        say(f"Launcher Lambda answering in {took:.1f} s")
        return True

    def down(self) -> None:
        if subprocess.run(["docker", "rm", "-f", LAMBDA_CONTAINER], capture_output=True).returncode == 0:
            say("Stopped the launcher Lambda")


def task_containers() -> list[str]:
    """Task containers of this stack's launcher: labelled airlaunch.identity, on the host network
    (a compose stack's tasks are on its own network and are its own business)."""
    command = ["docker", "ps", "-aq", "--filter", "label=airlaunch.identity", "--filter", "network=host"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()


def stop_task_containers() -> int:
    """Remove every task container this stack's launcher started."""
    ids = task_containers()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
    return len(ids)


# -- Airflow -------------------------------------------------------------------------------------

AIRFLOW_COMPONENTS = {
    "api-server": ["api-server", "-H", "127.0.0.1"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


class AirflowServers:
    """Airflow 3's four processes, each on its own (no `airflow standalone`: it orphans children)."""

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.airflow = str(Path(sys.executable).parent / "airflow")

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.cfg.client_env(), **self.cfg.airflow_env()}

    def healthy(self) -> bool:
        health = _get_json(f"{self.cfg.airflow_url}/api/v2/monitor/health")
        if not health:
            return False
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all((health.get(p) or {}).get("status") == "healthy" for p in parts)

    def migrate(self) -> None:
        self.cfg.airflow_home.mkdir(parents=True, exist_ok=True)
        with (self.cfg.state_dir / "airflow-migrate.log").open("ab") as log:
            subprocess.run(
                [self.airflow, "db", "migrate"], env=self.env(), stdout=log, stderr=subprocess.STDOUT, check=True
            )

    def up(self) -> bool:
        if self.healthy():
            return False
        say(f"Starting Airflow (api-server, scheduler, dag-processor, triggerer) on {self.cfg.airflow_url}")
        self.migrate()
        for name in AIRFLOW_COMPONENTS:
            self.restart(name)
        took = _wait("Airflow", self.healthy, 120, self.cfg.state_dir / "airflow-*.log")
        say(f"Airflow healthy in {took:.1f} s")
        return True

    def restart(self, name: str) -> None:
        """(Re)start one component, e.g. the triggerer."""
        pid_file = self.cfg.state_dir / f"airflow-{name}.pid"
        _stop_pid_file(pid_file, f"airflow {name}")
        with (self.cfg.state_dir / f"airflow-{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [self.airflow, *AIRFLOW_COMPONENTS[name]],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        pid_file.write_text(str(proc.pid))

    def down(self) -> None:
        for name in AIRFLOW_COMPONENTS:
            _stop_pid_file(self.cfg.state_dir / f"airflow-{name}.pid", f"airflow {name}")


# -- The whole stack -----------------------------------------------------------------------------


class Stack:
    def __init__(self, cfg: StackConfig | None = None) -> None:
        self.cfg = cfg or StackConfig()
        self.localstack = LocalStack(self.cfg)
        self.launcher = LauncherLambda(self.cfg)
        self.airflow = AirflowServers(self.cfg)

    def up(self, with_airflow: bool = False) -> list[str]:
        """Start what is not running; return the names of what this call started."""
        started = []
        if self.localstack.up():
            started.append("localstack")
        if self.launcher.up():
            started.append("launcher")
        if with_airflow and self.airflow.up():
            started.append("airflow")
        return started

    def down(self, only: list[str] | None = None) -> None:
        """Stop everything, or only the named components (as returned by up)."""
        if only is None or "airflow" in only:
            self.airflow.down()
        if only is None or "launcher" in only:
            self.launcher.down()
            removed = stop_task_containers()
            if removed:
                say(f"Removed {removed} task container(s)")
        if only is None or "localstack" in only:
            self.localstack.down()

    def status(self) -> dict[str, bool]:
        return {
            "localstack": self.localstack.healthy(),
            "launcher": self.launcher.answers(),
            "airflow": self.airflow.healthy(),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airlaunch.stack", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "env", "localstack-up"])
    parser.add_argument("--airflow", action="store_true", help="also start Airflow's processes (up)")
    args = parser.parse_args(argv)
    stack = Stack()
    try:
        if args.command == "up":
            stack.up(with_airflow=args.airflow)
        elif args.command == "localstack-up":
            stack.localstack.up()
        elif args.command == "down":
            stack.down()
        elif args.command == "env":
            for key, value in stack.cfg.client_env().items():
                print(f"export {key}={value}")
        else:
            for name, ok in stack.status().items():
                print(f"{name:12} {'up' if ok else 'down'}")
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or ""
        print(f"error: {exc} {detail}".strip(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
