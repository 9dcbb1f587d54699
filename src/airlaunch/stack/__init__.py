"""The embedded default stack on this machine: LocalStack, the launcher Lambda and Airflow.

``python -m airlaunch.stack up|down|status|reload|reset|env`` (used by ``make demo``,
``make down``, ``make reload``, ``make reset`` and the tests). LocalStack runs from
localstack-core in its own venv on 127.0.0.1 and keeps S3 in a journal (results survive
restarts); the launcher Lambda runs as its container image under AWS's Runtime Interface
Emulator on the host network; Airflow runs its four processes with SQLite. A supervisor
process (``supervisor.py``) starts them, restarts any that dies, and stops them all on
``down``. Everything lives in ``.stack/`` (AIRLAUNCH_STATE_DIR); only ``reset`` (or
``make clean``) deletes the results and Airflow's state, and always both together, so that
Airflow never lists runs whose results are gone.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

from airlaunch.stack import supervisor
from airlaunch.stack.airflow_processes import AirflowProcess, AirflowServers
from airlaunch.stack.components import LauncherLambda, LocalStack
from airlaunch.stack.config import StackConfig
from airlaunch.stack.processes import ManagedProcess, say, stop_processes

__all__ = [
    "AIRFLOW",
    "AirflowServers",
    "LauncherLambda",
    "LocalStack",
    "Stack",
    "StackConfig",
    "say",
    "stop_task_containers",
    "task_containers",
]

BASE = ["localstack", "launcher"]
ECS_ACCOUNT = "ecs-account"
BACKENDS = ("docker", "ecs")
AIRFLOW = list(supervisor.AIRFLOW_NAMES)


def task_containers(cfg: StackConfig | None = None) -> list[str]:
    """Task containers of this stack's launcher (labelled with its scope; another stack's, e.g. the
    compose stack's, are its own business)."""
    scope = (cfg or StackConfig()).docker_scope
    command = [
        "docker",
        "ps",
        "-aq",
        "--filter",
        "label=airlaunch.identity",
        "--filter",
        f"label=airlaunch.scope={scope}",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    return result.stdout.split() if result.returncode == 0 else []


def stop_task_containers(cfg: StackConfig | None = None) -> int:
    """Remove every task container this stack's launcher started."""
    ids = task_containers(cfg)
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
    return len(ids)


class Stack:
    def __init__(self, cfg: StackConfig | None = None) -> None:
        self.cfg = cfg or StackConfig()
        self.components = supervisor.all_components(self.cfg)
        self.localstack = LocalStack(self.cfg)
        self.launcher = LauncherLambda(self.cfg)
        self.airflow = AirflowServers(self.cfg)
        self.supervisor = ManagedProcess(
            "supervisor", [sys.executable, "-m", "airlaunch.stack", "supervise"], self.cfg.state_dir
        )  # started here; found again through its lock (supervisor.running, supervisor.pid_of)

    # -- up ---------------------------------------------------------------------------------------
    def up(self, with_airflow: bool = False, only: list[str] | None = None, backend: str | None = None) -> list[str]:
        """Bring the named components (default: LocalStack and the launcher, plus Airflow) up under
        supervision and wait until each is healthy; return the names of those that were not.

        Whenever the launcher is among them, it runs tasks with ``backend`` (default: AIRLAUNCH_STACK_BACKEND,
        else docker): in the ECS mode the emulated account comes up before it, and a launcher of the other
        mode is replaced. Airflow and LocalStack are the same in both modes."""
        names = list(only or BASE + (AIRFLOW if with_airflow else []))
        wants = set(supervisor.read_wants(self.cfg)) | set(names)
        if "launcher" in names:
            backend = backend or self.cfg.backend_choice
            if backend not in BACKENDS:
                raise RuntimeError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
            self.cfg.backend_file.parent.mkdir(parents=True, exist_ok=True)
            self.cfg.backend_file.write_text(backend)
            if backend == "ecs":
                names.insert(names.index("launcher"), ECS_ACCOUNT)
                wants.add(ECS_ACCOUNT)
            else:
                wants.discard(ECS_ACCOUNT)
        started = [name for name in names if not self._ready(name)]
        supervisor.write_wants(self.cfg, sorted(wants))
        if not supervisor.running(self.cfg):
            self.supervisor.start({**os.environ, **self.cfg.env()})  # the supervisor's StackConfig() is ours
        for name in names:
            if name in started:
                self._wait_healthy(name)
        return started

    def _ready(self, name: str) -> bool:
        component = self.components[name]
        return component.alive() and component.healthy()

    def _wait_healthy(self, name: str) -> None:
        component = self.components[name]
        say(f"Starting {name}")
        start = time.monotonic()
        while not self._ready(name):
            if time.monotonic() - start > component.start_seconds:
                detail = supervisor.read_state(self.cfg).get(name, {}).get("detail") or "no detail"
                raise RuntimeError(
                    f"{name} was not healthy within {component.start_seconds:.0f} s ({detail}); "
                    f"see {self.cfg.state_dir}/{name}.log and {self.supervisor.log}"
                )
            time.sleep(0.2)
        say(f"{name} healthy in {time.monotonic() - start:.1f} s")

    # -- down -------------------------------------------------------------------------------------
    def down(self, only: list[str] | None = None) -> None:
        """Stop everything (and the task containers), or only the named components."""
        names = list(self.components) if only is None else only
        remaining = [name for name in supervisor.read_wants(self.cfg) if name not in names]
        supervisor.write_wants(self.cfg, remaining)
        if not remaining:
            self._stop_supervisor()
        deadline = time.monotonic() + 40
        while supervisor.running(self.cfg) and any(self.components[n].alive() for n in names):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        # whatever is still up (no supervisor ran, or it was killed): stop it here, all at once
        leftovers = [self.components[name] for name in names if self.components[name].alive()]
        stop_processes([c.process for c in leftovers if isinstance(c, (LocalStack, AirflowProcess))])
        if "launcher" in names:
            self.launcher.stop()  # whatever its backend label: a launcher of another mode is still ours
        if "launcher" in names and (removed := stop_task_containers(self.cfg)):
            say(f"Removed {removed} task container(s)")
        say("The embedded stack is stopped" if only is None else f"Stopped {', '.join(names)}")

    def _stop_supervisor(self, grace: float = 40) -> None:
        """SIGTERM the supervisor (it stops every component on its way out), SIGKILL it after ``grace``."""
        pid = supervisor.pid_of(self.cfg)
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while supervisor.running(self.cfg) and time.monotonic() < deadline:
            time.sleep(0.1)
        if supervisor.running(self.cfg):
            os.kill(pid, signal.SIGKILL)

    def restart(self, name: str) -> None:
        """Stop one component and let the supervisor start it again (as after a crash)."""
        component = self.components[name]
        component.stop()  # returns once it is gone, so being ready again means restarted
        start = time.monotonic()
        while not self._ready(name):
            if time.monotonic() - start > component.start_seconds:
                raise RuntimeError(f"{name} did not come back within {component.start_seconds:.0f} s")
            time.sleep(0.2)

    # -- reload, reset, status --------------------------------------------------------------------
    def reload(self) -> str:
        """Make the running launcher serve the newest images and catalog, without touching Airflow or
        running tasks. The catalog is re-read by the launcher whenever it changes; task images are
        taken by tag at each start; only a rebuilt launcher image needs its container replaced."""
        if not self.launcher.alive():
            return "the launcher is not running: `make demo` or `make stack-up` starts it with the newest images"
        if self.cfg.backend == "ecs":  # task definitions name images by the tag a push gave them: deploy again
            say("ECS mode: deploying into a new emulated account, as `make deploy` would (running tasks are stopped)")
            self.restart(ECS_ACCOUNT)
            self._wait_healthy("launcher")
            return "the emulated account runs the rebuilt images and catalog"
        if not self.launcher.outdated():
            return f"the launcher runs the newest image; it re-reads {self.cfg.catalog} by itself"
        say("Replacing the launcher container with the rebuilt image (running tasks keep running)")
        if supervisor.running(self.cfg):
            self.restart("launcher")
        else:
            self.launcher.stop()
            self.launcher.start()
            self._wait_healthy("launcher")
        return "the launcher now runs the rebuilt image"

    def reset(self) -> list[str]:
        """Stop the stack, then delete its results and Airflow's state together; the paths deleted."""
        self.down()
        doomed = [self.cfg.s3_journal.parent, self.cfg.airflow_home, self.cfg.state_dir / "localstack"]
        doomed += [self.cfg.state_dir / "airflow-dagtest"]
        gone = [str(path) for path in doomed if path.exists()]
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)
        return gone

    def status(self) -> dict[str, dict[str, object]]:
        state = supervisor.read_state(self.cfg)
        return {
            name: {
                "alive": component.alive(),
                "healthy": component.alive() and component.healthy(),
                "restarts": state.get(name, {}).get("restarts", 0),
            }
            for name, component in self.components.items()
        }

    def wait_executor_done(self, dag_id: str, run_id: str, try_number: int = 1, timeout: float = 120) -> None:
        """Wait until the scheduler has taken the executor's word that this try's worker ended.

        Airflow keys executor events by (DAG, task, run id, try number), not by task-instance id: a DAG
        run deleted and triggered again with the same run id before the old worker's event arrived has
        its new task instance failed by the scheduler ("reported that the task instance finished with
        state success, but the task instance's state attribute is running"; apache/airflow#71580 is the
        same race after a deferral). Tests and the fault suite wait for that event first.
        """
        needle = f"TaskInstanceKey(dag_id='{dag_id}', task_id="
        key = f"run_id='{run_id}', try_number={try_number},"
        deadline = time.monotonic() + timeout
        with (self.cfg.state_dir / "airflow-scheduler.log").open(errors="replace") as log:
            partial = ""  # a line the scheduler had not finished writing at the last look
            while time.monotonic() < deadline:
                for line in log:  # what the log gained since the last look (the scheduler appends)
                    line, partial = partial + line, ""
                    if not line.endswith("\n"):
                        partial = line
                    elif "Received executor event" in line and needle in line and key in line:
                        return
                time.sleep(0.5)
        raise TimeoutError(f"the scheduler heard no executor event for {dag_id}/{run_id} in {timeout:.0f} s")
