"""Airflow's four processes as parts of the embedded stack: each alive when its process runs and
healthy when Airflow's health endpoint reports its heartbeat (read at most once a second for all
four), started and stopped on its own or as a group (``AirflowServers``, also used by bench/).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airlaunch.stack.components import get_json
from airlaunch.stack.config import StackConfig
from airlaunch.stack.processes import ManagedProcess, stop_processes
from airlaunch.stack.sqlite_triggers import keep_live_assignments, never_reuse_trigger_ids

AIRFLOW_COMMANDS = {
    "api-server": ["api-server", "-H", "127.0.0.1"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
# Which part of /api/v2/monitor/health reports each process's heartbeat.
_HEALTH_PART = {"api-server": "metadatabase", "scheduler": "scheduler", "dag-processor": "dag_processor"}


class AirflowHealth:
    """Airflow's health endpoint, read at most once a second for all four components."""

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self._read_at = 0.0
        self._health: dict[str, Any] | None = None

    def part(self, name: str) -> bool:
        if time.monotonic() - self._read_at > 1.0:
            self._health = get_json(f"{self.cfg.airflow_url}/api/v2/monitor/health")
            self._read_at = time.monotonic()
        part = (self._health or {}).get(_HEALTH_PART.get(name, name)) or {}
        return part.get("status") == "healthy"


class AirflowProcess:
    """One of Airflow 3's processes (no `airflow standalone`: it orphans its children)."""

    start_seconds = 120.0

    def __init__(
        self,
        name: str,
        cfg: StackConfig,
        health: AirflowHealth,
        env: Callable[[], dict[str, str]],
        instance: int = 1,
    ) -> None:
        """``instance`` > 1 names another process of the same command (``airflow-triggerer-2``)."""
        self.name = f"airflow-{name}" + (f"-{instance}" if instance > 1 else "")
        self.command = name
        self.cfg = cfg
        self._health = health
        self.env = env
        airflow = str(Path(sys.executable).parent / "airflow")
        self.process = ManagedProcess(self.name, [airflow, *AIRFLOW_COMMANDS[name]], cfg.state_dir)

    def alive(self) -> bool:
        return self.process.alive()

    def healthy(self) -> bool:
        return self._health.part(self.command)

    def start(self) -> None:
        self.process.start(self.env())

    def stop(self) -> None:
        stop_processes([self.process])


class AirflowServers:
    """Airflow's four processes as a group: migrate once, start, stop together (also used by bench/).

    ``triggerers`` > 1 runs that many triggerers (Airflow's HA mode: each takes its share of the
    triggers), named ``airflow-triggerer``, ``airflow-triggerer-2``...; the benchmark uses it to
    measure what a second triggerer costs. ``down`` also stops extra triggerers an earlier group of
    this state folder started, whatever this group's count."""

    def __init__(self, cfg: StackConfig, triggerers: int = 1) -> None:
        self.cfg = cfg
        health = AirflowHealth(cfg)
        self.processes = [AirflowProcess(name, cfg, health, self.env) for name in AIRFLOW_COMMANDS]
        self.processes += [AirflowProcess("triggerer", cfg, health, self.env, n) for n in range(2, triggerers + 1)]

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.cfg.client_env(), **self.cfg.airflow_env()}

    def healthy(self) -> bool:
        return all(p.alive() and p.healthy() for p in self.processes)

    def migrate(self) -> None:
        self.cfg.airflow_home.mkdir(parents=True, exist_ok=True)
        airflow = str(Path(sys.executable).parent / "airflow")
        with (self.cfg.state_dir / "airflow-migrate.log").open("ab") as log:
            subprocess.run([airflow, "db", "migrate"], env=self.env(), stdout=log, stderr=subprocess.STDOUT, check=True)
        never_reuse_trigger_ids(self.cfg.airflow_home / "airflow.db")  # a cleared task's new trigger, see there
        keep_live_assignments(self.cfg.airflow_home / "airflow.db")  # several triggerers, see there (after the rebuild)

    def up(self, timeout: float = 120) -> bool:
        """Start the four processes (without supervision) unless Airflow is healthy; True if started."""
        if self.healthy():
            return False
        self.migrate()
        for process in self.processes:
            if not process.alive():
                process.start()
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                logs = self.cfg.state_dir / "airflow-*.log"
                raise RuntimeError(f"Airflow was not healthy within {timeout:.0f} s; see {logs}")
            time.sleep(0.5)
        return True

    def down(self) -> None:
        ours = {p.name for p in self.processes}
        extra = [  # triggerers a group with more of them started in this state folder
            ManagedProcess(pid_file.stem, [], self.cfg.state_dir)
            for pid_file in self.cfg.state_dir.glob("airflow-triggerer-*.pid")
            if pid_file.stem not in ours
        ]
        stop_processes([p.process for p in self.processes] + extra)
