"""An S3 of moto's, in this process, and helpers that lay out task tries in it by hand."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from airlaunch.protocol import PARAMS_FILE, ResultLayout, RunIdentity, Status, StopReason, TaskState, Usage


@pytest.fixture(autouse=True)
def no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests reach no AWS and no LocalStack, whatever the session exported (tests/airflow's
    conftest points AWS_ENDPOINT_URL at the stack's LocalStack for the whole run): fake credentials,
    no endpoint, so moto's mock_aws catches every call."""
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AIRLAUNCH_BUCKET", "AIRLAUNCH_KEY_PREFIX"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def moto_s3() -> Iterator[Any]:
    """boto3 clients made inside the test (the CLI's too) talk to moto."""
    with mock_aws():
        yield boto3.client("s3")


@pytest.fixture
def bucket(moto_s3: Any) -> str:
    moto_s3.create_bucket(Bucket="cli-test")
    return "cli-test"


def status_json(
    identity: RunIdentity,
    state: TaskState,
    exit_code: int,
    seconds: float = 65.5,
    *,
    usage: Usage | None = None,
    result_keys: dict[str, str] | None = None,
) -> str:
    ended = f"2025-01-01T00:{int(seconds // 60):02d}:{seconds % 60:06.3f}+00:00"
    return Status(
        state=state,
        exit_code=exit_code,
        reason=StopReason.EXIT,
        started_at="2025-01-01T00:00:00.000+00:00",
        ended_at=ended,
        execution_id=identity.execution_id,
        error=None if exit_code == 0 else f"exit code {exit_code}: boom",
        log_tail=["boom"],
        result_keys=result_keys if result_keys is not None else {"params": "p", "log": "l"},
        usage=usage,
    ).to_json()


def put_try(
    s3: Any,
    bucket: str,
    root: str,
    task: str,
    map_index: int = -1,
    try_number: int = 1,
    *,
    run_id: str = "r1",
    files: dict[str, str] | None = None,
) -> ResultLayout:
    identity = RunIdentity("d", run_id, task, map_index, try_number)
    layout = ResultLayout.for_identity(bucket, root, identity)
    for name, body in {"params.yaml": "params: {}\n", **(files or {})}.items():
        s3.put_object(Bucket=bucket, Key=layout.key(name), Body=body.encode())
    return layout


def as_json(text: str) -> Any:
    return json.loads(text)


def with_params_yaml(s3: Any, bucket: str, prefix: str) -> Any:
    """``s3`` with ``bucket`` holding a try's params.yaml under ``prefix``: what a task runtime reads first."""
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=prefix + PARAMS_FILE, Body=b"params: {}\nrun: {}\n")
    return s3


def moments_in_order(status: Status) -> list[datetime]:
    """Every moment the runtime saw, with status.json's own, in the order they must have happened."""
    assert status.usage is not None, "status.json has no usage record"
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
    assert all(moments), moments
    parsed = [datetime.fromisoformat(m or "") for m in moments]
    assert parsed == sorted(parsed), moments
    return parsed


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``airlaunch *args`` in this process: its exit code, what it printed and what it printed as errors."""
    from airlaunch.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    """``airlaunch *args --json``, which must succeed: what it printed, parsed."""
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)
