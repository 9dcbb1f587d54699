"""Supervising the task's command: start it, stream its output, stop it, and say how it ended.

``Supervisor.run`` returns an ``Exit``: the exit code, why it ended (``StopReason``) and, where
there is more to say, the detail in words. What it guarantees:

* The command runs in its own process group, so a stop reaches its children too (a notebook's
  kernel, a shell's pipeline); its output goes to the log archive line by line.
* A stop (SIGTERM to the runtime) is forwarded as SIGTERM, then SIGKILL after ``kill_grace_seconds``;
  so is the timeout. A stop that came before the command started is honoured without starting it:
  a SIGTERM caught, or a stop.json left by a stop whose SIGTERM the kernel dropped (a container's
  PID 1 without a handler yet ignores it; Docker and ECS then wait their whole grace and kill). The
  launcher writes stop.json before it signals, so one read before the start closes that window.
* Who stopped it: airlaunch leaves stop.json (with why) before it stops a container; a SIGTERM
  without one is the platform's (``StopReason.PLATFORM``). A failed command is told apart: the
  kernel's OOM killer (the container's memory cgroup counted an OOM kill), another signal, or its
  own exit. Exit codes read as a shell reports them: 128 + signal, 143 for a stop, 124 for a timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airlaunch.protocol import StopReason, StopRequest
from airlaunch.runtime import resources
from airlaunch.runtime.log_archive import LogArchive

EXIT_STOPPED = 143  # 128 + SIGTERM, as a shell reports it
EXIT_TIMEOUT = 124  # as coreutils' timeout reports it
EXIT_RUNTIME_ERROR = 70  # EX_SOFTWARE


@dataclass(frozen=True)
class Exit:
    """How the command ended: its exit code, why, and (for a stop, an OOM kill or a signal) the detail in words."""

    code: int
    reason: StopReason
    detail: str = ""


class Supervisor:
    """Runs one command to its end (``run``); ``on_sigterm`` is the runtime's SIGTERM handler meanwhile."""

    def __init__(
        self,
        read_stop: Callable[[], StopRequest | None],
        clock: resources.PhaseClock,
        kill_grace_seconds: float,
        timeout: float | None = None,
        stop_requested: threading.Event | None = None,
    ) -> None:
        self.read_stop = read_stop
        self.clock = clock
        self.kill_grace_seconds = kill_grace_seconds
        self.timeout = timeout
        self.stop_requested = stop_requested or threading.Event()
        self.proc: subprocess.Popen[str] | None = None

    def on_sigterm(self, signum: int, frame: Any) -> None:
        self.stop_requested.set()
        self._signal_task(signal.SIGTERM)

    def _signal_task(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stopped_before_the_start(self) -> Exit | None:
        """The stop that came before the command started (a SIGTERM caught, or stop.json), None if none did."""
        if not self.stop_requested.is_set():
            with contextlib.suppress(Exception):  # unreadable: the task starts, and a SIGTERM still stops it
                if self.read_stop() is not None:
                    self.stop_requested.set()
        return self._stopped() if self.stop_requested.is_set() else None

    def run(self, command: list[str], env: dict[str, str], log: LogArchive) -> Exit:
        """Run ``command`` to its end, its output into ``log``; how it ended."""
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=env,
            start_new_session=True,  # its own process group, so a stop reaches its children too
        )
        self.clock.mark(resources.USER_CODE_STARTED)
        assert self.proc.stdout is not None
        pump = log.pump(self.proc.stdout)
        deadline = time.monotonic() + self.timeout if self.timeout else None
        reason = StopReason.EXIT
        while self.proc.poll() is None:
            if self.stop_requested.is_set():  # also when SIGTERM came before the task had started
                reason = StopReason.STOPPED
                self._signal_task(signal.SIGTERM)
                break
            if deadline and time.monotonic() > deadline:
                reason = StopReason.TIMEOUT
                log.write(f"airlaunch: timeout of {self.timeout:g} s reached, stopping the task\n")
                self._signal_task(signal.SIGTERM)
                break
            time.sleep(0.1)
        if self.stop_requested.is_set():  # the task may have died of the forwarded SIGTERM first
            reason = StopReason.STOPPED
        if reason is not StopReason.EXIT:
            try:
                self.proc.wait(self.kill_grace_seconds)
            except subprocess.TimeoutExpired:
                self._signal_task(signal.SIGKILL)
                self.proc.wait()
        self.clock.mark(resources.USER_CODE_ENDED)
        pump.join(timeout=5)
        code = self.proc.returncode
        if reason is StopReason.STOPPED:
            return self._stopped()
        if reason is StopReason.TIMEOUT:
            return Exit(EXIT_TIMEOUT, reason)
        if code != 0:  # a signal (the runtime lived on) reads as 128 + signum, as a shell reports it
            return failed(code)
        return Exit(code, reason)

    def _stopped(self) -> Exit:
        """A stop: airlaunch's, with its reason from stop.json, or (no stop.json) the platform's."""
        try:
            stop = self.read_stop()
        except Exception as exc:
            return Exit(EXIT_STOPPED, StopReason.STOPPED, f"a SIGTERM came, and stop.json could not be read ({exc})")
        if stop is None:
            return Exit(EXIT_STOPPED, StopReason.PLATFORM)  # no stop.json: not a stop airlaunch asked for
        return Exit(EXIT_STOPPED, StopReason.STOPPED, stop.reason)


def failed(returncode: int) -> Exit:
    """Why the command failed: the kernel's OOM killer (the command, or a process under it such as a notebook's
    kernel, was killed), another signal, or its own exit."""
    code = 128 - returncode if returncode < 0 else returncode
    measured = resources.current_resources()
    if measured is not None and measured.oom_kills:
        limit = measured.memory_limit_bytes
        at = f" at its {limit // 2**20} MiB memory limit" if limit else ""
        return Exit(code, StopReason.OOM, f"out of memory: the kernel killed the task{at}")
    if returncode > 0:
        return Exit(code, StopReason.EXIT)
    try:
        name = f" ({signal.Signals(-returncode).name})"
    except ValueError:
        name = ""
    return Exit(code, StopReason.KILLED, f"the task was killed by signal {-returncode}{name}")
