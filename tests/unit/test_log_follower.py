"""The trigger's log follower: whole lines, bounded work per request, and a marker for what it skips."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from botocore.exceptions import ClientError

from airlaunch.protocol import ResultLayout
from airlaunch.providers.airflow.triggers.log_follower import LogFollower
from tests.unit.fake_s3 import AsyncBody

LAYOUT = ResultLayout("b", "runs/d/r/t/-1/1/")


class RangedS3:
    """get_object with HTTP Range semantics, as S3 answers them; records each range asked."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.asked: list[tuple[str, str]] = []

    async def get_object(self, Bucket: str, Key: str, Range: str) -> dict[str, Any]:
        self.asked.append((Key, Range))
        data = self.objects.get(Key)
        spec = Range.removeprefix("bytes=")
        if data is not None and spec.startswith("-"):
            first = max(0, len(data) - int(spec[1:]))
            part = data[first:]
        elif data is not None:
            start, _, end = spec.partition("-")
            first = int(start)
            part = data[first : int(end) + 1 if end else None]
        if data is None or (not spec.startswith("-") and first >= len(data)):
            raise ClientError({"Error": {"Code": "NoSuchKey" if data is None else "InvalidRange"}}, "GetObject")
        return {"Body": AsyncBody(part), "ContentRange": f"bytes {first}-{first + len(part) - 1}/{len(data)}"}


def _follow(objects: dict[str, bytes], steps: int, read_bytes: int, caplog: pytest.LogCaptureFixture) -> RangedS3:
    s3 = RangedS3(objects)
    follower = LogFollower(LAYOUT, logging.getLogger("follow"), read_bytes=read_bytes, max_lines=50)

    async def run() -> None:
        for _ in range(steps):
            await follower.step(s3)
        await follower.finish(s3)

    with caplog.at_level(logging.INFO, "follow"):
        asyncio.run(run())
    return s3


def _shown(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The container's lines as the task log shows them (a part's lines come in one log event)."""
    lines = [line for record in caplog.records for line in record.getMessage().split("\n")]
    assert all(line.startswith("[container] ") for line in lines)
    return [line.removeprefix("[container] ") for line in lines]


def test_parts_are_shown_as_whole_lines_then_the_rest_from_log_txt(caplog: pytest.LogCaptureFixture) -> None:
    objects = {
        LAYOUT.log_part_key(0): b"one\ntw",
        LAYOUT.log_part_key(1): b"o\nthree\n",
        LAYOUT.log_key: b"one\ntwo\nthree\nfour\n",
    }
    s3 = _follow(objects, steps=3, read_bytes=1024, caplog=caplog)
    assert _shown(caplog) == ["one", "two", "three", "four"]
    assert s3.asked[-1] == (LAYOUT.log_key, "bytes=14-1037")  # the end, from where the parts stopped


def test_a_huge_burst_costs_bounded_reads_and_says_what_it_skipped(caplog: pytest.LogCaptureFixture) -> None:
    burst = b"".join(b"line %06d\n" % i for i in range(200_000))  # 2.2 MB
    objects = {LAYOUT.log_part_key(0): burst[: 1 << 20], LAYOUT.log_key: burst}
    s3 = _follow(objects, steps=2, read_bytes=4096, caplog=caplog)
    shown = _shown(caplog)
    assert len(shown) <= 2 * 50 + 2  # at most max_lines per read, plus the markers
    assert len(caplog.records) <= 2 * 2 + 1  # one log event per read, plus the markers
    for _, asked in s3.asked:  # never more than read_bytes at once
        first, _, last = asked.removeprefix("bytes=").partition("-")
        assert (first == "" and last == "4096") or (last != "" and int(last) - int(first) + 1 <= 4096), asked
    markers = [line for line in shown if "bytes of output not shown here" in line]
    assert markers and all("s3://b/runs/d/r/t/-1/1/log.txt" in line for line in markers)
    assert shown[-1] == "line 199999"  # the end of the log is what is shown last
