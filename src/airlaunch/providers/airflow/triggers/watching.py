"""Watching a launched container until its try ends: what the trigger does between launch and end.

What it guarantees:

* Latency: with a status queue, S3 announces each status.json on SQS and the triggerer's one long
  poll for all tasks (``status_notifications``) wakes the watch at once. Without one, the end is
  seen within one ``poll_interval``. A container that ends without writing status.json gets one
  from the launcher (its Docker event watcher, or ECS's task state event), which wakes the watch
  the same way; and every ``describe_every`` ticks the launcher is asked about the container, in
  the background, the fallback for an end no event reported.
* Cost: at most one S3 request per ``poll_interval`` per task, never a LIST: a GET of status.json,
  except every ``log_every``-th tick, which reads the next part of the running log instead
  (``log_follower``: bounded per request, however much the task prints). A log part that is not
  there yet (the container waits for a CPU, or the task is quiet) doubles the wait before the next
  look, up to ``QUIET_LOG_SECONDS``; a part found brings it back to ``log_every`` ticks. While
  notifications arrive, status.json is read only when one says so, and otherwise, as a safety net
  for a lost one, every ``NOTIFIED_STATUS_SECONDS``; a trigger that has just launched its container
  does not look before the first of those (its status.json cannot be there unannounced, and a
  notification that came before the watch began is handed back for it). These periodic reads are
  spread further apart when the triggerer watches many tasks (its ``TriggererLoop``'s read budget):
  200 tasks showing their logs every 5 s would otherwise cost a 2-core machine's triggerer most of
  a core. A short task of a 50-task fan-out costs its trigger two to three GETs besides the status,
  result and log it ends with (docs/benchmarks.md, S3 requests a try).
* Outages: an S3 or Lambda error that passes (connection refused, throttling, 5xx) never ends the
  watch while the container may still run: it keeps watching for up to ``outage_seconds``; past
  that it stops the container first, then gives up saying why.
* The deadline (the task's execution_timeout) ends the watch as ``TimedOut``; what to do then is
  the completion's (``completing``).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airlaunch.protocol import InvalidRequest, Status, status_of
from airlaunch.providers.airflow.hooks.launcher import aread
from airlaunch.providers.airflow.hooks.retry import is_transient
from airlaunch.providers.airflow.triggers.log_follower import LogFollower

if TYPE_CHECKING:
    from airlaunch.providers.airflow.triggerer import TriggererLoop
    from airlaunch.providers.airflow.triggers.launched_task import LaunchedTaskTrigger

NOTIFIED_STATUS_SECONDS = 30.0  # while notifications arrive: the safety-net read of status.json, this far apart
QUIET_LOG_SECONDS = 30.0  # the longest wait between looks for the next log part while none comes


@dataclass(frozen=True)
class Ended:
    """The try ended: its status.json, written by its runtime or, for a container that left none, the launcher."""

    status: Status


@dataclass(frozen=True)
class GaveUp:
    """The watch cannot go on (a malformed status.json, an outage that lasted): the task fails with ``detail``."""

    state: str
    detail: str


@dataclass(frozen=True)
class TimedOut:
    """The task's execution_timeout passed while its container still ran."""


Outcome = Ended | GaveUp | TimedOut


