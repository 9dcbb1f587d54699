"""Local results survive a clean stop and a kill -9 of LocalStack (its S3 journal, localstack/plugin):
the same keys with the same bytes come back through S3, and the results CLI still lists the run."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest

from airlaunch.cli import main as airlaunch_cli
from airlaunch.protocol import run_prefix
from airlaunch.stack import Stack
from tests.conftest import LauncherClient

pytestmark = pytest.mark.stack


def _snapshot(s3: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {item["Key"]: s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listed}


def _wait_healthy(stack: Stack, seconds: float = 60) -> float:
    start = time.monotonic()
    while not (stack.localstack.alive() and stack.localstack.healthy()):
        assert time.monotonic() - start < seconds, "LocalStack did not come back"
        time.sleep(0.2)
    return time.monotonic() - start


def _listed_runs(capsys: pytest.CaptureFixture[str], dag_id: str) -> list[str]:
    capsys.readouterr()
    assert airlaunch_cli(["runs", "--dag", dag_id, "--json"]) == 0
    return [run["run_id"] for run in json.loads(capsys.readouterr().out)]


def test_results_survive_a_clean_stop_and_a_kill_9(
    stack: Stack, launcher: LauncherClient, s3: Any, identity: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    echo = launcher.launch("diagnostic", identity, {"action": "echo", "message": "kept"})
    notebook = launcher.launch("report_notebook", {**identity, "task_id": "report"}, {"values": [1, 2]})
    launcher.wait_status(echo)
    launcher.wait_status(notebook)
    prefix = run_prefix("runs", identity["dag_id"], identity["run_id"])
    before = _snapshot(s3, stack.cfg.bucket, prefix)
    assert {key.rsplit("/", 1)[1] for key in before} >= {"params.yaml", "result.json", "log.txt", "status.json"}
    assert any(key.endswith("output.ipynb") for key in before)

    stack.down(only=["localstack"])  # a clean stop
    assert not stack.localstack.alive()
    stack.up(only=["localstack"])
    assert _snapshot(s3, stack.cfg.bucket, prefix) == before

    os.kill(stack.localstack.process.pid or 0, signal.SIGKILL)  # a crash: the supervisor restarts it
    time.sleep(0.5)
    came_back = _wait_healthy(stack)
    print(f"LocalStack back {came_back:.1f} s after a kill -9")
    assert _snapshot(s3, stack.cfg.bucket, prefix) == before
    assert identity["run_id"] in _listed_runs(capsys, identity["dag_id"])

    # and the restarted LocalStack keeps what it is given from now on
    later = launcher.launch("diagnostic", {**identity, "task_id": "after_restart"}, {"action": "echo"})
    assert launcher.wait_status(later).state == "succeeded"
