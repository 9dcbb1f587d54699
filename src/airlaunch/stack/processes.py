"""Processes the stack starts, each recorded in a pid file so any later command finds it.

A process counts as alive only if its pid exists, is not a zombie and still runs the program
that was started (a pid file can outlive its process and the pid be reused). Stopping sends
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


def pid_alive(pid: int, marker: str = "") -> bool:
    """True if ``pid`` runs (not a zombie) and, if given, its command line contains ``marker``."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child and has ended
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and marker in cmdline


class ManagedProcess:
    """One long-running process of the stack: ``argv`` started in its own session, logged to a file."""

    def __init__(self, name: str, argv: list[str], state_dir: Path, marker: str) -> None:
        self.name = name
        self.argv = argv
        self.pid_file = state_dir / f"{name}.pid"
        self.log = state_dir / f"{name}.log"
        self.marker = marker  # what its command line must contain to be this process

    @property
    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        pid = self.pid
        return pid is not None and pid_alive(pid, self.marker)

    def start(self, env: dict[str, str]) -> int:
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            proc = subprocess.Popen(
                self.argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.pid_file.write_text(str(proc.pid))
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
        process.pid_file.unlink(missing_ok=True)
    return [p.name for p in running]
