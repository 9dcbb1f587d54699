"""The task runtime writes its usage record into status.json (S3 from moto, the task a real process)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from airlaunch.protocol import ENV_BUCKET, ENV_PREFIX, STATUS_FILE, Status, TaskState
from airlaunch.runtime.entrypoint import TaskRun, parse_args
from airlaunch.runtime.settings import RuntimeSettings
from tests.unit.conftest import moments_in_order, with_params_yaml

BUCKET = "runtime-usage"
PREFIX = "runs/d/r/t/-1/1/"
BURN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\nprint('burnt')"


@pytest.fixture
def s3(moto_s3: Any) -> Any:
    """moto's S3 (tests/unit/conftest.py) with the try's params.yaml in place."""
    return with_params_yaml(moto_s3, BUCKET, PREFIX)


def test_status_json_carries_phases_in_order_and_the_cpu_the_task_burnt(s3: Any, tmp_path: Path) -> None:
    settings = RuntimeSettings(log_flush_seconds=60, log_tail_lines=5, kill_grace_seconds=1, work_dir=str(tmp_path))
    run = TaskRun(parse_args(["--", sys.executable, "-c", BURN]), settings, {ENV_BUCKET: BUCKET, ENV_PREFIX: PREFIX})

    assert run.run() == 0

    status = Status.from_json(s3.get_object(Bucket=BUCKET, Key=PREFIX + STATUS_FILE)["Body"].read())
    assert status.state is TaskState.SUCCEEDED and status.usage is not None
    parsed = moments_in_order(status)
    # The user code ran about 0.3 s of CPU between its start and end marks.
    code = parsed[4] - parsed[3]
    assert 0.25 < code.total_seconds() < 30
    measured = status.usage.resources
    assert measured.architecture in ("x86_64", "arm64")
    assert measured.memory_peak_bytes is not None and measured.memory_peak_bytes > 0
