"""The S3 requests the launcher makes for one try on Docker (issue 22: S3 requests a try at most twice the floor):
its launch, then its container's end seen by the watcher (``Launcher.ended``), on the fake platform and moto."""

from __future__ import annotations

from typing import Any

from airlaunch.launcher.service import Launcher
from airlaunch.protocol import StopReason, TaskState
from tests.unit.fake_backend import FakeBackend
from tests.unit.test_launcher_logic import _launch, _status, _try, launcher, platform, s3

__all__ = ["launcher", "platform", "s3"]  # the fixtures of tests/unit/test_launcher_logic.py


class CountingS3:
    """The launcher's S3 client, recording (operation, file name) of each call made through it."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        call = getattr(self.s3, name)

        def counted(**request: Any) -> Any:
            self.calls.append((name, str(request.get("Key", "")).rsplit("/", 1)[-1]))
            return call(**request)

        return counted


def test_a_try_that_succeeded_costs_the_launcher_no_read_of_its_status_json_at_its_end(
    launcher: Launcher, platform: FakeBackend, s3: Any
) -> None:
    """The runtime leaves with 0 only once its status.json is stored: the watcher's record of the end reads
    nothing. Launch: is it already finished, then params.yaml: two requests in all (the runtime looks for a
    stop before its command starts)."""
    counted = launcher.files.s3 = CountingS3(s3)
    handle = _launch(launcher, _try(1))
    platform.finish(handle.task_ref, 0)
    [task] = [c.as_live_task() for c in platform.of(_try(1))]

    assert launcher.ended(task) is None

    assert counted.calls == [("get_object", "status.json"), ("put_object", "params.yaml")]
    assert _status(s3, handle.layout).written_by == "runtime"
    assert platform.of(_try(1)) == []  # forgotten all the same


def test_a_container_that_exited_0_without_status_json_still_gets_one_when_the_trigger_asks(
    launcher: Launcher, platform: FakeBackend, s3: Any
) -> None:
    """An image whose entrypoint is not the runtime exits 0 and writes nothing: the trigger's periodic
    describe finds no status.json and no container, and the launcher records the end then."""
    handle = _launch(launcher, _try(1))
    platform.exit(handle.task_ref, 0)
    [task] = [c.as_live_task() for c in platform.of(_try(1))]
    assert launcher.ended(task) is None

    described = launcher.describe(handle)

    assert described.state is TaskState.FAILED and described.status is not None
    assert (described.status.written_by, described.status.reason) == ("launcher", StopReason.LOST)


def test_a_failed_try_is_still_read_and_recorded_at_its_end(launcher: Launcher, platform: FakeBackend, s3: Any) -> None:
    counted = launcher.files.s3 = CountingS3(s3)
    handle = _launch(launcher, _try(1))
    platform.kill(handle.task_ref)
    [task] = [c.as_live_task() for c in platform.of(_try(1))]

    recorded = launcher.ended(task)

    assert recorded is not None and recorded.written_by == "launcher" and recorded.exit_code == 137
    assert ("get_object", "status.json") in counted.calls[2:]
