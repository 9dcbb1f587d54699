"""The parts of the embedded stack: LocalStack, the ECS mode's account and the launcher Lambda (Airflow's
four processes are in stack.airflow_processes).

Each part can say whether it is *alive* (its process or container runs) and *healthy* (it
answers for real: LocalStack's init hooks completed, the Lambda answers a ping, Airflow's
health endpoint reports the component's heartbeat), and can be started and stopped on its
own, which is all the supervisor needs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from airlaunch.stack.config import StackConfig
from airlaunch.stack.processes import ManagedProcess, stop_processes

CATALOG_MOUNT = "/opt/airlaunch/catalog"


def get_json(url: str, timeout: float = 2.0) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


class Component(Protocol):
    name: str
    start_seconds: float  # how long it may take from start to healthy

    def alive(self) -> bool: ...

    def healthy(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class LocalStack:
    """localstack-core from .venv-localstack on 127.0.0.1, S3 kept in a journal across restarts."""

    name = "localstack"
    start_seconds = 90.0

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.process = ManagedProcess(
            "localstack", [str(cfg.localstack_python), "-m", "localstack.runtime.main"], cfg.state_dir
        )
        self.root = cfg.state_dir / "localstack"

    @property
    def log(self) -> Path:
        return self.process.log

    def alive(self) -> bool:
        return self.process.alive()

    def healthy(self) -> bool:
        init = get_json(f"{self.cfg.localstack_url}/_localstack/init/ready")
        return bool(init and init.get("completed"))

    def start(self) -> None:
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
            PROVIDER_OVERRIDE_S3="airlaunch",  # localstack/plugin: S3 that survives restarts
            AIRLAUNCH_S3_STATE=str(self.cfg.s3_journal),
            AIRLAUNCH_BUCKET=self.cfg.bucket,
            AIRLAUNCH_STATUS_QUEUE=self.cfg.status_queue,
            AWS_DEFAULT_REGION=self.cfg.region,
            SKIP_SSL_CERT_DOWNLOAD="1",
            DISABLE_EVENTS="1",
        )
        self.process.start(env)

    def stop(self) -> None:
        stop_processes([self.process])

    def up(self) -> None:
        """Start it (unsupervised) and wait until it is healthy."""
        self.start()
        deadline = time.monotonic() + self.start_seconds
        while not self.healthy():
            if time.monotonic() > deadline or not self.alive():
                raise RuntimeError(f"LocalStack was not healthy within {self.start_seconds:.0f} s; see {self.log}")
            time.sleep(0.2)


class EcsAccount:
    """The ECS mode's emulated AWS account (airlaunch.stack.ecs_account): moto with the Fargate stand-in,
    the template deployed into it. Healthy once this very process has deployed and its endpoint answers;
    every start is a new account (moto keeps nothing), so the launcher is restarted along with it."""

    name = "ecs-account"
    start_seconds = 120.0

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.process = ManagedProcess(
            "ecs-account", [sys.executable, "-m", "airlaunch.stack.ecs_account"], cfg.state_dir
        )

    def deployment(self) -> dict[str, Any] | None:
        """What the running account deployed (None until it has, or when the file is another process's)."""
        try:
            recorded = json.loads(self.cfg.ecs_account_file.read_text())
        except (OSError, ValueError):
            return None
        return recorded if isinstance(recorded, dict) and recorded.get("pid") == self.process.pid else None

    def alive(self) -> bool:
        return self.process.alive()

    def healthy(self) -> bool:
        return self.deployment() is not None and get_json(f"{self.cfg.ecs_url}/_airlaunch/ecs/health") is not None

    def start(self) -> None:
        self.cfg.ecs_account_file.unlink(missing_ok=True)
        self.process.start({**os.environ, **self.cfg.env()})  # its StackConfig() is ours

    def stop(self) -> None:
        stop_processes([self.process])


class LauncherLambda:
    """The launcher's Lambda image under AWS's Runtime Interface Emulator, as a container on the host
    network; it reaches Docker through the socket's group (never a world-writable socket) and serves
    the catalog file of this checkout, re-read whenever it changes."""

    name = "launcher"
    start_seconds = 60.0

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg

    @property
    def container(self) -> str:
        return self.cfg.launcher_container

    def _inspect(self, template: str, what: str = "") -> str:
        out = subprocess.run(
            ["docker", "inspect", "-f", template, what or self.container], capture_output=True, text=True
        )
        return out.stdout.strip() if out.returncode == 0 else ""

    def alive(self) -> bool:
        """Running, and for the stack's backend: in the ECS mode, for the account that runs now (a launcher
        started for another backend or an earlier account counts as gone, so it is started again)."""
        running = self._inspect("{{.State.Running}}") == "true"
        return running and self._inspect('{{index .Config.Labels "airlaunch.backend"}}') == self._backend_label()

    def _backend_label(self) -> str:
        if self.cfg.backend != "ecs":
            return self.cfg.backend
        deployment = EcsAccount(self.cfg).deployment()
        return f"ecs:{deployment['pid']}" if deployment else "ecs:none"

    def healthy(self) -> bool:
        """The local pool's health: idle, an execution environment answers a ping; busy, its
        invocations make progress (a long queue of launches is not a hang)."""
        try:
            with urllib.request.urlopen(f"{self.cfg.lambda_url}/health", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def serves(self, catalog: Path) -> bool:
        """True when the running container serves this catalog file."""
        mounts = self._inspect("{{range .Mounts}}{{.Source}}={{.Destination}} {{end}}").split()
        env = self._inspect("{{range .Config.Env}}{{println .}}{{end}}").splitlines()
        return (
            f"{catalog.parent}={CATALOG_MOUNT}" in mounts and f"AIRLAUNCH_CATALOG={CATALOG_MOUNT}/{catalog.name}" in env
        )

    def outdated(self) -> bool:
        """True when the running container's image is no longer the one tagged launcher_image."""
        running = self._inspect("{{.Image}}")
        return bool(running) and running != self._inspect("{{.Id}}", self.cfg.launcher_image)

    def start(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.container], capture_output=True)
        socket_gid = os.stat(self.cfg.docker_socket).st_gid
        catalog = self.cfg.catalog
        if not catalog.is_file():
            raise RuntimeError(f"the task catalog {catalog} does not exist (AIRLAUNCH_STACK_CATALOG)")
        env = {
            "AIRLAUNCH_RIE_ADDRESS": f"127.0.0.1:{self.cfg.lambda_port}",
            "AIRLAUNCH_LAMBDA_CONCURRENCY": str(self.cfg.lambda_concurrency),
            "AIRLAUNCH_RIE_PORT_BASE": str(self.cfg.rie_port_base),
            "AIRLAUNCH_DOCKER_NETWORK": "host",
            "AIRLAUNCH_DOCKER_SCOPE": self.cfg.docker_scope,
            "AIRLAUNCH_TASK_AWS_ENDPOINT_URL": self.cfg.localstack_url,
            "AIRLAUNCH_STOP_GRACE_SECONDS": str(self.cfg.stop_grace_seconds),
            "AIRLAUNCH_CATALOG": f"{CATALOG_MOUNT}/{catalog.name}",
            "AWS_LAMBDA_FUNCTION_TIMEOUT": "120",
            **{k: v for k, v in self.cfg.client_env().items() if k != "AIRLAUNCH_LAMBDA_ENDPOINT_URL"},
            **self._ecs_env(),
        }
        # the control plane before the tasks: under contention it gets 16 times a task container's CPU
        command = ["docker", "run", "-d", "--name", self.container, "--network", "host", "--cpu-shares", "4096"]
        command += ["--group-add", str(socket_gid), "-v", f"{self.cfg.docker_socket}:/var/run/docker.sock"]
        # the catalog's folder, not the file: an editor that saves by rename would leave a file mount stale
        command += ["-v", f"{catalog.parent}:{CATALOG_MOUNT}:ro", "--label", "airlaunch.stack=launcher"]
        command += ["--label", f"airlaunch.backend={self._backend_label()}"]
        for key, value in env.items():
            command += ["-e", f"{key}={value}"]
        subprocess.run([*command, self.cfg.launcher_image], check=True, capture_output=True)

    def _ecs_env(self) -> dict[str, str]:
        """In the ECS mode: the environment the template gives the function, as deployed into the emulated
        account, and only what must differ off AWS: endpoints (ECS, STS and the rest at the emulated account,
        S3, Secrets Manager and SSM at LocalStack, for the launcher and its tasks), test credentials, the
        function's timeout and its concurrency for the local pool."""
        if self.cfg.backend != "ecs":
            return {}
        deployment = EcsAccount(self.cfg).deployment()
        if deployment is None:
            raise RuntimeError("the ECS mode's emulated account has not deployed yet (ecs-account)")
        function_env = {k: str(v) for k, v in deployment["function_env"].items()}
        return {
            **function_env,
            "AWS_ENDPOINT_URL": self.cfg.ecs_url,
            "AWS_ENDPOINT_URL_S3": self.cfg.localstack_url,
            # the catalog's secrets live in LocalStack, where the Fargate stand-in reads them too
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": self.cfg.localstack_url,
            "AWS_ENDPOINT_URL_SSM": self.cfg.localstack_url,
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(deployment["timeout_seconds"]),
            "AIRLAUNCH_LAMBDA_CONCURRENCY": function_env["AIRLAUNCH_LAUNCHER_CONCURRENCY"],
        }

    def stop(self) -> None:
        subprocess.run(["docker", "stop", "-t", "5", self.container], capture_output=True)
        subprocess.run(["docker", "rm", "-f", self.container], capture_output=True)
