"""What a try used and when, for ``airlaunch report``: phases, resources, cost inputs, and timings.json.

Only the task runtime (which measures), the launcher (which adds what only it sees) and the report
(which reads) use these; the rest of the protocol needs none of it. Guarantees: every timestamp
names its clock, so no reader subtracts across two clocks without knowing it; readers ignore
fields they do not know (a newer writer must not break an older reader) and refuse a known
field of the wrong type naming it; ``version`` changes when a meaning does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from airlaunch.protocol.checks import parse_json, require, typed_record

# status.json carries these as the optional "usage" record.
USAGE_VERSION = 1
RUNTIME_CLOCK = "container wall clock (UTC)"
ECS_CLOCK = "ECS control plane (UTC)"


@dataclass(frozen=True)
class RuntimePhases:
    """The moments the task runtime saw, on the container's wall clock (UTC, ISO 8601).

    ``runtime_started_at`` is when the container's first process started (from /proc), so the
    span up to ``params_read_at`` includes Python's start-up and the runtime's imports.
    """

    runtime_started_at: str | None = None
    params_read_at: str | None = None
    user_code_started_at: str | None = None
    user_code_ended_at: str | None = None
    results_uploaded_at: str | None = None
    clock: str = RUNTIME_CLOCK

    @classmethod
    def from_dict(cls, data: Any) -> RuntimePhases:
        return typed_record(cls, data, "usage.phases")


@dataclass(frozen=True)
class Resources:
    """What the container used, read by the runtime from its cgroup at the end (None: not measurable)."""

    cgroup: str = ""  # "v2", "v1", or "" where no cgroup files could be read
    cpu_seconds: float | None = None
    memory_peak_bytes: int | None = None
    memory_limit_bytes: int | None = None  # None: no limit
    memory_limit_hit: bool | None = None  # usage reached the limit (reclaim or OOM); None: unknown
    oom_kills: int | None = None  # processes the kernel killed for memory
    disk_read_bytes: int | None = None
    disk_write_bytes: int | None = None
    net_rx_bytes: int | None = None  # None where the container shares the host's network
    net_tx_bytes: int | None = None
    cpu_limit: float | None = None  # vCPU allowed by the cgroup's quota; None: no quota
    architecture: str = ""  # "x86_64" or "arm64", as Fargate prices it

    @classmethod
    def from_dict(cls, data: Any) -> Resources:
        return typed_record(cls, data, "usage.resources")


@dataclass(frozen=True)
class EcsTimes:
    """ECS's own timestamps of the task (DescribeTasks or the task state change event), on ECS's clock."""

    created_at: str | None = None
    pull_started_at: str | None = None
    pull_stopped_at: str | None = None
    started_at: str | None = None
    stopping_at: str | None = None
    stopped_at: str | None = None
    clock: str = ECS_CLOCK

    @classmethod
    def from_dict(cls, data: Any) -> EcsTimes:
        return typed_record(cls, data, "usage.ecs")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


@dataclass(frozen=True)
class RequestedSize:
    """What the launcher asked for, where: the inputs of a cost estimate that the container cannot see."""

    cpu: float | None = None  # vCPU, before Fargate's rounding
    memory_mib: int | None = None
    region: str = ""
    capacity_provider: str = ""  # "FARGATE", "FARGATE_SPOT"; empty for Docker
    backend: str = ""  # "docker" or "ecs"

    @classmethod
    def from_dict(cls, data: Any) -> RequestedSize:
        return typed_record(cls, data, "usage.requested")


@dataclass(frozen=True)
class Usage:
    """Timings, resources and cost inputs of one try; the runtime fills phases and resources."""

    phases: RuntimePhases = field(default_factory=RuntimePhases)
    resources: Resources = field(default_factory=Resources)
    ecs: EcsTimes | None = None  # filled on the launcher side, when it knows them
    requested: RequestedSize | None = None
    version: int = USAGE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Usage:
        require(data, "usage", dict)
        version = data.get("version", USAGE_VERSION)
        require(version, "usage.version", int)
        return cls(
            phases=RuntimePhases.from_dict(data.get("phases") or {}),
            resources=Resources.from_dict(data.get("resources") or {}),
            ecs=EcsTimes.from_dict(data["ecs"]) if data.get("ecs") else None,
            requested=RequestedSize.from_dict(data["requested"]) if data.get("requested") else None,
            version=version,
        )


AIRFLOW_CLOCK = "Airflow's wall clock (UTC): the triggerer's, or the worker's for a launch from a worker"
LAUNCHER_CLOCK = "the launcher's wall clock (UTC); container times are the container platform's"


@dataclass(frozen=True)
class AirflowMoments:
    """What Airflow's side saw of one try: from the task instance's start to its end."""

    task_started_at: str | None = None  # the task instance's start_date (the scheduler's clock)
    launch_requested_at: str | None = None  # the launcher was invoked
    completion_seen_at: str | None = None  # the trigger read status.json
    task_ended_at: str | None = None  # the trigger ended the task (success) or resumed it (failure)
    clock: str = AIRFLOW_CLOCK

    @classmethod
    def from_dict(cls, data: Any) -> AirflowMoments:
        return typed_record(cls, data, "timings.airflow")


@dataclass(frozen=True)
class LauncherMoments:
    """What the launcher saw of one launch."""

    received_at: str | None = None  # the launch request reached the launcher
    container_created_at: str | None = None  # the platform created the container (Docker) or task (ECS)
    container_started_at: str | None = None  # the platform started it
    clock: str = LAUNCHER_CLOCK

    @classmethod
    def from_dict(cls, data: Any) -> LauncherMoments:
        return typed_record(cls, data, "timings.launcher")


@dataclass(frozen=True)
class Timeline:
    """Contents of timings.json: the moments of one try that status.json cannot know, each side's on
    its own clock. With status.json's usage record (the container's moments) it makes the whole
    timeline of a try, from Airflow's task start to its end (``airlaunch report`` joins them)."""

    airflow: AirflowMoments = field(default_factory=AirflowMoments)
    launcher: LauncherMoments = field(default_factory=LauncherMoments)
    version: int = USAGE_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> Timeline:
        data = parse_json(text, "timings", "timings.json")
        require(data, "timings", dict)
        return cls(
            airflow=AirflowMoments.from_dict(data.get("airflow") or {}),
            launcher=LauncherMoments.from_dict(data.get("launcher") or {}),
            version=int(data.get("version", USAGE_VERSION)),
        )
