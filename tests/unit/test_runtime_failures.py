"""The task runtime says in words why a task's command failed: its own exit, a signal, the OOM killer
(S3 from moto, the task a real process)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from airlaunch.protocol import ENV_BUCKET, ENV_PREFIX, STATUS_FILE, Resources, Status, StopReason
from airlaunch.runtime import resources
from airlaunch.runtime.entrypoint import TaskRun, parse_args
from airlaunch.runtime.settings import RuntimeSettings
from tests.unit.conftest import with_params_yaml

BUCKET = "runtime-failures"
PREFIX = "runs/d/r/t/-1/1/"
KILL_ITSELF = "import os, signal\nprint('about to die', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)"


@pytest.fixture
def s3(moto_s3: Any) -> Any:
    """moto's S3 (tests/unit/conftest.py) with the try's params.yaml in place."""
    return with_params_yaml(moto_s3, BUCKET, PREFIX)


def _run(s3: Any, tmp_path: Path, code: str) -> tuple[int, Status]:
    settings = RuntimeSettings(log_flush_seconds=60, log_tail_lines=5, kill_grace_seconds=1, work_dir=str(tmp_path))
    run = TaskRun(parse_args(["--", sys.executable, "-c", code]), settings, {ENV_BUCKET: BUCKET, ENV_PREFIX: PREFIX})
    exit_code = run.run()
    return exit_code, Status.from_json(s3.get_object(Bucket=BUCKET, Key=PREFIX + STATUS_FILE)["Body"].read())


def test_a_command_killed_by_a_signal_is_reported_killed_with_the_signal_named(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resources, "current_resources", lambda: Resources(oom_kills=0))
    exit_code, status = _run(s3, tmp_path, KILL_ITSELF)
    assert exit_code == 137 and status.exit_code == 137
    assert status.reason is StopReason.KILLED
    assert status.error == "the task was killed by signal 9 (SIGKILL) (exit code 137); its last line: about to die"


def test_a_command_the_oom_killer_ended_is_reported_out_of_memory_at_its_limit(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The container's memory cgroup counted an OOM kill (here faked: no cgroup limit outside a container)."""
    counted = Resources(oom_kills=1, memory_limit_bytes=256 * 2**20)
    monkeypatch.setattr(resources, "current_resources", lambda: counted)
    _, status = _run(s3, tmp_path, KILL_ITSELF)
    assert status.reason is StopReason.OOM and status.exit_code == 137
    assert status.error is not None
    assert status.error.startswith("out of memory: the kernel killed the task at its 256 MiB memory limit (exit code")


def test_an_exit_of_its_own_stays_an_exit_with_its_last_line(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resources, "current_resources", lambda: Resources(oom_kills=0))
    _, status = _run(s3, tmp_path, "import sys\nprint('giving up')\nsys.exit(4)")
    assert status.reason is StopReason.EXIT and status.exit_code == 4
    assert status.error == "exit code 4: giving up"


def test_a_stop_whose_sigterm_came_before_the_runtime_could_catch_it_still_stops_the_task(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launcher writes stop.json, then signals; a SIGTERM to a container's PID 1 before its handler exists
    is dropped by the kernel (the container then ran on until Docker's or ECS's grace ran out and killed it:
    31 s on the ECS mode). The runtime reads stop.json once before starting the command, so it never starts."""
    monkeypatch.setattr(resources, "current_resources", lambda: Resources(oom_kills=0))
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "stop.json", Body=b'{"reason": "the Airflow task was marked failed"}')
    marker = tmp_path / "the command ran"
    _, status = _run(s3, tmp_path, f"open({str(marker)!r}, 'w').close()")
    assert not marker.exists()
    assert status.reason is StopReason.STOPPED and status.state.value == "failed"
    assert "the Airflow task was marked failed" in (status.error or ""), status.error


def test_without_stop_json_a_denied_read_is_no_stop(s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run session may read its stop.json but not list the bucket: S3 answers a missing one 403, not 404."""
    from botocore.exceptions import ClientError

    monkeypatch.setattr(resources, "current_resources", lambda: Resources(oom_kills=0))
    real = s3.get_object

    def get_object(**kwargs: Any) -> Any:
        if kwargs["Key"].endswith("stop.json"):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObject")
        return real(**kwargs)

    settings = RuntimeSettings(log_flush_seconds=60, work_dir=str(tmp_path))
    run = TaskRun(
        parse_args(["--", sys.executable, "-c", "print('ran')"]), settings, {ENV_BUCKET: BUCKET, ENV_PREFIX: PREFIX}
    )
    monkeypatch.setattr(run.s3, "get_object", get_object)
    assert run.run() == 0
    status = Status.from_json(s3.get_object(Bucket=BUCKET, Key=PREFIX + STATUS_FILE)["Body"].read())
    assert status.state.value == "succeeded" and status.reason is StopReason.EXIT
