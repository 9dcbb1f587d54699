"""What the launcher needs from a container platform (Docker locally, ECS on AWS)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from airlaunch.catalog import TaskSpec
from airlaunch.protocol import RunIdentity, TaskState


class LaunchError(RuntimeError):
    """The platform refused to start the task (missing image, no capacity, bad network...)."""


@dataclass(frozen=True)
class Started:
    task_ref: str
    launched: bool  # False when a task of the same identity already existed


@dataclass(frozen=True)
class BackendState:
    """The platform's view of a task; ``status.json`` in S3 has the final word when it exists."""

    state: TaskState  # PENDING, RUNNING, or LOST once the platform no longer runs it
    exit_code: int | None = None
    detail: str | None = None


class Backend(Protocol):
    name: str

    def find(self, identity: RunIdentity) -> str | None:
        """The ref of a live task started for this identity, if any."""

    def start(self, spec: TaskSpec, identity: RunIdentity, env: dict[str, str]) -> Started:
        """Start the task without waiting for it; idempotent per identity."""

    def describe(self, task_ref: str) -> BackendState: ...

    def stop(self, task_ref: str, reason: str) -> bool:
        """Ask the task to stop (SIGTERM, then SIGKILL after a grace period); False if it was gone."""


def labels_for(spec: TaskSpec, identity: RunIdentity) -> dict[str, str]:
    """Labels/tags that let anyone find a task by its Airflow identity."""
    return {
        "airlaunch.task": spec.name,
        "airlaunch.dag_id": identity.dag_id,
        "airlaunch.run_id": identity.run_id,
        "airlaunch.task_id": identity.task_id,
        "airlaunch.map_index": str(identity.map_index),
        "airlaunch.try_number": str(identity.try_number),
        "airlaunch.identity": identity.digest,
    }
