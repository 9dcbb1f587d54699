"""The launcher's handler: each call parsed by the protocol, dispatched from its table, answered in the wire's
JSON; refusals name the field, and a launch the platform may accept later stays retryable."""

from __future__ import annotations

from typing import Any

import pytest

from airlaunch.catalog import CatalogError
from airlaunch.launcher import handler
from airlaunch.launcher.backends.base import LaunchError, LiveTask
from airlaunch.launcher.settings import LauncherSettings
from airlaunch.protocol import (
    Action,
    Description,
    Handle,
    LaunchRequest,
    ResultLayout,
    RunIdentity,
    StopCall,
    TaskState,
)

IDENTITY = RunIdentity("dag", "run", "task", -1, 1, "01a2330d-6f01-731e-b9b6-0f5b7b1e8ef4")
HANDLE = Handle("docker", "c0ffee", "bucket", "runs/dag/run/task/-1/1/", True)


class Launcher:
    """The service's surface the handler uses, recording what it was asked."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.settings = LauncherSettings(backend="docker", bucket="bucket", key_prefix="runs")
        self.failure = failure
        self.asked: list[tuple[Any, ...]] = []
        self.backend = self
        self.catalog = self
        self.name = "docker"

    @property
    def tasks(self) -> dict[str, Any]:
        if self.failure is not None:
            raise self.failure
        return {"task_one": None, "diagnostic": None}

    def layout_of(self, identity: RunIdentity) -> ResultLayout:
        return ResultLayout.for_identity("bucket", "runs", identity)

    def launch(self, request: LaunchRequest) -> Handle:
        self.asked.append(("launch", request))
        if self.failure is not None:
            raise self.failure
        return HANDLE

    def stop(self, layout: ResultLayout, task_ref: str, reason: str, identity: RunIdentity | None) -> Description:
        self.asked.append(("stop", layout, task_ref, reason, identity))
        return Description(TaskState.FAILED, detail="stopped")

    def live_tasks(self) -> list[LiveTask]:
        return [LiveTask("c0ffee", IDENTITY.digest, HANDLE.layout, started_at=1767225600.5, timeout_seconds=60)]

    def reap(self) -> list[str]:
        return ["c0ffee"]


@pytest.fixture
def launcher(monkeypatch: pytest.MonkeyPatch) -> Launcher:
    fake = Launcher()
    monkeypatch.setattr(handler, "get_launcher", lambda: fake)
    return fake


def test_every_action_has_its_entry_in_the_table() -> None:
    assert set(handler.ACTIONS) == set(Action)


def test_unknown_actions_and_non_objects_are_refused_naming_the_field(launcher: Launcher) -> None:
    assert handler.handler({"action": "explode"}) == {
        "ok": False,
        "error": {
            "type": "InvalidRequest",
            "message": "unknown action 'explode'; expected launch, describe, stop, list, reap or ping",
            "field": "action",
            "retryable": False,
        },
    }
    assert handler.handler(["launch"])["error"]["field"] == "event"
    stray = {**IDENTITY.to_dict(), "x": 1}
    refused = handler.handler({"action": "launch", "request": {"task": "t", "identity": stray}})
    assert refused["error"]["field"] == "identity" and "unknown field(s) ['x']" in refused["error"]["message"]
    assert launcher.asked == []


def test_stop_by_identity_stops_the_try_at_its_own_prefix(launcher: Launcher) -> None:
    answer = handler.handler(StopCall("orphan sweep", identity=IDENTITY).to_event())
    assert answer == {"ok": True, "description": {"state": "failed", "status": None, "detail": "stopped"}}
    assert launcher.asked == [("stop", launcher.layout_of(IDENTITY), "", "orphan sweep", IDENTITY)]
    handler.handler({"action": "stop", "handle": HANDLE.to_dict()})  # an older caller's stop: no reason
    assert launcher.asked[-1] == ("stop", HANDLE.layout, "c0ffee", "stop requested", None)


def test_list_reap_and_ping_answer_in_the_wires_json(launcher: Launcher) -> None:
    assert handler.handler({"action": "list"}) == {
        "ok": True,
        "tasks": [{"task_ref": "c0ffee", "bucket": "bucket", "prefix": HANDLE.prefix, "started_at": 1767225600.5}],
    }
    assert handler.handler({"action": "reap"}) == {"ok": True, "reaped": ["c0ffee"]}  # Docker: no failed events
    assert handler.handler({"action": "ping"}) == {"ok": True, "backend": "docker", "tasks": ["diagnostic", "task_one"]}
    launcher.failure = CatalogError("catalog.yaml: not YAML")
    assert handler.handler({"action": "ping"}) == {
        "ok": True, "backend": "docker", "tasks": [], "catalog_error": "catalog.yaml: not YAML"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (CatalogError("'greeter' is not in the task catalog"), ("CatalogError", "task", False)),
        (LaunchError("RunTask throttled", retryable=True), ("LaunchError", None, True)),
        (LaunchError("no such image"), ("LaunchError", None, False)),
    ],
)
def test_a_failed_launch_is_refused_and_stays_retryable_when_it_may_pass(
    launcher: Launcher, failure: Exception, error: tuple[str, str | None, bool]
) -> None:
    launcher.failure = failure
    request = LaunchRequest("diagnostic", IDENTITY)
    answer = handler.handler({"action": "launch", "request": request.to_dict()})
    refusal = answer["error"]
    assert not answer["ok"] and (refusal["type"], refusal["field"], refusal["retryable"]) == error
    assert refusal["message"] == str(failure)
