"""The end of a try is one log event in the triggerer: the rest of its log and the line saying how it ended.

Each log event a trigger emits is a message from the trigger runner to the triggerer's supervisor, and each
message that arrives on its own wakes the supervisor for a whole turn of its database loop (Airflow 3.3:
``TriggerRunnerSupervisor.run_once``; docs/benchmarks.md, "The triggerer"). The last lines and "succeeded with
exit code" were two events a few milliseconds apart; counted here by log records, no timing involved.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from airlaunch.protocol import Handle, ResultLayout, Status
from airlaunch.providers.airflow.triggers.completing import Completion
from airlaunch.providers.airflow.triggers.log_follower import LogFollower
from tests.unit.test_log_follower import RangedS3

BUCKET, PREFIX = "end-log", "runs/d/r/t/-1/1/"
LAYOUT = ResultLayout(BUCKET, PREFIX)


class S3(RangedS3):
    async def put_object(self, **_: Any) -> dict[str, Any]:  # timings.json
        return {}


class Unreachable(S3):
    async def get_object(self, Bucket: str, Key: str, Range: str) -> dict[str, Any]:
        raise ClientError({"Error": {"Code": "SlowDown"}}, "GetObject")


def _status(log: bytes, tail: list[str]) -> Status:
    return Status.from_dict(
        {
            "state": "succeeded",
            "exit_code": 0,
            "started_at": "2026-01-01T00:00:00",
            "ended_at": "2026-01-01T00:00:01",
            "log_tail": tail,
            "log_bytes": len(log),
            "log_lines": log.count(b"\n"),
        }
    )


def _finished(s3: S3, status: Status, caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    log = logging.getLogger("end-log")
    trigger = SimpleNamespace(
        watched=Handle("docker", "abc", BUCKET, PREFIX, True, {}),
        log=log,
        end_from_trigger=False,
        retry_seconds=1,
        retry_max_backoff=1,
        max_xcom_bytes=4096,
        task_instance=None,
        launch_requested_at=None,
    )
    with caplog.at_level(logging.INFO, "end-log"):
        asyncio.run(Completion(trigger, s3, LogFollower(LAYOUT, log, read_bytes=1024)).finished(status))  # type: ignore[arg-type]
    return [r for r in caplog.records if r.name == "end-log"]


def test_the_last_lines_from_status_json_and_the_end_are_one_event(caplog: pytest.LogCaptureFixture) -> None:
    log = b"sleeping 0.5 s\nslept 0.5 s\n"
    records = _finished(S3({}), _status(log, ["sleeping 0.5 s", "slept 0.5 s"]), caplog)
    assert [r.getMessage() for r in records] == [
        f"[container] sleeping 0.5 s\n[container] slept 0.5 s\ns3://{BUCKET}/{PREFIX} succeeded with exit code 0"
    ]


def test_the_rest_of_log_txt_and_the_end_are_one_event(caplog: pytest.LogCaptureFixture) -> None:
    log = b"".join(f"line {i}\n".encode() for i in range(30))
    s3 = S3({LAYOUT.log_key: log})
    records = _finished(s3, _status(log, ["line 29"]), caplog)  # the tail does not hold every line
    assert len(s3.asked) == 1 and len(records) == 1
    lines = records[0].getMessage().split("\n")
    assert lines[0] == "[container] line 0" and lines[-2] == "[container] line 29"
    assert lines[-1].endswith("succeeded with exit code 0")


def test_an_unreadable_rest_still_says_how_the_try_ended(caplog: pytest.LogCaptureFixture) -> None:
    log = b"".join(f"line {i}\n".encode() for i in range(30))
    records = _finished(Unreachable({}), _status(log, ["line 29"]), caplog)
    messages = [r.getMessage() for r in records]
    assert messages[0].endswith("succeeded with exit code 0")
    assert messages[1].startswith("could not read the rest of the log")
