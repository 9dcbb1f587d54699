"""The launcher's call envelope: every call and reply round-trips, its JSON is the wire's as launchers and
Airflow have always spoken it, older shapes still parse, and anything malformed is refused naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airlaunch.protocol import (
    CallFailed,
    DescribeCall,
    DescribeReply,
    Description,
    ErrorKind,
    EventReply,
    Handle,
    InvalidRequest,
    LaunchCall,
    LaunchReply,
    LaunchRequest,
    ListCall,
    ListedTask,
    ListReply,
    Overrides,
    PingCall,
    PingReply,
    ReapCall,
    ReapReply,
    Refusal,
    RunIdentity,
    Status,
    StopCall,
    StopReason,
    StopReply,
    TaskState,
    parse_call,
    parse_reply,
    read_reply,
    refusal_of,
)

TI = "01a2330d-6f01-731e-b9b6-0f5b7b1e8ef4"
IDENTITY = RunIdentity("dag", "manual__2026-01-01T00:00:00+00:00", "task", 3, 2, TI)
HANDLE = Handle("ecs", "arn:aws:ecs:us-east-1:123456789012:task/c/0123", "bucket", "runs/dag/r/task/3/2-x/", True,
                {"received_at": "2026-01-01T00:00:00.000+00:00"})  # fmt: skip
STATUS = Status(
    TaskState.FAILED, 137, StopReason.STOPPED, "t0", "t1", "dag/r/task/3/2", error="stopped", written_by="launcher"
)
REQUEST = LaunchRequest("diagnostic", IDENTITY, {"action": "echo"}, Overrides(cpu=0.5))

CALLS = [
    LaunchCall(REQUEST),
    DescribeCall(HANDLE),
    StopCall("cancelled", handle=HANDLE),
    StopCall("orphan sweep", identity=IDENTITY),
    StopCall("killed during its launch", handle=HANDLE, identity=IDENTITY),
    ListCall(),
    ReapCall(),
    PingCall(),
]
REPLIES: list[tuple[Any, Any]] = [
    (LaunchCall(REQUEST), LaunchReply(HANDLE)),
    (DescribeCall(HANDLE), DescribeReply(Description(TaskState.RUNNING, detail="ECS task RUNNING"))),
    (StopCall("x", handle=HANDLE), StopReply(Description(TaskState.FAILED, STATUS))),
    (ListCall(), ListReply((ListedTask("c1", "bucket", "runs/a/", 1767225600.5), ListedTask("c2", "", "", 17)))),
    (ReapCall(), ReapReply(("c1",), {"handled": 1, "dropped": 0, "failed_again": 0})),
    (ReapCall(), ReapReply(())),
    (PingCall(), PingReply("docker", ("diagnostic", "task_one"))),
    (PingCall(), PingReply("ecs", (), catalog_error="catalog.yaml: no tasks")),
]


@pytest.mark.parametrize("call", CALLS, ids=lambda call: f"{call.action}")
def test_every_call_round_trips_through_its_json(call: Any) -> None:
    assert parse_call(json.loads(call.to_payload())) == call


@pytest.mark.parametrize(("call", "reply"), REPLIES, ids=lambda item: type(item).__name__)
def test_every_reply_round_trips_through_its_json(call: Any, reply: Any) -> None:
    assert read_reply(call, json.dumps(reply.to_dict()).encode()) == reply
    assert type(reply).from_dict(reply.to_dict()) == reply


def test_the_json_is_the_wire_as_it_always_was() -> None:
    """What a deployed launcher and an older Airflow send each other, field for field."""
    assert LaunchCall(REQUEST).to_event() == {"action": "launch", "request": REQUEST.to_dict()}
    assert DescribeCall(HANDLE).to_event() == {"action": "describe", "handle": HANDLE.to_dict()}
    assert StopCall("why", HANDLE, IDENTITY).to_event() == {
        "action": "stop", "reason": "why", "handle": HANDLE.to_dict(), "identity": IDENTITY.to_dict()
    }  # fmt: skip
    assert StopCall("why", identity=IDENTITY).to_event() == {"action": "stop", "reason": "why",
                                                             "identity": IDENTITY.to_dict()}  # fmt: skip
    assert [c.to_event() for c in (ListCall(), ReapCall(), PingCall())] == [
        {"action": "list"}, {"action": "reap"}, {"action": "ping"}
    ]  # fmt: skip
    assert LaunchReply(HANDLE).to_dict() == {"ok": True, "handle": HANDLE.to_dict()}
    assert StopReply(Description(TaskState.FAILED, STATUS)).to_dict() == {
        "ok": True, "description": {"state": "failed", "status": STATUS.to_dict(), "detail": None}
    }  # fmt: skip
    assert ListReply((ListedTask("c", "b", "p/", None),)).to_dict() == {
        "ok": True, "tasks": [{"task_ref": "c", "bucket": "b", "prefix": "p/", "started_at": None}]
    }  # fmt: skip
    assert ReapReply(("c",)).to_dict() == {"ok": True, "reaped": ["c"]}
    assert PingReply("ecs", (), "bad").to_dict() == {"ok": True, "backend": "ecs", "tasks": [], "catalog_error": "bad"}
    assert Refusal(ErrorKind.CATALOG_ERROR, "no such task", "task").to_dict() == {
        "ok": False, "error": {"type": "CatalogError", "message": "no such task", "field": "task", "retryable": False}
    }  # fmt: skip
    assert EventReply(recorded="by the launcher", state="failed", error="OOM").to_dict() == {
        "ok": True, "recorded": "by the launcher", "state": "failed", "error": "OOM"
    }  # fmt: skip


# As Airflow and the launcher sent them before the envelope had types (JSON exactly as on the wire).
WIRE = [
    (
        '{"action": "launch", "request": {"task": "diagnostic", "identity": {"dag_id": "d", "run_id": "r", '
        f'"task_id": "t", "map_index": -1, "try_number": 1, "ti_id": "{TI}"}}, "params": {{"n": 1}}, '
        '"overrides": {}}}',
        '{"ok": true, "handle": {"backend": "docker", "task_ref": "c0ffee", "bucket": "b", '
        f'"prefix": "runs/d/r/t/-1/1-{TI}/", "launched": true, '
        '"timings": {"received_at": "2026-01-01T00:00:00.000+00:00"}}}',
    ),
    (
        '{"action": "stop", "reason": "orphan sweep: its Airflow task instance is failed", "identity": '
        f'{{"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": 2, "try_number": 3, "ti_id": "{TI}"}}}}',
        '{"ok": true, "description": {"state": "failed", "status": null, "detail": null}}',
    ),
    (
        '{"action": "list"}',
        '{"ok": true, "tasks": [{"task_ref": "c", "bucket": "b", "prefix": "p/", "started_at": 1767225600.5}]}',
    ),
    ('{"action": "reap"}', '{"ok": true, "reaped": [], "failed_events": {"queue": "none"}}'),
    ('{"action": "ping"}', '{"ok": true, "backend": "docker", "tasks": ["diagnostic"]}'),
]


@pytest.mark.parametrize(("event", "answer"), WIRE, ids=lambda text: text[:20])
def test_the_wire_of_before_parses_and_is_written_back_the_same(event: str, answer: str) -> None:
    call = parse_call(json.loads(event))
    assert call.to_event() == json.loads(event)
    assert read_reply(call, answer.encode()).to_dict() == json.loads(answer)


def test_older_shapes_still_parse() -> None:
    """A stop without a reason (or an empty one), a handle without timings, a refusal without field or
    retryable (launchers before they were added), a reap without failed_events, a ping without catalog_error."""
    bare = {k: v for k, v in HANDLE.to_dict().items() if k != "timings"}
    stop = parse_call({"action": "stop", "handle": bare})
    assert stop == StopCall("stop requested", handle=Handle(**bare))
    assert parse_call({"action": "stop", "identity": IDENTITY.to_dict(), "reason": None}).reason == "stop requested"
    with pytest.raises(CallFailed) as refused:
        parse_reply(PingCall(), {"ok": False, "error": {"type": "LaunchError", "message": "no capacity"}})
    assert refused.value.refusal == Refusal("LaunchError", "no capacity") and not refused.value.retryable
    assert parse_reply(ReapCall(), {"ok": True, "reaped": []}) == ReapReply(())
    assert parse_reply(PingCall(), {"ok": True, "backend": "docker", "tasks": []}).catalog_error is None


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (["launch"], "event"),
        ({"action": "launch", "request": REQUEST.to_dict(), "priority": 1}, "event"),
        ({"action": "launch"}, "request"),
        ({"action": "launch", "request": {**REQUEST.to_dict(), "image": "evil"}}, "request"),
        (
            {"action": "launch", "request": {**REQUEST.to_dict(), "identity": {**IDENTITY.to_dict(), "try_number": 0}}},
            "identity.try_number",
        ),
        ({"action": "describe"}, "handle"),
        ({"action": "describe", "handle": {**HANDLE.to_dict(), "prefix": "../other/"}}, "handle.prefix"),
        ({"action": "describe", "handle": {**HANDLE.to_dict(), "launched": "yes"}}, "handle.launched"),
        ({"action": "stop", "reason": "why"}, "handle"),
        ({"action": "stop", "identity": IDENTITY.to_dict(), "reason": 5}, "reason"),
        ({"action": "stop", "identity": {"dag_id": "d", "run_id": "r"}}, "identity.task_id"),
        ({"action": "list", "all": True}, "event"),
    ],
)
def test_a_malformed_call_is_refused_naming_the_field(event: Any, field: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_call(event)
    assert refused.value.field == field, refused.value


@pytest.mark.parametrize("action", ["explode", None, "LAUNCH", ["launch"], "task_stopped"])
def test_unknown_actions_are_refused(action: Any) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_call({"action": action} if action is not None else {})
    assert refused.value.field == "action"
    assert refused.value.message == f"unknown action {action!r}; expected launch, describe, stop, list, reap or ping"


@pytest.mark.parametrize(
    ("call", "reply", "field"),
    [
        (PingCall(), None, "reply"),
        (PingCall(), {"backend": "docker", "tasks": []}, "reply.ok"),
        (PingCall(), {"ok": "true", "backend": "docker", "tasks": []}, "reply.ok"),
        (PingCall(), {"ok": True, "backend": "docker", "tasks": [], "extra": 1}, "reply"),
        (PingCall(), {"ok": True, "backend": "docker", "tasks": "diagnostic"}, "reply.tasks"),
        (PingCall(), {"ok": True, "backend": "docker", "tasks": [1]}, "reply.tasks[0]"),
        (PingCall(), {"ok": True, "tasks": []}, "reply.backend"),
        (LaunchCall(REQUEST), {"ok": True}, "reply.handle"),
        (LaunchCall(REQUEST), {"ok": True, "handle": {**HANDLE.to_dict(), "bucket": None}}, "reply.handle.bucket"),
        (DescribeCall(HANDLE), {"ok": True, "description": {"state": "exploded"}}, "reply.description.state"),
        (
            DescribeCall(HANDLE),
            {"ok": True, "description": {"state": "failed", "status": {"state": "failed"}}},
            "reply.description.status",
        ),
        (ListCall(), {"ok": True, "tasks": [{"task_ref": "c", "bucket": "b"}]}, "reply.tasks[0].prefix"),
        (
            ListCall(),
            {"ok": True, "tasks": [{"task_ref": "c", "bucket": "b", "prefix": "p/", "started_at": "now"}]},
            "reply.tasks[0].started_at",
        ),
        (ReapCall(), {"ok": True, "reaped": [], "failed_events": []}, "reply.failed_events"),
        (ReapCall(), {"ok": False, "error": "no capacity"}, "reply.error"),
        (
            ReapCall(),
            {"ok": False, "error": {"type": "LaunchError", "message": "x", "retryable": "yes"}},
            "reply.error.retryable",
        ),
        (ReapCall(), {"ok": False, "error": {"message": "x"}}, "reply.error.type"),
    ],
)
def test_a_malformed_reply_is_refused_naming_the_field(call: Any, reply: Any, field: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_reply(call, reply)
    assert refused.value.field == field, refused.value


def test_refusals_keep_their_words_and_stay_retryable_when_the_launcher_says_so() -> None:
    retryable = Refusal(ErrorKind.LAUNCH_ERROR, "RunTask throttled", retryable=True)
    with pytest.raises(CallFailed, match="refused the request: LaunchError: RunTask throttled") as failed:
        read_reply(LaunchCall(REQUEST), json.dumps(retryable.to_dict()).encode())
    assert failed.value.retryable and failed.value.refusal == retryable
    invalid = Refusal.invalid(InvalidRequest("identity.ti_id", "is not a task-instance id"))
    with pytest.raises(CallFailed, match=r"InvalidRequest \[identity.ti_id\]: is not") as failed:
        parse_reply(LaunchCall(REQUEST), invalid.to_dict())
    assert not failed.value.retryable
    assert refusal_of(invalid.to_dict()) == invalid and refusal_of(ReapReply(()).to_dict()) is None


def test_lambdas_own_error_shape_is_a_retryable_failure() -> None:
    timed_out = b'{"errorMessage": "Task timed out after 60.00 seconds", "errorType": "Sandbox.Timedout"}'
    with pytest.raises(CallFailed, match=r"the launcher Lambda failed \(Unhandled\): Task timed out") as failed:
        read_reply(ReapCall(), timed_out, "Unhandled")
    assert failed.value.retryable and failed.value.refusal is None
    with pytest.raises(InvalidRequest, match="non-JSON"):
        read_reply(ReapCall(), b"<html>502</html>")


def test_event_replies_round_trip() -> None:
    for reply in (EventReply(ignored="not ours"), EventReply(started_again="arn:t2"),
                  EventReply(recorded="by its runtime", state="succeeded")):  # fmt: skip
        assert EventReply.from_dict(reply.to_dict()) == reply
    with pytest.raises(InvalidRequest) as refused:
        EventReply.from_dict({"ok": True, "recorded": 1})
    assert refused.value.field == "reply.recorded"
