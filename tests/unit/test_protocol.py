"""The protocol's validation: every refusal names its field."""

from __future__ import annotations

import json

import pytest

from airlaunch.protocol import (
    Handle,
    InvalidRequest,
    LaunchRequest,
    ResultLayout,
    RunIdentity,
    Status,
    StopReason,
    StopRequest,
    TaskState,
    parse_try_key,
    run_prefix,
)

IDENTITY = {"dag_id": "reference", "run_id": "manual__2026-11-24T02:10:00.123+00:00", "task_id": "group.task"}


def test_layout_is_deterministic_and_per_try() -> None:
    identity = RunIdentity(**IDENTITY, map_index=3, try_number=2)
    layout = ResultLayout.for_identity("bucket", "runs", identity)
    assert layout.prefix == "runs/reference/manual__2026-11-24T02:10:00.123+00:00/group.task/3/2/"
    assert layout.status_key == layout.prefix + "status.json"
    assert layout.uri("log.txt") == f"s3://bucket/{layout.prefix}log.txt"
    assert ResultLayout.for_identity("bucket", "runs", identity) == layout
    assert ResultLayout.for_identity("bucket", "", identity).prefix.startswith("reference/")
    assert run_prefix("runs/", "reference", "r1") == "runs/reference/r1/"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dag_id", "a/b"),
        ("run_id", ".."),
        ("run_id", "x..y"),
        ("task_id", "../up"),
        ("task_id", ""),
        ("dag_id", ".hidden"),
        ("run_id", "with space"),
        ("run_id", "x" * 251),
        ("task_id", 12),
    ],
)
def test_unsafe_ids_are_refused(field: str, value: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        RunIdentity.from_dict({**IDENTITY, field: value})
    assert info.value.field == f"identity.{field}"


def test_request_round_trips() -> None:
    request = LaunchRequest.from_dict(
        {"task": "task_two", "identity": IDENTITY, "params": {"a": [1, {"b": None}]}, "overrides": {"cpu": 1}}
    )
    assert LaunchRequest.from_dict(request.to_dict()) == request


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"identity": IDENTITY}, "task"),
        ({"task": "Task One", "identity": IDENTITY}, "task"),
        ({"task": "t"}, "identity"),
        ({"task": "t", "identity": {"dag_id": "d", "run_id": "r"}}, "identity.task_id"),
        ({"task": "t", "identity": {**IDENTITY, "map_index": -2}}, "identity.map_index"),
        ({"task": "t", "identity": {**IDENTITY, "try_number": True}}, "identity.try_number"),
        ({"task": "t", "identity": {**IDENTITY, "try_number": 0}}, "identity.try_number"),  # Airflow 2's numbering
        ({"task": "t", "identity": IDENTITY, "params": {"x": object()}}, "params"),
        ({"task": "t", "identity": IDENTITY, "params": {"x": float("inf")}}, "params"),
        ({"task": "t", "identity": IDENTITY, "params": {1: "x"}}, "params"),
        ({"task": "t", "identity": IDENTITY, "overrides": {"env": {"1X": "v"}}}, "overrides.env.1X"),
        ({"task": "t", "identity": IDENTITY, "overrides": {"env": {"X": 1}}}, "overrides.env.X"),
        ({"task": "t", "identity": IDENTITY, "overrides": {"cpu": 0}}, "overrides.cpu"),
        ({"task": "t", "identity": IDENTITY, "overrides": {"timeout_seconds": 0}}, "overrides.timeout_seconds"),
        ({"task": "t", "identity": IDENTITY, "image": "x"}, "request"),
    ],
)
def test_malformed_requests_name_the_field(request_: dict, field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        LaunchRequest.from_dict(request_)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_status_round_trips_and_rejects_garbage() -> None:
    status = Status(
        state=TaskState.FAILED,
        exit_code=3,
        reason=StopReason.EXIT,
        started_at="2026-11-24T00:00:00.000+00:00",
        ended_at="2026-11-24T00:00:01.000+00:00",
        execution_id="d/r/t/-1/1",
        error="exit code 3",
        log_tail=["a", "b"],
        result_keys={"log": "k"},
    )
    assert Status.from_json(status.to_json()) == status
    with pytest.raises(InvalidRequest, match="status"):
        Status.from_dict({"state": "exploded"})
    assert TaskState.LOST.finished and not TaskState.RUNNING.finished


TI_A = "01a2330d-6f01-731e-b9b6-0f5b7b1e8ef4"
TI_B = "01a23311-7a60-7689-879d-622cac4095b3"


def test_every_task_instance_try_has_its_own_prefix_and_container_but_shares_the_slot() -> None:
    first = RunIdentity("d", "manual__1", "t", -1, 1, TI_A)
    recreated = RunIdentity("d", "manual__1", "t", -1, 1, TI_B)  # the run deleted and triggered again
    layout = ResultLayout.for_identity("b", "runs", first)
    assert layout.prefix == f"runs/d/manual__1/t/-1/1-{TI_A}/"
    assert ResultLayout.for_identity("b", "runs", recreated).prefix != layout.prefix
    assert first.digest != recreated.digest and first.slot == recreated.slot
    assert first.execution_id == f"d/manual__1/t/-1/1-{TI_A}"
    assert parse_try_key(f"1-{TI_A}") == (1, TI_A) and parse_try_key("3") == (3, "")
    assert layout.log_part_key(7) == layout.prefix + "log/000007" and layout.stop_key == layout.prefix + "stop.json"


@pytest.mark.parametrize("bad", ["x", "01A2330D-6F01-731E-B9B6-0F5B7B1E8EF4", "../" + TI_A, TI_A + "/"])
def test_a_ti_id_that_is_not_a_uuid_is_refused(bad: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        RunIdentity("d", "r", "t", -1, 1, bad)
    assert refused.value.field == "identity.ti_id"
    with pytest.raises(ValueError):
        parse_try_key(f"1-{bad}")


def test_a_status_the_launcher_wrote_says_so_and_old_ones_still_read() -> None:
    status = Status(
        state=TaskState.FAILED, exit_code=137, reason=StopReason.OOM, started_at="a", ended_at="b",
        execution_id="e", error="out of memory", written_by="launcher",
    )  # fmt: skip
    again = Status.from_json(status.to_json())
    assert again.written_by == "launcher" and again.reason is StopReason.OOM
    legacy = {"state": "succeeded", "exit_code": 0, "reason": "exit", "started_at": "a", "ended_at": "b"}
    assert Status.from_dict(legacy).written_by == "runtime"
    with pytest.raises(InvalidRequest, match="not JSON"):
        Status.from_json(b"{half")
    assert StopRequest.from_json(StopRequest("superseded").to_json()).reason == "superseded"


def test_the_result_cache_fields_are_optional_on_the_wire() -> None:
    """Payloads from before the cache parse, and nothing new is written unless set."""
    old_request = {"task": "task_one", "identity": IDENTITY, "params": {"x": 1}, "overrides": {}}
    request = LaunchRequest.from_dict(old_request)
    assert request.cache is None and set(request.to_dict()) == set(old_request)
    assert LaunchRequest.from_dict({**old_request, "cache": False}).to_dict()["cache"] is False
    with pytest.raises(InvalidRequest) as refused:
        LaunchRequest.from_dict({**old_request, "cache": "no"})
    assert refused.value.field == "cache"

    old_handle = {"backend": "docker", "task_ref": "c", "bucket": "b", "prefix": "runs/d/r/t/-1/1/",
                  "launched": True, "timings": {}}  # fmt: skip
    assert Handle.from_dict(old_handle).cached_from is None and Handle.from_dict(old_handle).to_dict() == old_handle
    served = Handle.from_dict({**old_handle, "task_ref": "", "cached_from": "runs/d/r0/t/-1/1/"})
    assert served.to_dict()["cached_from"] == "runs/d/r0/t/-1/1/"
    with pytest.raises(InvalidRequest) as refused:
        Handle.from_dict({**old_handle, "cached_from": "../elsewhere/"})
    assert refused.value.field == "handle.cached_from"

    status = Status(TaskState.SUCCEEDED, 0, StopReason.EXIT, "2026-01-01T00:00:00", "2026-01-01T00:00:01", "e")
    assert "cached_from" not in status.to_dict()
    cached = Status.from_json(json.dumps({**status.to_dict(), "cached_from": "runs/d/r0/t/-1/1/"}))
    assert cached.cached_from == "runs/d/r0/t/-1/1/" and Status.from_dict(status.to_dict()).cached_from is None