class Watch:
    """One trigger's watch of its container: ``until_end`` ticks every poll_interval until the try ends."""

    def __init__(
        self,
        trigger: LaunchedTaskTrigger,
        s3: Any,
        follower: LogFollower,
        wake: asyncio.Event | None,
        shared: TriggererLoop,
        launched_now: bool = False,
    ) -> None:
        self.trigger = trigger
        self.s3 = s3
        self.follower = follower
        self.wake = wake
        self.shared = shared
        self.launched_now = launched_now  # this trigger launched the container a moment ago
        self.layout = trigger.watched.layout
        self._outage_since: float | None = None

    async def until_end(self) -> Outcome:
        """Tick every poll_interval: GET status.json, or when its turn comes the next log part.

        While notifications arrive (``wake``), status.json is read when one says it was written, and
        otherwise only every ``NOTIFIED_STATUS_SECONDS``, as a safety net. The next log part is looked
        for every log_every-th tick, less often while it does not come (``QUIET_LOG_SECONDS`` at most).
        Every describe_every-th tick the launcher is asked about the container, without waiting for it:
        behind a queue of launches (a fan-out's) its answer can take minutes, and meanwhile notifications
        and status reads still count.
        """
        trigger = self.trigger
        tick = 0
        woke = False
        next_log: int | None = None  # the tick of the next look for a log part
        next_status: int | None = None  # the tick of the next safety-net read of status.json (while notified)
        log_misses = 0
        describing: asyncio.Task[Status | None] | None = None
        try:
            while True:
                listener = trigger._listener
                polling = self.wake is None or (listener is not None and listener.degraded)
                stretch = self.shared.stretch(trigger.log_every, trigger.poll_interval)
                every = trigger.log_every * stretch
                safety_net = max(every, math.ceil(NOTIFIED_STATUS_SECONDS / trigger.poll_interval) * stretch)
                if next_log is None or next_status is None:
                    next_log, next_status = every - 1, safety_net if self.launched_now else 0
                try:
                    if tick >= next_log and not woke:
                        found = await self.follower.step(self.s3)
                        log_misses = 0 if found else log_misses + 1
                        next_log = tick + self._log_wait(every, log_misses)
                    elif woke or polling or tick >= next_status:
                        next_status = tick + safety_net
                        status = await self.read_status()
                        if status is not None:
                            return Ended(status)
                    if describing is not None and describing.done():
                        asked, describing = describing, None
                        status = asked.result()
                        if status is not None:
                            return Ended(status)
                    elif describing is None and (tick + 1) % (trigger.describe_every * stretch) == 0:
                        describing = asyncio.ensure_future(trigger._ended_unrecorded())
                    self._outage_since = None
                except InvalidRequest as exc:  # a malformed status.json: fail with what is wrong, not a traceback
                    return GaveUp("failed", f"{exc}")
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    gave_up = await self._ride_out(exc)
                    if gave_up is not None:
                        return gave_up
                if trigger.deadline is not None and time.time() > trigger.deadline:
                    return TimedOut()
                tick += 1
                woke = await self._sleep()
        finally:
            if describing is not None:
                describing.cancel()

    def _log_wait(self, every: int, misses: int) -> int:
        """Ticks until the next look for a log part: ``every``, doubled for each look in a row that found
        none, at most ``QUIET_LOG_SECONDS`` (never less than ``every``)."""
        quiet = max(every, math.ceil(QUIET_LOG_SECONDS / self.trigger.poll_interval))
        return int(min(every * 2 ** min(misses, 16), quiet))

    async def read_status(self) -> Status | None:
        """The try's status.json, None while it has none."""
        return status_of(await aread(self.s3, self.layout.bucket, self.layout.status_key), self.layout)

    async def _ride_out(self, exc: BaseException) -> GaveUp | None:
        """An S3 or Lambda error that may pass: keep watching, unless it lasted outage_seconds."""
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = now
            self.trigger.log.warning("S3 or the launcher is unreachable (%s): still watching", exc)
        lasted = now - self._outage_since
        if lasted < self.trigger.outage_seconds:
            return None
        why = f"S3 or the launcher was unreachable for {lasted:.0f} s (last error: {exc})"
        stopped = await self.trigger.stop(f"{why}; giving up", budget=30)
        return GaveUp("failed", f"{why}; the container was {'stopped' if stopped else 'NOT confirmed stopped'}")

    async def _sleep(self) -> bool:
        """Wait one poll interval; True when a notification cut it short."""
        if self.wake is None:
            await asyncio.sleep(self.trigger.poll_interval)
            return False
        try:
            await asyncio.wait_for(self.wake.wait(), self.trigger.poll_interval)
        except TimeoutError:
            return False
        self.wake.clear()
        return True
