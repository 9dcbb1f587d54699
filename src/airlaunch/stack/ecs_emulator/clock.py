"""Time for the emulator: ECS's timestamp formats, and one timer thread for everything that waits.

Every delayed action (a SIGKILL after a task's ``stopTimeout``, the next step of a stopping
task, a Lambda retry) is an entry in one heap served by one thread, so a 500-task fan-out
costs heap entries, not threads, and an idle emulator's timer thread sleeps on a condition
variable without waking. Callbacks run on that thread and must be quick: anything that
may block (Docker, HTTP) hands itself to a worker pool from its callback.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_ms(value: datetime) -> str:
    """ECS's event timestamps: ISO 8601 in UTC with milliseconds, ``2020-01-23T17:57:34.402Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def iso_s(value: datetime) -> str:
    """EventBridge's envelope ``time``: ISO 8601 in UTC to the second, ``2020-01-23T18:03:12Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Handle:
    """A scheduled call; :meth:`cancel` makes it a no-op if it has not run yet."""

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """One daemon thread running callbacks at their due time (monotonic clock), in due order."""

    def __init__(self, name: str = "ecs-emulator-timer") -> None:
        self._heap: list[tuple[float, int, Handle, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Handle:
        handle = Handle()
        with self._cv:
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), next(self._seq), handle, fn, args))
            self._cv.notify()
        return handle

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._heap.clear()
            self._cv.notify()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cv.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                if self._closed:
                    return
                _, _, handle, fn, args = heapq.heappop(self._heap)
            if handle.cancelled:
                continue
            try:
                fn(*args)
            except Exception:  # one failing callback must not stop every later one
                log.exception("scheduled call %r failed", fn)
