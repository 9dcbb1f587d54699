"""What the end of a try costs its trigger in S3 requests (issue 22): a small result comes with status.json
(``Status.result_json``, written by the runtime: S3 from moto, the task a real process), so the trigger reads
neither result.json nor, when status.json holds every line, log.txt; a larger result is read as before."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airlaunch.protocol import (
    ENV_BUCKET,
    ENV_PREFIX,
    ENV_SECRET_NAMES,
    INLINE_RESULT_BYTES,
    STATUS_FILE,
    Handle,
    Resources,
    ResultLayout,
    Status,
)
from airlaunch.providers.airflow.triggers.completing import Completion
from airlaunch.providers.airflow.triggers.log_follower import LogFollower
from airlaunch.runtime import resources
from airlaunch.runtime.entrypoint import TaskRun, parse_args
from airlaunch.runtime.settings import RuntimeSettings
from tests.unit.conftest import with_params_yaml
from tests.unit.fake_s3 import AsyncBody

BUCKET = "completion-reads"
PREFIX = "runs/d/r/t/-1/1/"
LAYOUT = ResultLayout(BUCKET, PREFIX)


class TriggerS3:
    """The trigger's aiobotocore client over moto's S3 (what the runtime wrote); records (operation, file)."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.calls: list[tuple[str, str]] = []

    async def get_object(self, Bucket: str, Key: str, Range: str | None = None) -> dict[str, Any]:
        self.calls.append(("get_object", Key.removeprefix(PREFIX)))
        body = self.s3.get_object(Bucket=Bucket, Key=Key)["Body"].read()  # moto's ClientError for a missing one
        return {"Body": AsyncBody(body), "ContentRange": f"bytes 0-{len(body) - 1}/{len(body)}"}

    async def put_object(self, **request: Any) -> dict[str, Any]:
        self.calls.append(("put_object", request["Key"].removeprefix(PREFIX)))
        return {}


def _run_task(moto_s3: Any, tmp_path: Path, code: str, environ: dict[str, str] | None = None) -> Status:
    s3 = with_params_yaml(moto_s3, BUCKET, PREFIX)
    settings = RuntimeSettings(log_flush_seconds=60, work_dir=str(tmp_path))
    env = {ENV_BUCKET: BUCKET, ENV_PREFIX: PREFIX, **(environ or {})}
    run = TaskRun(parse_args(["--", sys.executable, "-c", code]), settings, env)
    assert run.run() == 0
    return Status.from_json(s3.get_object(Bucket=BUCKET, Key=PREFIX + STATUS_FILE)["Body"].read())


def _complete(s3: TriggerS3, status: Status, max_xcom_bytes: int = 49152) -> Any:
    handle = Handle("docker", "abc", BUCKET, PREFIX, True, {})
    trigger = SimpleNamespace(
        watched=handle,
        log=logging.getLogger("completion"),
        end_from_trigger=False,
        retry_seconds=1,
        retry_max_backoff=1,
        max_xcom_bytes=max_xcom_bytes,
        task_instance=None,
        launch_requested_at=None,
    )
    follower = LogFollower(LAYOUT, trigger.log)
    event = asyncio.run(Completion(trigger, s3, follower).finished(status))
    return event.payload


SAVES = "import json, os\njson.dump({}, open(os.environ['AIRLAUNCH_RESULT_FILE'], 'w'))\nprint('saved')"


@pytest.fixture(autouse=True)
def _no_cgroup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources, "current_resources", lambda: Resources(oom_kills=0))


def test_a_small_result_comes_with_status_json_and_the_trigger_reads_nothing_more(moto_s3: Any, tmp_path: Path) -> None:
    status = _run_task(moto_s3, tmp_path, SAVES.format({"sleep_seconds": 0.5}))
    written = moto_s3.get_object(Bucket=BUCKET, Key=LAYOUT.result_key)["Body"].read()
    assert status.result_json is not None and status.result_json.encode() == written  # the same bytes

    s3 = TriggerS3(moto_s3)
    payload = _complete(s3, status)

    assert payload["state"] == "succeeded" and payload["result"] == {"sleep_seconds": 0.5}
    assert s3.calls == [("put_object", "timings.json")]  # no GET: the result and the log came with status.json


def test_a_secret_in_a_small_result_is_masked_in_status_json_too(moto_s3: Any, tmp_path: Path) -> None:
    status = _run_task(
        moto_s3,
        tmp_path,
        SAVES.format({"token": "s3cr3t-value"}),
        {ENV_SECRET_NAMES: "TOKEN", "TOKEN": "s3cr3t-value"},
    )
    assert status.result_json is not None and "s3cr3t-value" not in status.result_json


def test_a_larger_result_is_read_from_result_json(moto_s3: Any, tmp_path: Path) -> None:
    big = {"values": "x" * INLINE_RESULT_BYTES}
    status = _run_task(moto_s3, tmp_path, SAVES.format(big))
    assert status.result_json is None

    s3 = TriggerS3(moto_s3)
    payload = _complete(s3, status)

    assert payload["result"] == big
    assert ("get_object", "result.json") in s3.calls


def test_an_inline_result_over_max_xcom_bytes_reaches_xcom_by_its_key_only(moto_s3: Any, tmp_path: Path) -> None:
    status = _run_task(moto_s3, tmp_path, SAVES.format({"values": list(range(100))}))
    assert status.result_json is not None and len(status.result_json) > 100

    payload = _complete(TriggerS3(moto_s3), status, max_xcom_bytes=100)

    assert payload["state"] == "succeeded" and payload["result"] is None
    assert json.loads(status.result_json) == {"values": list(range(100))}
