"""The end of a try's log: what status.json says of it spares the trigger its read of log.txt (issue 22's S3
requests a try), while the task log shows the same lines.

The runtime (S3 from moto, the task a real process) writes log.txt's size and line count into status.json;
the trigger's follower, given that status, reads log.txt only when it has shown part of the log and not all
of it, or when status.json's log_tail does not hold every line.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from airlaunch.protocol import ENV_BUCKET, ENV_PREFIX, STATUS_FILE, Resources, ResultLayout, Status
from airlaunch.providers.airflow.triggers.log_follower import LogFollower
from airlaunch.runtime import resources
from airlaunch.runtime.entrypoint import TaskRun, parse_args
from airlaunch.runtime.settings import RuntimeSettings
from tests.unit.conftest import with_params_yaml
from tests.unit.test_log_follower import RangedS3

BUCKET = "log-at-the-end"
PREFIX = "runs/d/r/t/-1/1/"
LAYOUT = ResultLayout(BUCKET, PREFIX)


def _run_task(moto_s3: Any, tmp_path: Path, code: str, tail_lines: int) -> tuple[Status, bytes]:
    s3 = with_params_yaml(moto_s3, BUCKET, PREFIX)
    settings = RuntimeSettings(log_flush_seconds=60, log_tail_lines=tail_lines, work_dir=str(tmp_path))
    run = TaskRun(parse_args(["--", sys.executable, "-c", code]), settings, {ENV_BUCKET: BUCKET, ENV_PREFIX: PREFIX})
    assert run.run() == 0
    status = Status.from_json(s3.get_object(Bucket=BUCKET, Key=PREFIX + STATUS_FILE)["Body"].read())
    return status, s3.get_object(Bucket=BUCKET, Key=LAYOUT.log_key)["Body"].read()


def _finish(objects: dict[str, bytes], status: Status | None, steps: int, caplog: pytest.LogCaptureFixture) -> RangedS3:
    s3 = RangedS3(objects)
    follower = LogFollower(LAYOUT, logging.getLogger("end"), read_bytes=1024, max_lines=50)

    async def run() -> None:
        for _ in range(steps):
            await follower.step(s3)
        await follower.finish(s3, status)

    with caplog.at_level(logging.INFO, "end"):
        asyncio.run(run())
    return s3


def _shown(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [line.removeprefix("[container] ") for r in caplog.records for line in r.getMessage().split("\n")]


def test_the_runtime_says_how_big_its_log_is_and_how_many_lines_it_has(
    moto_s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resources, "current_resources", lambda: Resources(oom_kills=0))
    status, log = _run_task(moto_s3, tmp_path, "print('one')\nprint('two')", tail_lines=5)
    assert status.log_bytes == len(log) and status.log_lines == 2 and status.log_tail == ["one", "two"]
    assert status.log_is_in_tail
    again = Status.from_json(status.to_json())
    assert (again.log_bytes, again.log_lines) == (status.log_bytes, 2)

    longer, _ = _run_task(moto_s3, tmp_path, "for i in range(8): print(i)", tail_lines=5)
    assert longer.log_lines == 8 and not longer.log_is_in_tail


def test_a_log_whose_every_line_status_json_holds_is_shown_from_it_without_reading_log_txt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = b"sleeping 0.5 s\nslept 0.5 s\n"
    status = _status(log_bytes=len(log), log_lines=2, log_tail=["sleeping 0.5 s", "slept 0.5 s"])
    s3 = _finish({LAYOUT.log_key: log}, status, steps=0, caplog=caplog)
    assert s3.asked == []
    assert _shown(caplog) == ["sleeping 0.5 s", "slept 0.5 s"]


def test_a_log_shown_whole_from_its_parts_is_not_read_again(caplog: pytest.LogCaptureFixture) -> None:
    log = b"one\ntwo\nthree\n"
    objects = {LAYOUT.log_part_key(0): b"one\ntw", LAYOUT.log_part_key(1): b"o\nthree\n", LAYOUT.log_key: log}
    status = _status(log_bytes=len(log), log_lines=3, log_tail=["one", "two", "three"])
    s3 = _finish(objects, status, steps=2, caplog=caplog)
    assert [key for key, _ in s3.asked] == [LAYOUT.log_part_key(0), LAYOUT.log_part_key(1)]
    assert _shown(caplog) == ["one", "two", "three"]


@pytest.mark.parametrize(
    ("case", "steps", "tail", "lines"),
    [
        ("more lines than the tail holds", 0, ["three"], 3),
        ("part of it shown, the rest not", 1, ["one", "two", "three"], 3),
        ("a status.json without the counts (the launcher's, an older runtime's)", 0, ["one", "two", "three"], None),
    ],
)
def test_otherwise_the_rest_is_read_from_log_txt(
    case: str, steps: int, tail: list[str], lines: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    log = b"one\ntwo\nthree\n"
    objects = {LAYOUT.log_part_key(0): b"one\n", LAYOUT.log_key: log}
    status = _status(log_bytes=len(log) if lines is not None else None, log_lines=lines, log_tail=tail)
    s3 = _finish(objects, status, steps=steps, caplog=caplog)
    assert s3.asked[-1][0] == LAYOUT.log_key, case
    assert _shown(caplog) == ["one", "two", "three"], case


def _status(log_bytes: int | None, log_lines: int | None, log_tail: list[str]) -> Status:
    return Status.from_dict(
        {
            "state": "succeeded",
            "exit_code": 0,
            "started_at": "2026-01-01T00:00:00",
            "ended_at": "2026-01-01T00:00:01",
            "log_tail": log_tail,
            **({"log_bytes": log_bytes} if log_bytes is not None else {}),
            **({"log_lines": log_lines} if log_lines is not None else {}),
        }
    )
