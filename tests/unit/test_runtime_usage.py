"""The task runtime writes its usage record into status.json (S3 from moto, the task a real process)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from airlaunch.config import RuntimeSettings
from airlaunch.protocol import ENV_BUCKET, ENV_PREFIX, PARAMS_FILE, STATUS_FILE, Status, TaskState
from airlaunch.runtime.entrypoint import TaskRun, parse_args

BUCKET = "runtime-usage"
PREFIX = "runs/d/r/t/-1/1/"
BURN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\nprint('burnt')"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key=PREFIX + PARAMS_FILE, Body=b"params: {}\nrun: {}\n")
        yield client


def test_status_json_carries_phases_in_order_and_the_cpu_the_task_burnt(s3: Any, tmp_path: Path) -> None:
    settings = RuntimeSettings(log_flush_seconds=60, log_tail_lines=5, kill_grace_seconds=1, work_dir=str(tmp_path))
    run = TaskRun(parse_args(["--", sys.executable, "-c", BURN]), settings, {ENV_BUCKET: BUCKET, ENV_PREFIX: PREFIX})

    assert run.run() == 0

    status = Status.from_json(s3.get_object(Bucket=BUCKET, Key=PREFIX + STATUS_FILE)["Body"].read())
    assert status.state is TaskState.SUCCEEDED and status.usage is not None
    phases = status.usage.phases
    moments = [
        phases.runtime_started_at,
        status.started_at,
        phases.params_read_at,
        phases.user_code_started_at,
        phases.user_code_ended_at,
        phases.results_uploaded_at,
        status.ended_at,
    ]
    parsed = [datetime.fromisoformat(m or "") for m in moments]
    assert parsed == sorted(parsed), moments
    # The user code ran about 0.3 s of CPU between its start and end marks.
    code = parsed[4] - parsed[3]
    assert 0.25 < code.total_seconds() < 30
    measured = status.usage.resources
    assert measured.architecture in ("x86_64", "arm64")
    assert measured.memory_peak_bytes is not None and measured.memory_peak_bytes > 0
