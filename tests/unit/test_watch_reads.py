"""The S3 reads a trigger's watch makes, tick by tick (issue 22: S3 requests a try at most twice the floor).

The watch runs against an S3 stand-in that records every GET; its sleep is replaced by a tick counter, so
which tick reads what is decided by the watch's schedule alone, not by time: the container's status.json
appears at a chosen tick, announced by a notification or not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from botocore.exceptions import ClientError

from airlaunch.protocol import ResultLayout, Status, StopReason, TaskState
from airlaunch.providers.airflow.triggers.log_follower import LogFollower
from airlaunch.providers.airflow.triggers.watching import Ended, Watch
from tests.unit.fake_s3 import AsyncBody

LAYOUT = ResultLayout("b", "runs/d/r/t/0/1-abc/")
STATUS = Status(TaskState.SUCCEEDED, 0, StopReason.EXIT, "2026-01-01T00:00:00", "2026-01-01T00:00:16", "x")


class RecordingS3:
    """get_object over a dict of objects (a Range is served whole from its start); records each key asked."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.asked: list[str] = []

    async def get_object(self, Bucket: str, Key: str, Range: str | None = None) -> dict[str, Any]:
        self.asked.append(Key)
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject")
        data = self.objects[Key]
        return {"Body": AsyncBody(data), "ContentRange": f"bytes 0-{len(data) - 1}/{len(data)}"}

    def reads_of(self, key: str) -> int:
        return self.asked.count(key)

    def part_reads(self) -> int:
        return sum(key.startswith(LAYOUT.key("log/")) for key in self.asked)


class Shared:
    """The triggerer's read budget with few tasks watched: no stretch."""

    def stretch(self, log_every: int, poll_interval: float) -> int:
        return 1


def _trigger(notified: bool) -> Any:
    async def ended_unrecorded() -> None:
        return None

    return SimpleNamespace(
        watched=SimpleNamespace(layout=LAYOUT),
        _listener=SimpleNamespace(degraded=False) if notified else None,
        log_every=5,
        poll_interval=1.0,
        describe_every=10_000,  # the launcher is not asked here
        deadline=None,
        outage_seconds=60,
        log=logging.getLogger("watch"),
        _ended_unrecorded=ended_unrecorded,
    )


def _watch(
    s3: RecordingS3,
    *,
    notified: bool,
    launched_now: bool,
    on_tick: Callable[[int, RecordingS3], bool],
    max_ticks: int = 200,
) -> tuple[Any, int]:
    """Run a watch to its end; ``on_tick(tick, s3)`` runs in place of each sleep and says whether a
    notification woke it. The outcome and the tick it ended at."""
    trigger = _trigger(notified)

    async def run() -> tuple[Any, int]:
        wake = asyncio.Event() if notified else None
        follower = LogFollower(LAYOUT, trigger.log)
        watch = Watch(trigger, s3, follower, wake, Shared(), launched_now=launched_now)
        ticks = 0

        async def sleep() -> bool:
            nonlocal ticks
            ticks += 1
            assert ticks <= max_ticks, "the watch did not end"
            return on_tick(ticks, s3)

        watch._sleep = sleep
        return await watch.until_end(), ticks

    return asyncio.run(run())


def _ends_at(tick: int, announced: bool) -> Callable[[int, RecordingS3], bool]:
    def on_tick(now: int, s3: RecordingS3) -> bool:
        if now == tick:
            s3.objects[LAYOUT.status_key] = STATUS.to_json().encode()
            return announced
        return False

    return on_tick


def test_a_fan_out_try_whose_container_waits_for_a_cpu_costs_its_trigger_three_reads() -> None:
    """Launched by its trigger, notifications flowing, no log printed before its status.json comes 16 ticks
    later (a container of a 50-task fan-out on 2 cores): the status read the notification asks for and two
    looks for a log part. It was eight: a status read on the first tick and every log_every ticks, and a look
    for the log every log_every ticks."""
    s3 = RecordingS3()
    outcome, ended = _watch(s3, notified=True, launched_now=True, on_tick=_ends_at(16, announced=True))

    assert isinstance(outcome, Ended) and outcome.status == STATUS and ended == 16
    assert s3.reads_of(LAYOUT.status_key) == 1
    assert s3.part_reads() == 2  # ticks 4 and 14: a part not there doubles the wait
    assert len(s3.asked) == 3


def test_a_lost_notification_still_ends_the_try_through_the_safety_net_read() -> None:
    s3 = RecordingS3()
    outcome, ended = _watch(s3, notified=True, launched_now=True, on_tick=_ends_at(10, announced=False))

    assert isinstance(outcome, Ended) and ended == 30  # NOTIFIED_STATUS_SECONDS with a 1 s poll
    assert s3.reads_of(LAYOUT.status_key) == 1


def test_a_trigger_that_did_not_launch_its_container_reads_status_json_at_once() -> None:
    """A trigger resumed after a triggerer restart, or deferred by a worker: the try may have ended while
    nobody watched, its notification taken by a triggerer that is gone."""
    s3 = RecordingS3()
    s3.objects[LAYOUT.status_key] = STATUS.to_json().encode()

    outcome, ended = _watch(s3, notified=True, launched_now=False, on_tick=lambda now, s3: False)

    assert isinstance(outcome, Ended) and ended == 0 and s3.asked == [LAYOUT.status_key]


def test_the_live_log_is_read_every_log_every_ticks_while_parts_come_and_less_often_while_none_does() -> None:
    s3 = RecordingS3()
    for number in range(3):
        s3.objects[LAYOUT.log_part_key(number)] = b"line\n"

    outcome, _ = _watch(s3, notified=True, launched_now=True, on_tick=_ends_at(60, announced=True))

    assert isinstance(outcome, Ended)
    part_ticks = [4, 9, 14, 19, 29, 49]  # three parts found 5 ticks apart, then 5, 10, 20 ticks between misses
    assert s3.part_reads() == len(part_ticks)
    # the safety net's status reads at ticks 30 and 60 (the one the notification asked for)
    assert s3.reads_of(LAYOUT.status_key) == 2


def test_without_notifications_status_json_is_read_on_every_tick_but_the_log_s() -> None:
    s3 = RecordingS3()
    outcome, ended = _watch(s3, notified=False, launched_now=True, on_tick=_ends_at(12, announced=False))

    assert isinstance(outcome, Ended) and ended == 12
    assert s3.part_reads() == 1  # tick 4, a miss: the next look would be at tick 14
    assert s3.reads_of(LAYOUT.status_key) == 12  # ticks 0-3 and 5-12
