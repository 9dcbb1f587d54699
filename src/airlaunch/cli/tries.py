"""A task try as the results CLI shows it: its files, its status, its state in one word, and which
try of a task is the latest.

A try's state comes from status.json, which the task runtime writes last; a try with params.yaml
but no status.json is ``running``: S3 alone cannot tell a running task from one whose container
died silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airlaunch.protocol import (
    LOG_FILE,
    NOTEBOOK_FILE,
    PARAMS_FILE,
    RESULT_FILE,
    ResultLayout,
    RunIdentity,
    Status,
    TaskState,
)

# The files a try leaves, by the names status.json's result_keys gives them (in the runtime's order).
RESULT_FILES = {PARAMS_FILE: "params", RESULT_FILE: "result", NOTEBOOK_FILE: "notebook", LOG_FILE: "log"}

RUNNING = "running"  # params.yaml without status.json
INVALID = "invalid"  # a status.json that does not parse


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return None


def rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


@dataclass
class TaskTry:
    """One task try found in S3: its files (name -> last modified) and, once finished, its status."""

    identity: RunIdentity
    layout: ResultLayout
    files: dict[str, datetime] = field(default_factory=dict)
    status: Status | None = None
    problem: str | None = None  # why status.json could not be read

    @property
    def state(self) -> str:
        if self.status:
            return self.status.state.value
        return INVALID if self.problem else RUNNING

    @property
    def finished(self) -> bool:
        return (self.status is not None and self.status.state.finished) or self.problem is not None

    @property
    def duration_seconds(self) -> float | None:
        if self.status:
            return seconds_between(self.status.started_at, self.status.ended_at)
        if PARAMS_FILE in self.files:  # still running: time since the launch wrote params.yaml
            return max(0.0, (datetime.now(UTC) - self.files[PARAMS_FILE]).total_seconds())
        return None

    @property
    def result_keys(self) -> dict[str, str]:
        if self.status:
            return dict(self.status.result_keys)
        return {kind: self.layout.key(name) for name, kind in RESULT_FILES.items() if name in self.files}

    @property
    def label(self) -> str:
        mapped = f"[{self.identity.map_index}]" if self.identity.map_index >= 0 else ""
        return f"{self.identity.task_id}{mapped} try {self.identity.try_number}"

    def to_dict(self) -> dict[str, Any]:
        status = self.status
        return {
            "task_id": self.identity.task_id,
            "map_index": self.identity.map_index,
            "try_number": self.identity.try_number,
            "state": self.state,
            "exit_code": status.exit_code if status else None,
            "reason": status.reason.value if status else None,
            "started_at": status.started_at if status else None,
            "ended_at": status.ended_at if status else None,
            "duration_seconds": rounded(self.duration_seconds),
            "error": status.error if status else self.problem,
            "result_keys": self.result_keys,
            "uri": self.layout.uri(),
            "cached_from": status.cached_from if status else None,  # served from the result cache
        }


@dataclass(frozen=True)
class RunSummary:
    dag_id: str
    run_id: str
    tries: list[TaskTry]

    def count(self, state: str) -> int:
        return sum(1 for t in self.tries if t.state == state)

    @property
    def updated(self) -> datetime | None:
        return max((m for t in self.tries for m in t.files.values()), default=None)

    def to_dict(self) -> dict[str, Any]:
        counts = {state: self.count(state) for state in (TaskState.SUCCEEDED.value, TaskState.FAILED.value, RUNNING)}
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "tries": len(self.tries),
            **counts,
            "other": len(self.tries) - sum(counts.values()),  # lost, or an unreadable status.json
            "updated": self.updated.isoformat() if self.updated else None,
        }


def age(task_try: TaskTry) -> tuple[str, int]:
    """Orders the tries of one task from oldest to newest: Airflow's task-instance ids (UUIDv7) are
    time-ordered, and a re-created run starts its try numbers at 1 again."""
    return task_try.identity.ti_id, task_try.identity.try_number


def latest_tries(tries: Iterable[TaskTry]) -> list[TaskTry]:
    """The last try of each (task, map index): earlier ones were retried by Airflow."""
    latest: dict[tuple[str, int], TaskTry] = {}
    for task_try in tries:
        key = (task_try.identity.task_id, task_try.identity.map_index)
        if key not in latest or age(task_try) > age(latest[key]):
            latest[key] = task_try
    return list(latest.values())
