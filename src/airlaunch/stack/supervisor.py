"""Keeps the embedded stack alive: ``python -m airlaunch.stack supervise`` (started by ``up``).

Once a second it looks at every wanted component: one that is not alive (its process died,
was killed, or its container is gone) is started again; one that stays alive but unhealthy
for ``HANG_SECONDS`` after it was healthy (a hung scheduler, a triggerer without heartbeat)
is restarted. A component that keeps dying is restarted with a growing pause (up to 30 s),
so a crash loop does not eat the machine. What it does goes to ``.stack/supervisor.log``;
what it sees goes to ``.stack/supervisor.json`` (read by ``status``).

Which components are wanted is a file, ``.stack/supervisor-wants.json``, which ``up`` and
``down`` edit; a component no longer wanted is stopped. On SIGTERM the supervisor stops
every component at once and exits. Started again after being killed itself, it adopts the
components still running (pid files, the launcher container) instead of starting twins.
There is one supervisor per state folder: it holds ``.stack/supervisor.lock`` for its whole
life, a second one exits at once, and ``running``/``pid_of`` ask the lock, not a pid file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from airlaunch.stack.airflow_processes import AirflowServers
from airlaunch.stack.components import Component, EcsAccount, LauncherLambda, LocalStack
from airlaunch.stack.config import StackConfig

HANG_SECONDS = 90.0
MAX_BACKOFF_SECONDS = 30.0

log = logging.getLogger("airlaunch.supervisor")


def all_components(cfg: StackConfig) -> dict[str, Component]:
    airflow = AirflowServers(cfg)
    parts: list[Component] = [LocalStack(cfg), EcsAccount(cfg), LauncherLambda(cfg), *airflow.processes]
    return {part.name: part for part in parts}


AIRFLOW_NAMES = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")


def wants_file(cfg: StackConfig) -> Path:
    return cfg.state_dir / "supervisor-wants.json"


def state_file(cfg: StackConfig) -> Path:
    return cfg.state_dir / "supervisor.json"


def read_wants(cfg: StackConfig) -> list[str]:
    try:
        return list(json.loads(wants_file(cfg).read_text())["components"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def read_state(cfg: StackConfig) -> dict[str, dict[str, object]]:
    """What the supervisor last saw of each wanted component (empty when none runs)."""
    try:
        return dict(json.loads(state_file(cfg).read_text())["components"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def write_wants(cfg: StackConfig, names: list[str]) -> None:
    path = wants_file(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"components": names}))
    tmp.replace(path)


@dataclass
class Watch:
    """What the supervisor knows of one component."""

    alive: bool = False
    healthy: bool = False
    restarts: int = 0
    last_start: float = 0.0
    last_healthy: float = 0.0
    next_start: float = 0.0
    failures_in_a_row: int = 0
    detail: str = ""


class Supervisor:
    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.components = all_components(cfg)
        self.watches = {name: Watch() for name in self.components}
        self.stopping = False
        self.migrated = False

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop_requested)
        signal.signal(signal.SIGINT, self._stop_requested)
        log.info("supervising the embedded stack in %s (pid %d)", self.cfg.state_dir, os.getpid())
        while not self.stopping:
            wanted = read_wants(self.cfg)
            for name, component in self.components.items():
                if self.stopping:
                    break
                if name in wanted:
                    self._keep_up(name, component)
                elif component.alive():
                    log.info("stopping %s (no longer wanted)", name)
                    component.stop()
            self._write_state(wanted)
            time.sleep(1.0)
        self.stop_all()

    def _stop_requested(self, signum: int, frame: object) -> None:
        self.stopping = True

    def stop_all(self) -> None:
        from airlaunch.stack.processes import stop_processes

        log.info("stopping every component")
        processes = [c.process for c in self.components.values() if hasattr(c, "process")]
        launcher = [c for c in self.components.values() if isinstance(c, LauncherLambda)]
        for component in launcher:
            component.stop()
        stop_processes(processes)
        self._write_state([])

    def _keep_up(self, name: str, component: Component) -> None:
        watch = self.watches[name]
        now = time.monotonic()
        watch.alive = component.alive()
        if watch.alive:
            watch.healthy = component.healthy()
            if watch.healthy:
                watch.last_healthy = now
                watch.failures_in_a_row = 0
                return
            if watch.last_healthy and now - watch.last_healthy > HANG_SECONDS:
                watch.detail = f"unhealthy for {now - watch.last_healthy:.0f} s: restarted"
            elif not watch.last_healthy and watch.last_start and now - watch.last_start > component.start_seconds:
                watch.detail = f"not healthy {component.start_seconds:.0f} s after its start: restarted"
            else:
                return  # still starting, or unhealthy only briefly
            log.warning("%s: %s", name, watch.detail)
            component.stop()
        elif watch.last_start:
            watch.detail = "died: restarted"
            log.warning("%s is not running any more: restarting it", name)
        if now < watch.next_start:
            return
        self._start(name, component, watch)

    def _start(self, name: str, component: Component, watch: Watch) -> None:
        if name in AIRFLOW_NAMES and not self.migrated:
            AirflowServers(self.cfg).migrate()
            self.migrated = True
        now = time.monotonic()
        if watch.last_start:
            watch.restarts += 1
        watch.failures_in_a_row += 1
        watch.next_start = now + min(MAX_BACKOFF_SECONDS, 2.0 ** (watch.failures_in_a_row - 1))
        watch.last_start, watch.last_healthy, watch.healthy = now, 0.0, False
        log.info("starting %s", name)
        try:
            component.start()
        except Exception as exc:  # reported in the state file; retried after the backoff
            watch.detail = f"failed to start: {exc}"
            log.error("%s failed to start: %s", name, exc)

    def _write_state(self, wanted: list[str]) -> None:
        state = {
            "pid": os.getpid(),
            "updated": time.time(),
            "wanted": wanted,
            "components": {name: asdict(watch) for name, watch in self.watches.items() if name in wanted},
        }
        path = state_file(self.cfg)
        tmp = path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(state, indent=1))
            tmp.replace(path)


def _lock_path(cfg: StackConfig) -> Path:
    return cfg.state_dir / "supervisor.lock"


def running(cfg: StackConfig) -> bool:
    """True while a supervisor holds this state folder's lock."""
    path = _lock_path(cfg)
    if not path.exists():
        return False
    with path.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
    return False


def pid_of(cfg: StackConfig) -> int | None:
    """The running supervisor's pid (it writes the lock file itself, once it holds the lock)."""
    if not running(cfg):
        return None
    try:
        return int(_lock_path(cfg).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = StackConfig()
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock_path(cfg).open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.info("another supervisor runs for %s: leaving it to that one", cfg.state_dir)
        return
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    Supervisor(cfg).run()
