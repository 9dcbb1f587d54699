"""ManagedProcess: a process whose leader died alone leaves no orphans behind a restart or a stop."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from airlaunch.stack.processes import ManagedProcess, stop_processes

# A leader that starts a child (as the scheduler starts its LocalExecutor workers) and prints its pid.
LEADER = "import subprocess, time; c = subprocess.Popen(['sleep', '300']); print(c.pid, flush=True); time.sleep(300)"


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _started_child(process: ManagedProcess) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = process.log.read_text() if process.log.exists() else ""
        if text.strip():
            return int(text.split()[-1])
        time.sleep(0.05)
    raise AssertionError("the leader printed no child pid")


def _wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while _exists(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _exists(pid)


def test_a_restart_kills_what_the_dead_leader_left_in_its_group(tmp_path: Path) -> None:
    process = ManagedProcess("leader", [sys.executable, "-c", LEADER], tmp_path)
    leader = process.start(dict(os.environ))
    child = _started_child(process)
    os.kill(leader, signal.SIGKILL)  # the leader alone, as a crash would
    os.waitpid(leader, 0)
    assert _exists(child) and not process.alive()

    process.log.unlink()
    new_leader = process.start(dict(os.environ))
    assert _wait_gone(child), "the old leader's child outlived the restart"
    new_child = _started_child(process)
    assert _exists(new_child)  # the new group is left alone

    assert stop_processes([process], grace=5) == ["leader"]
    assert _wait_gone(new_child) and _wait_gone(new_leader)


def test_a_stop_after_the_leader_died_kills_its_orphans(tmp_path: Path) -> None:
    process = ManagedProcess("leader", [sys.executable, "-c", LEADER], tmp_path)
    leader = process.start(dict(os.environ))
    child = _started_child(process)
    os.kill(leader, signal.SIGKILL)
    os.waitpid(leader, 0)

    assert stop_processes([process], grace=1) == []  # nothing alive to stop by its pid file
    assert _wait_gone(child), "the dead leader's child outlived make down"
    assert not process.pid_file.exists()


def test_a_restart_right_after_the_crash_kills_the_orphans_before_anyone_reaped_the_leader(tmp_path: Path) -> None:
    """The supervisor may restart before it looked: the dead leader is still an unreaped zombie."""
    process = ManagedProcess("leader", [sys.executable, "-c", LEADER], tmp_path)
    leader = process.start(dict(os.environ))
    child = _started_child(process)
    os.kill(leader, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{leader}/stat").read_text().split()[2] != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)

    process.log.unlink()
    process.start(dict(os.environ))
    assert _wait_gone(child), "the zombie leader's child outlived the restart"
    stop_processes([process], grace=5)
