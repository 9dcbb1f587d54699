"""The usage record in status.json: optional, versioned, tolerant of what it does not know."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airlaunch.protocol import (
    ECS_CLOCK,
    EcsTimes,
    InvalidRequest,
    RequestedSize,
    Resources,
    RuntimePhases,
    Status,
    StopReason,
    TaskState,
    Usage,
)

USAGE = Usage(
    phases=RuntimePhases(
        runtime_started_at="2026-01-01T00:00:00.100+00:00",
        params_read_at="2026-01-01T00:00:00.900+00:00",
        user_code_started_at="2026-01-01T00:00:00.950+00:00",
        user_code_ended_at="2026-01-01T00:00:05.950+00:00",
        results_uploaded_at="2026-01-01T00:00:06.100+00:00",
    ),
    resources=Resources(cgroup="v2", cpu_seconds=4.5, memory_peak_bytes=123, memory_limit_hit=False, oom_kills=0),
    ecs=EcsTimes(created_at="2026-01-01T00:00:00.000+00:00", stopped_at="2026-01-01T00:00:09.000+00:00"),
    requested=RequestedSize(cpu=0.5, memory_mib=1024, region="eu-west-1", capacity_provider="FARGATE_SPOT"),
)


def status(**extra: Any) -> Status:
    return Status(
        state=TaskState.SUCCEEDED,
        exit_code=0,
        reason=StopReason.EXIT,
        started_at="2026-01-01T00:00:00.500+00:00",
        ended_at="2026-01-01T00:00:06.200+00:00",
        execution_id="d/r/t/-1/1",
        **extra,
    )


def test_status_with_usage_round_trips_through_json() -> None:
    written = status(usage=USAGE)
    data = json.loads(written.to_json())
    assert data["usage"]["version"] == 1 and data["usage"]["ecs"]["clock"] == ECS_CLOCK
    assert data["usage"]["resources"]["cpu_seconds"] == 4.5
    assert Status.from_json(written.to_json()) == written


def test_status_without_usage_is_written_and_read_as_before() -> None:
    old = status()
    assert "usage" not in old.to_dict()
    assert Status.from_dict(old.to_dict()).usage is None


def test_usage_ignores_fields_of_a_newer_writer() -> None:
    data = USAGE.to_dict()
    data["resources"]["gpu_seconds"] = 3.0
    data["phases"]["image_pulled_at"] = "2026-01-01T00:00:00+00:00"
    data["future_section"] = {"x": 1}
    assert Usage.from_dict(data) == USAGE


def test_a_wrong_type_names_its_field() -> None:
    data = USAGE.to_dict()
    data["resources"]["cpu_seconds"] = "4.5"
    with pytest.raises(InvalidRequest, match=r"usage\.resources\.cpu_seconds: expected int or float, got str"):
        Usage.from_dict(data)
    data = USAGE.to_dict()
    data["resources"]["memory_limit_hit"] = 1
    with pytest.raises(InvalidRequest, match=r"usage\.resources\.memory_limit_hit: expected bool"):
        Usage.from_dict(data)
    data = USAGE.to_dict()
    data["resources"]["oom_kills"] = True
    with pytest.raises(InvalidRequest, match=r"usage\.resources\.oom_kills: expected int, got a boolean"):
        Usage.from_dict(data)


def test_an_unreadable_usage_never_makes_the_status_unreadable() -> None:
    data = status().to_dict()
    data["usage"] = {"resources": {"cpu_seconds": "lots"}}
    parsed = Status.from_dict(data)
    assert parsed.state is TaskState.SUCCEEDED and parsed.usage is None


def test_empty_usage_has_every_measurement_unknown() -> None:
    empty = Usage.from_dict({})
    assert empty.resources.cpu_seconds is None and empty.ecs is None and empty.requested is None
    assert empty.phases.clock == "container wall clock (UTC)"
