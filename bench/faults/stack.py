"""The stack the fault suite breaks, and the ways it breaks it.

A ``FaultStack`` wraps an embedded stack whose Airflow loads the suite's DAGs (bench/faults/dags). ``make
faults`` makes its own (``for_make_faults``): the stack of ``AIRLAUNCH_STATE_DIR`` (``.stack-faults``, on its
own ports, so a stack you work with is left alone) with a copy of the task catalog whose image is
``FAULTS_TASK_IMAGE``, with the launcher's Docker backend or in the stack's ECS mode (``up(backend)``: the ECS
backend against the emulated account, whose Fargate tasks run as Docker containers all the same). The tests
of tests/airflow/test_faults.py wrap the test session's stack, whose DAGs folder holds the suite's DAGs too.

Breaking things is done from the outside, as an operator or the machine would: SIGKILL to a
process (its pid file), ``docker kill``/``docker stop`` of a container, SIGTERM to dockerd. To keep
a component down longer than the supervisor lets it stay down, the supervisor is paused
(SIGSTOP) for that time and resumed (SIGCONT) afterwards; it then restarts what is dead, as
after any crash.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from airlaunch.airflow_rest import AirflowRest
from airlaunch.stack import Stack, StackConfig, supervisor
from bench.faults.account import EcsAccount
from bench.faults.events import ContainerScope
from bench.harness import fail_leftover_runs

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "bench" / "faults" / "dags"
DAG_IDS = ("faults_worker", "faults_trigger", "faults_timeout", "faults_fan")


def _catalog(state_dir: Path, image: str) -> Path:
    """A copy of tasks/catalog.yaml whose tasks run ``image`` (served by the stack's launcher)."""
    catalog = yaml.safe_load((REPO / "tasks" / "catalog.yaml").read_text())
    catalog.setdefault("defaults", {})["image"] = image
    path = state_dir / "faults-catalog" / "catalog.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(catalog, sort_keys=False)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


class FaultStack:
    def __init__(self, stack: Stack) -> None:
        self.cfg = stack.cfg
        self.stack = stack
        self._api: AirflowRest | None = None

    @classmethod
    def for_make_faults(cls, task_image: str) -> FaultStack:
        """The stack of AIRLAUNCH_STATE_DIR with the suite's DAGs and a catalog whose tasks run ``task_image``
        (given to its StackConfig, not to this process's environment)."""
        state_dir = StackConfig(repo=REPO).state_dir
        catalog = str(_catalog(state_dir, task_image))
        return cls(Stack(StackConfig(repo=REPO, state_dir=state_dir, catalog_file=catalog, dags_folder=str(DAGS))))

    # -- up and down ------------------------------------------------------------------------------
    def running_backend(self) -> str | None:
        """The backend of the launcher running now (None: none runs)."""
        return self.cfg.backend if self.stack.launcher.alive() else None

    def up(self, backend: str = "docker") -> list[str]:
        """Everything up and healthy (started if needed) with the launcher's ``backend`` (a launcher of the
        other one is replaced; in the ECS mode the emulated account comes up first); the suite's DAGs
        parsed and unpaused."""
        started = self.stack.up(with_airflow=True, backend=backend)
        if not self.stack.launcher.serves(self.cfg.catalog):
            self.stack.restart("launcher")
        os.environ.update(self.cfg.client_env())
        self.unpause_dags()
        if fail_leftover_runs(self.api, DAG_IDS, "fault suite"):
            self.stack.restart("airflow-triggerer")
        self.warm_triggerer()
        return started

    def unpause_dags(self) -> None:
        """The suite's DAGs parsed by the stack's Airflow, and unpaused."""
        for dag_id in DAG_IDS:
            try:
                self.api.wait_for_dag(dag_id, timeout=120)
            except RuntimeError as exc:
                raise RuntimeError(
                    f"{exc}: the Airflow of {self.cfg.state_dir} does not load {DAGS}; it was started with "
                    "other DAGs (stop it, or run the suite with its own AIRLAUNCH_STATE_DIR as make faults does)"
                ) from exc
            self.api.unpause(dag_id)

    def warm_triggerer(self) -> None:
        """One short task launched from the triggerer, so that the first row measures its fault rather than the
        triggerer's start: its first trigger builds Airflow's in-process execution API (about 9 s on 2 busy
        cores, paid once per triggerer start; docs/faults.md) and starts the orphan sweep."""
        run_id = self.api.trigger("faults_trigger", {"action": "echo", "message": "warm-up"})
        state = self.api.wait_for_run("faults_trigger", run_id, timeout=300)["state"]
        if state != "success":
            raise RuntimeError(f"the warm-up run faults_trigger/{run_id} ended {state}")

    def down(self) -> None:
        self.stack.down()

    def container_scope(self) -> ContainerScope:
        """Which containers are this stack's task containers now: the Docker backend labels them with the
        stack's scope; in the ECS mode they are the emulated account's (each start of it is a new one)."""
        if self.cfg.backend == "ecs":
            return ContainerScope("ecs", EcsAccount(self.cfg).container_label())
        return ContainerScope("docker", f"airlaunch.scope={self.cfg.docker_scope}")

    @property
    def api(self) -> AirflowRest:
        if self._api is None:
            self._api = AirflowRest.for_home(self.cfg.airflow_url, self.cfg.airflow_home)
        return self._api

    def ready(self, name: str) -> bool:
        component = self.stack.components[name]
        return component.alive() and component.healthy()

    def wait_ready(self, name: str, timeout: float = 180) -> float:
        """Wait until a component is healthy again; the seconds it took."""
        start = time.monotonic()
        while not self.ready(name):
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"{name} was not healthy again within {timeout:.0f} s")
            time.sleep(0.2)
        return time.monotonic() - start

    def all_ready(self, timeout: float = 240) -> None:
        """Every component the supervisor keeps up is healthy (not the ECS mode's account in the Docker mode)."""
        for name in supervisor.read_wants(self.cfg) or list(self.stack.components):
            self.wait_ready(name, timeout)

    # -- breaking things ----------------------------------------------------------------------------
    def pid(self, name: str) -> int | None:
        component = self.stack.components[name]
        process = getattr(component, "process", None)
        return process.pid if process is not None and process.alive() else None

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL, group: bool = False) -> int:
        """Send ``sig`` to a component's process (or its whole process group); the pid hit."""
        pid = self.pid(name)
        if pid is None:
            raise RuntimeError(f"{name} is not running")
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
        return pid

    def wait_dead(self, name: str, timeout: float = 30) -> None:
        component = self.stack.components[name]
        deadline = time.monotonic() + timeout
        while component.alive():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} still runs {timeout:.0f} s after it was killed")
            time.sleep(0.05)

    @contextlib.contextmanager
    def supervisor_paused(self) -> Iterator[None]:
        """Nothing restarts a dead component meanwhile; afterwards the supervisor restarts it."""
        pid = supervisor.pid_of(self.cfg)
        if pid is None:
            raise RuntimeError("the stack's supervisor is not running")
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], capture_output=True, text=True)
