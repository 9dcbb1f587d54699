"""The phases of one try: its moments from every clock that recorded them, in order, as spans.

A try's moments come from what S3 holds: timings.json (what Airflow's side saw, from the task
instance's start to its end, and what the launcher saw: request received, container created and
started), the usage record in status.json (the container's clock) and, on ECS, the task's own
timestamps (ECS's clock); for a try without timings.json, params.yaml's LastModified (S3's clock,
whole seconds) stands for the launch. Each span names the clock(s) it is measured on, and a span
between two clocks says so. No span is negative: a moment recorded after the next one (a platform's
start time, taken once its start call returned, when the runtime inside has already begun) is taken
back to the next one (:func:`_in_order`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from airlaunch.cli.tries import TaskTry
from airlaunch.protocol import PARAMS_FILE, EcsTimes, Timeline

CONTAINER = "container"
ECS = "ECS"
AIRFLOW = "Airflow"
AIRFLOW_TO_LAUNCHER = "Airflow -> launcher"
LAUNCHER_TO_PLATFORM = "launcher -> platform"
PLATFORM = "platform"
PLATFORM_TO_CONTAINER = "platform -> container"
CONTAINER_TO_AIRFLOW = "container -> Airflow"
S3_TO_CONTAINER = "S3 (1 s) -> container"
S3_TO_ECS = "S3 (1 s) -> ECS"
ECS_TO_CONTAINER = "ECS -> container"
CONTAINER_TO_ECS = "container -> ECS"
LAUNCHER = "launcher"
LAUNCHER_TO_AIRFLOW = "launcher -> Airflow"


@dataclass(frozen=True)
class Span:
    """One phase of a try, from ``start`` to ``end`` on the named clock(s)."""

    phase: str
    start: datetime
    end: datetime
    clock: str

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        when = {"start": self.start.isoformat(), "end": self.end.isoformat()}
        return {"phase": self.phase, **when, "seconds": round(self.seconds, 3), "clock": self.clock}


def at(text: str | None) -> datetime | None:
    """An ISO timestamp; one without a zone is taken as UTC, as every airlaunch clock is."""
    try:
        moment = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


def phases_of(task_try: TaskTry, timeline: Timeline | None = None, ecs_times: EcsTimes | None = None) -> list[Span]:
    """The spans this try's records allow, in order; a missing moment drops the spans it bounds."""
    status = task_try.status
    if status is not None and status.cached_from:
        return _served_phases(status.ended_at, timeline)
    usage = status.usage if status else None
    params_written = task_try.files.get(PARAMS_FILE)
    moments: list[tuple[str, datetime | None, str]] = []  # (phase that starts here, moment, clock)
    ecs = (usage.ecs if usage else None) or ecs_times
    if timeline:  # Airflow's and the launcher's own moments instead of S3's
        airflow, launcher = timeline.airflow, timeline.launcher
        moments += [
            ("airflow", at(airflow.task_started_at), AIRFLOW),
            ("invoke", at(airflow.launch_requested_at), AIRFLOW_TO_LAUNCHER),
            ("launch", at(launcher.received_at), LAUNCHER_TO_PLATFORM),
        ]
        if ecs:
            moments += [
                ("provision", at(ecs.created_at), ECS),
                ("pull", at(ecs.pull_started_at), ECS),
                ("start", at(ecs.pull_stopped_at), ECS),
                ("boot", at(ecs.started_at), ECS_TO_CONTAINER),
            ]
        else:
            moments += [
                ("create", at(launcher.container_created_at), PLATFORM),
                ("boot", at(launcher.container_started_at), PLATFORM_TO_CONTAINER),
            ]
    elif ecs:
        moments += [
            ("launch", params_written, S3_TO_ECS),
            ("provision", at(ecs.created_at), ECS),
            ("pull", at(ecs.pull_started_at), ECS),
            ("start", at(ecs.pull_stopped_at), ECS),
            ("boot", at(ecs.started_at), ECS_TO_CONTAINER),
        ]
    else:
        moments.append(("launch", params_written, S3_TO_CONTAINER))
    if usage:
        phases = usage.phases
        moments += [
            ("startup", at(phases.runtime_started_at), CONTAINER),
            ("code", at(phases.user_code_started_at), CONTAINER),
            ("upload", at(phases.user_code_ended_at), CONTAINER),
        ]
        if timeline:  # status.json and the notification, then Airflow ending the task
            moments += [
                ("notify", at(phases.results_uploaded_at), CONTAINER_TO_AIRFLOW),
                ("finish", at(timeline.airflow.completion_seen_at), AIRFLOW),
                ("", at(timeline.airflow.task_ended_at), AIRFLOW),
            ]
        elif ecs and ecs.stopping_at and ecs.stopped_at:  # the runtime's exit, then ECS stopping the task
            moments += [("exit", at(phases.results_uploaded_at), CONTAINER_TO_ECS)]
            moments += [("stop", at(ecs.stopping_at), ECS), ("", at(ecs.stopped_at), ECS)]
        else:
            moments.append(("", at(phases.results_uploaded_at), CONTAINER))
    elif status:  # a status.json from before the usage record: the runtime's run as one span
        moments += [("run", at(status.started_at), CONTAINER), ("", at(status.ended_at), CONTAINER)]
    spans = []
    for (phase, start, clock), (_, end, _) in pairwise(_in_order(moments)):
        if phase and start and end:
            spans.append(Span(phase, start, end, clock))
    return spans


def _served_phases(served_at: str, timeline: Timeline | None) -> list[Span]:
    """A try served from the result cache: Airflow's launch, the launcher's lookup and copies ("cache", from
    the request received to status.json written), then Airflow seeing it; no container phase at all."""
    if timeline is None:
        moment = at(served_at)
        return [Span("cache", moment, moment, LAUNCHER)] if moment else []
    airflow = timeline.airflow
    moments = [
        ("airflow", at(airflow.task_started_at), AIRFLOW),
        ("invoke", at(airflow.launch_requested_at), AIRFLOW_TO_LAUNCHER),
        ("cache", at(timeline.launcher.received_at), LAUNCHER),
        ("notify", at(served_at), LAUNCHER_TO_AIRFLOW),
        ("finish", at(airflow.completion_seen_at), AIRFLOW),
        ("", at(airflow.task_ended_at), AIRFLOW),
    ]
    ordered = _in_order(moments)
    return [Span(p, s, e, c) for (p, s, c), (_, e, _) in pairwise(ordered) if p and s and e]


def _in_order(moments: list[tuple[str, datetime | None, str]]) -> list[tuple[str, datetime | None, str]]:
    """The moments with none later than a later one: a platform records a container's start (Docker's
    StartedAt, ECS's startedAt) once its start call is done, after the runtime inside has already begun,
    and the runtime's own moment is the truer one. So a moment after the next is taken back to it, which
    makes the phase between them zero instead of negative."""
    ordered = list(moments)
    latest: datetime | None = None
    for i in range(len(ordered) - 1, -1, -1):
        phase, moment, clock = ordered[i]
        if moment is None:
            continue
        if latest is not None and moment > latest:
            ordered[i] = (phase, latest, clock)
        latest = ordered[i][1]
    return ordered
