"""AirflowServers can run several triggerers (Airflow's HA mode), and stops extra ones a larger group left."""

from __future__ import annotations

import sys
from pathlib import Path

from airlaunch.stack import AirflowServers, StackConfig
from airlaunch.stack.processes import ManagedProcess


def test_extra_triggerers_are_processes_of_their_own_running_the_triggerer(tmp_path: Path) -> None:
    servers = AirflowServers(StackConfig(repo=tmp_path, state_dir=tmp_path / "state"), triggerers=3)
    triggerers = [p for p in servers.processes if p.command == "triggerer"]
    assert [p.name for p in triggerers] == ["airflow-triggerer", "airflow-triggerer-2", "airflow-triggerer-3"]
    assert all(p.process.argv[1:] == ["triggerer", "--skip-serve-logs"] for p in triggerers)
    assert len({p.process.pid_file for p in servers.processes}) == len(servers.processes)


def test_down_stops_a_triggerer_a_group_with_more_triggerers_started(tmp_path: Path) -> None:
    cfg = StackConfig(repo=tmp_path, state_dir=tmp_path / "state")
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    leftover = ManagedProcess("airflow-triggerer-2", sleeper, cfg.state_dir)
    leftover.start({})
    assert leftover.alive()
    AirflowServers(cfg).down()  # one triggerer: its own processes are not running
    assert not leftover.alive()
