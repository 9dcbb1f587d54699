"""The compose stack (docker-compose.yml) for the tests of this folder: one compose project for all of them, brought
up with `make build up` under a unique name on free ports of 127.0.0.1, next to anything else on this machine
(an embedded stack on 8080/4566/9000 is left alone), and removed with its volumes at the end. Its launcher
serves a copy of the catalog (AIRLAUNCH_CATALOG_DIR) that tests may add entries to. The figures a user would
ask about (build, time to healthy, memory, pipeline duration) are printed at the end (`pytest -s`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from airlaunch.airflow_rest import AirflowRest

REPO = Path(__file__).resolve().parents[2]
HEARTBEAT_TIMEOUT_S = 45  # Airflow's default is 300 s: a worker-killed test would wait that long


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _mib(text: str) -> float:
    """docker stats' '301.9MiB' (or kB, GiB) in MiB."""
    number, unit = re.fullmatch(r"([\d.]+)\s*([KMG]i?B|B)", text.strip()).groups()  # type: ignore[union-attr]
    return (
        float(number)
        * {"B": 1 / 2**20, "kB": 1 / 1024, "KiB": 1 / 1024, "MB": 1, "MiB": 1, "GB": 1024, "GiB": 1024}[unit]
    )


@dataclass
class ComposeStack:
    """The compose project of these tests, driven through the Makefile's targets as a user drives it."""

    project: str
    auth_dir: Path
    catalog_dir: Path
    ports: dict[str, int]
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "AIRFLOW_PORT": str(self.ports["airflow"]),
            "LOCALSTACK_PORT": str(self.ports["localstack"]),
            "LAUNCHER_PORT": str(self.ports["launcher"]),
            "AIRFLOW_TASK_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
            "AIRLAUNCH_CATALOG_DIR": str(self.catalog_dir),
        }

    @property
    def catalog(self) -> Path:
        """The catalog the stack's launcher serves (AIRLAUNCH_CATALOG_DIR), read again whenever it changes."""
        return self.catalog_dir / "catalog.yaml"

    def cli_env(self) -> dict[str, str]:
        """What `eval "$(make -s compose-env)"` exports: the airlaunch CLI and boto3 pointed at this stack."""
        line = self.make("compose-env", "-s").stdout.strip()
        assert line.startswith("export "), line
        return dict(item.split("=", 1) for item in shlex.split(line.removeprefix("export ")))

    def make(self, target: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["make", "--no-print-directory", target, f"COMPOSE_PROJECT={self.project}"]
        command += [f"AIRFLOW_AUTH_DIR={self.auth_dir}", *args]
        result = subprocess.run(command, cwd=REPO, env=self.env, capture_output=True, text=True)
        if check:
            assert result.returncode == 0, f"make {target} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result

    def containers(self, service: str | None = None) -> list[str]:
        filters = ["--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        out = subprocess.run(["docker", "ps", "-aq", *filters], capture_output=True, text=True, check=True)
        return out.stdout.split()

    def inspect(self, container: str, template: str) -> str:
        out = subprocess.run(["docker", "inspect", "-f", template, container], capture_output=True, text=True)
        return out.stdout.strip()

    def memory_mib(self) -> dict[str, float]:
        """Memory of every running container of the stack, as `docker stats` shows it."""
        out = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", *self.containers()],
            capture_output=True,
            text=True,
            check=True,
        )
        usage = {}
        for line in out.stdout.splitlines():
            name, used = line.split(" ", 1)
            usage[name] = _mib(used.split("/")[0])
        return usage

    def api(self) -> AirflowRest:
        return AirflowRest.for_home(f"http://127.0.0.1:{self.ports['airflow']}", self.auth_dir)

    def s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.ports['localstack']}",
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )


def _catalog_copy(folder: Path) -> Path:
    """A copy of the repository's catalog that the tests may edit, readable by the launcher's uid 1000."""
    shutil.copyfile(REPO / "tasks" / "catalog.yaml", folder / "catalog.yaml")
    folder.chmod(0o755)
    (folder / "catalog.yaml").chmod(0o644)
    return folder


@pytest.fixture(scope="package")
def compose_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    """One stack for this folder's tests (build, up, and after its last test down with its volumes, which must
    leave no container or volume behind: the rest of a `make test` session does not pay for it), serving an
    editable copy of the catalog."""
    stack = ComposeStack(
        project=f"airlaunch-test-{uuid.uuid4().hex[:8]}",
        auth_dir=tmp_path_factory.mktemp("compose-airflow"),
        catalog_dir=_catalog_copy(tmp_path_factory.mktemp("compose-catalog")),
        ports={"airflow": _free_port(), "localstack": _free_port(), "launcher": _free_port()},
    )
    try:
        start = time.monotonic()
        stack.make("build")
        stack.figures["build_s"] = round(time.monotonic() - start, 1)
        start = time.monotonic()
        up = stack.make("up")
        stack.figures["up_to_healthy_s"] = round(time.monotonic() - start, 1)
        stack.figures["make_up_output"] = up.stdout.strip().splitlines()[-4:]
        yield stack
    finally:
        logs = stack.make("compose-logs", "LINES=40", check=False).stdout
        down = stack.make("compose-down", "COMPOSE_DOWN_ARGS=-v", check=False)
        print(f"\ncompose stack {stack.project} figures: {json.dumps(stack.figures, indent=2)}")
        assert down.returncode == 0, f"compose-down failed: {down.stderr}\nlast logs:\n{logs[-5000:]}"
        assert stack.containers() == [], "compose-down left containers behind"
        volumes = subprocess.run(
            ["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={stack.project}"],
            capture_output=True,
            text=True,
        ).stdout.split()
        assert volumes == [], f"compose-down -v left volumes: {volumes}"
