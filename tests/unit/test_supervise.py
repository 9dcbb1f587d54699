"""The supervisor says how the command ended in what it returns: exit code, reason and detail (no side channel)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from airlaunch.protocol import Resources, StopReason, StopRequest
from airlaunch.runtime import resources
from airlaunch.runtime.log_archive import LogArchive
from airlaunch.runtime.supervise import EXIT_STOPPED, Exit, Supervisor


def _log(tmp_path: Path) -> LogArchive:
    return LogArchive(tmp_path / "log.txt", 5, lambda number, data: None, lambda age: 3600)


def test_an_exit_of_its_own_and_a_signal_come_back_with_their_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resources, "current_resources", lambda: Resources(oom_kills=0))
    supervisor = Supervisor(lambda: None, resources.PhaseClock(), kill_grace_seconds=1)
    log = _log(tmp_path)
    assert supervisor.run([sys.executable, "-c", "raise SystemExit(3)"], {}, log) == Exit(3, StopReason.EXIT)
    killed = supervisor.run([sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"], {}, log)
    assert killed == Exit(137, StopReason.KILLED, "the task was killed by signal 9 (SIGKILL)")
    log.close()


def test_a_stop_before_the_start_says_who_asked_and_why(tmp_path: Path) -> None:
    """stop.json (the launcher writes it before it signals) is a stop by airlaunch, with its reason; a SIGTERM
    without one is the platform's."""
    asked = Supervisor(lambda: StopRequest(reason="marked failed"), resources.PhaseClock(), 1)
    assert asked.stopped_before_the_start() == Exit(EXIT_STOPPED, StopReason.STOPPED, "marked failed")
    signalled = threading.Event()
    signalled.set()
    platform = Supervisor(lambda: None, resources.PhaseClock(), 1, stop_requested=signalled)
    assert platform.stopped_before_the_start() == Exit(EXIT_STOPPED, StopReason.PLATFORM)
    assert Supervisor(lambda: None, resources.PhaseClock(), 1).stopped_before_the_start() is None
