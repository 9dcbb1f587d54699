"""Processes the stack starts, each recorded in a pid file so any later command finds it.

A process counts as alive only if its pid exists, is not a zombie and is the very process that
was started: the pid file keeps the process's start time too, since a pid file can outlive its
process and the pid be reused (and a process may rename itself, as Airflow's api-server does). Stopping sends
SIGTERM to the process group, then SIGKILL after a grace period; several processes are
stopped at once, so ``make down`` takes as long as the slowest, not the sum.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: [state, ppid, ...]; None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    fields = _stat(pid)
    return fields[19] if fields else ""


def pid_alive(pid: int, started: str) -> bool:
    """True if ``pid`` runs (not a zombie) and is the process that started at ``started``."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child and has ended
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X") and fields[19] == started


class ManagedProcess:
    """One long-running process of the stack: ``argv`` started in its own session, logged to a file."""

    def __init__(self, name: str, argv: list[str], state_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.pid_file = state_dir / f"{name}.pid"
        self.log = state_dir / f"{name}.log"

    def _recorded(self) -> tuple[int, str] | None:
        try:
            pid, *started = self.pid_file.read_text().split()
            return int(pid), started[0] if started else start_time(int(pid))  # (an older pid file: pid only)
        except (OSError, ValueError):
            return None

    @property
    def pid(self) -> int | None:
        recorded = self._recorded()
        return recorded[0] if recorded else None

    def alive(self) -> bool:
        recorded = self._recorded()
        return recorded is not None and pid_alive(*recorded)

    def kill_orphans(self) -> None:
        """Kill what is left of the process's group after its leader died alone (the scheduler killed
        by itself leaves its LocalExecutor workers idle forever). The leader is gone or a zombie, so
        the kernel has not given its pid to another group: the group holds only what it started."""
        recorded = self._recorded()
        if recorded is None or pid_alive(*recorded):  # (pid_alive also reaps the leader if it is our child)
            return
        fields = _stat(recorded[0])
        if fields is None or (fields[0] in ("Z", "X") and fields[19] == recorded[1]):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(recorded[0], signal.SIGKILL)

    def start(self, env: dict[str, str]) -> int:
        self.kill_orphans()
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            proc = subprocess.Popen(
                self.argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.pid_file.write_text(f"{proc.pid} {start_time(proc.pid)}")
        return proc.pid


def stop_processes(processes: Iterable[ManagedProcess], grace: float = 15) -> list[str]:
    """SIGTERM every live one at once, SIGKILL what is left after ``grace``; the names stopped."""
    processes = list(processes)
    running = [p for p in processes if p.alive()]
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid or 0, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(p.alive() for p in running) and time.monotonic() < deadline:
        time.sleep(0.1)
    for process in running:
        if process.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid or 0, signal.SIGKILL)
    for process in processes:
        process.kill_orphans()
        process.pid_file.unlink(missing_ok=True)
    return [p.name for p in running]
