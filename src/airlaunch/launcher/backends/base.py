"""What the launcher needs from a container platform (Docker locally, ECS on AWS)."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Protocol

from airlaunch.catalog import TaskSpec
from airlaunch.protocol import EcsTimes, ResultLayout, RunIdentity, StopReason, TaskState

# Which start of its try a task container is (after starts that failed, e.g. an image pull on ECS);
# set by the launcher, absent on the first start.
ENV_START_ATTEMPT = "AIRLAUNCH_START_ATTEMPT"


def killed_by(exit_code: int) -> str | None:
    """An exit code above 128 in words, as shells and container platforms mean it: "killed by signal 9 (SIGKILL)"."""
    if exit_code <= 128:
        return None
    number = exit_code - 128
    try:
        return f"killed by signal {number} ({signal.Signals(number).name})"
    except ValueError:
        return f"killed by signal {number}"


class LaunchError(RuntimeError):
    """The platform refused to start the task (missing image, no capacity, bad network...).

    ``retryable``: the same launch may succeed a moment later (the engine restarting, no
    capacity just now); callers retry those within their launch budget, never the others.
    """

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Started:
    task_ref: str
    launched: bool  # False when a task of the same identity already existed
    created_at: str | None = None  # when the platform created / started it, as it says (ISO 8601, UTC)
    started_at: str | None = None


@dataclass(frozen=True)
class LiveTask:
    """A task the platform still runs (or is starting), and which try it belongs to."""

    task_ref: str
    digest: str  # RunIdentity.digest of its try
    layout: ResultLayout  # where its try keeps its files (from the environment it was started with)
    started_at: float | None = None  # epoch seconds, when the platform says it started
    timeout_seconds: int | None = None  # the timeout it was started with
    cache: str = ""  # the result cache's claim it was started with (airlaunch.protocol.CacheClaim), if any


@dataclass(frozen=True)
class BackendState:
    """The platform's view of a task; ``status.json`` in S3 has the final word when it exists."""

    state: TaskState  # PENDING, RUNNING, or LOST once the platform no longer runs it
    exit_code: int | None = None
    detail: str | None = None  # how it ended, in words, once it has
    reason: StopReason | None = None  # the same as a code, once it has ended
    log_tail: list[str] = field(default_factory=list)  # its last output lines, where the platform keeps them
    host: str = ""
    ecs_times: EcsTimes | None = None  # ECS's own timestamps of the task, once it stopped
    image: str | None = None  # the image it ran, by content (Docker's image id, ECS's imageDigest), once known


@dataclass(frozen=True)
class StoppedTask:
    """A task the platform reports stopped, as the platform itself describes it (never as an event says)."""

    task: LiveTask  # its try: digest and layout, from what the launcher started it with
    seen: BackendState  # how it ended, in words, with the platform's timestamps
    start_attempt: int  # which start of its try it was (1: the launch itself)
    may_start_again: bool  # it failed to start for a reason that may pass (an image pull, the ENI)


class Backend(Protocol):
    name: str

    def live(self, identity: RunIdentity) -> list[LiveTask]:
        """Live tasks of this task instance, this try or any other (same dag, run, task, map index)."""

    def live_tasks(self) -> list[LiveTask]:
        """Every live task this launcher started (for the reaper)."""

    def start(self, spec: TaskSpec, identity: RunIdentity, env: dict[str, str]) -> Started:
        """Start the task without waiting for it; idempotent per identity."""

    def image_digest(self, spec: TaskSpec) -> str | None:
        """The image the entry's task would run now, by content (``sha256:...``), as the platform reports it
        once run (BackendState.image); None when it cannot be known (then nothing is cached)."""

    def describe(self, task_ref: str) -> BackendState: ...

    def stop(self, task_ref: str, reason: str) -> bool:
        """Ask the task to stop (SIGTERM, then SIGKILL after a grace period); False if it was gone."""

    def forget(self, task_ref: str) -> None:
        """Drop what the platform keeps of an ended task once its end is recorded (a no-op on ECS)."""

    def stopped_task(self, task_ref: str) -> StoppedTask | None:
        """The task a platform "stopped" event names, read back from the platform; None unless the
        platform says it is a stopped task of this launcher's."""


def labels_for(spec: TaskSpec, identity: RunIdentity) -> dict[str, str]:
    """Labels/tags that let anyone find a task by its Airflow identity."""
    return {
        "airlaunch.task": spec.name,
        "airlaunch.dag_id": identity.dag_id,
        "airlaunch.run_id": identity.run_id,
        "airlaunch.task_id": identity.task_id,
        "airlaunch.map_index": str(identity.map_index),
        "airlaunch.try_number": str(identity.try_number),
        "airlaunch.ti_id": identity.ti_id,
        "airlaunch.identity": identity.digest,
        "airlaunch.slot": identity.slot,
    }
