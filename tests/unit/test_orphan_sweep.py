"""The triggerer's orphan sweep decides from the launcher's live tasks and Airflow's task states."""

from __future__ import annotations

import asyncio
from typing import Any

from airlaunch.protocol import ListedTask, ResultLayout, RunIdentity, identity_of_prefix
from airlaunch.providers.airflow.triggers.orphan_sweep import sweep_once

TI = "01a2330d-6f01-731e-b9b6-0f5b7b1e8ef4"


class FakeLauncher:
    def __init__(self, tasks: list[ListedTask]) -> None:
        self.tasks = tuple(tasks)
        self.stopped: list[tuple[str, RunIdentity | None]] = []

    async def alist_tasks(self, budget: float | None = None) -> tuple[ListedTask, ...]:
        return self.tasks

    async def astop(self, reason: str, *, identity: RunIdentity | None = None, **given: Any) -> None:
        assert not given, "the sweep stops by identity only"
        self.stopped.append((reason, identity))


def _task(identity: RunIdentity, started_at: float) -> ListedTask:
    layout = ResultLayout.for_identity("b", "runs", identity)
    return ListedTask(task_ref=identity.task_id, bucket="b", prefix=layout.prefix, started_at=started_at)


def test_only_containers_whose_task_instance_no_longer_runs_are_stopped() -> None:
    now = 10_000.0
    running = RunIdentity("dag", "run1", "running", -1, 1, TI)
    failed = RunIdentity("dag", "run1", "failed", 2, 1, TI)  # a mapped one: key "failed_2"
    retried = RunIdentity("dag", "run1", "retried", -1, 1, TI)
    deleted_run = RunIdentity("dag", "gone", "t", -1, 1, TI)
    young = RunIdentity("dag", "run1", "young", -1, 1, TI)
    young_retried = RunIdentity("dag", "run1", "young_retried", -1, 1, TI)
    foreign = RunIdentity("other_airflows_dag", "run1", "t", -1, 1, TI)
    launcher = FakeLauncher(
        [_task(i, now - 60) for i in (running, failed, retried, deleted_run, foreign)]
        + [_task(i, now - 5) for i in (young, young_retried)]
    )
    states = {
        "run1": {
            "running": "deferred",
            "failed_2": "failed",
            "retried": "up_for_retry",
            "young": None,
            "young_retried": "up_for_retry",
        }
    }

    async def states_of(dag_id: str, run_ids: list[str], task_ids: list[str]) -> dict[str, Any] | None:
        return states if dag_id == "dag" else None  # this Airflow has no runs of the other DAG

    stopped = asyncio.run(sweep_once(launcher, states_of, now))  # type: ignore[arg-type]

    assert sorted(stopped) == sorted(i.execution_id for i in (failed, retried, deleted_run))
    reasons = {identity.task_id: reason for reason, identity in launcher.stopped if identity is not None}
    assert reasons["failed"] == "orphan sweep: its Airflow task instance is failed"
    assert reasons["t"] == "orphan sweep: its Airflow task instance or run is gone"


def test_a_prefix_gives_back_its_try() -> None:
    identity = RunIdentity("d", "manual__2026-01-01T00:00:00+00:00", "t", 3, 2, TI)
    assert identity_of_prefix(ResultLayout.for_identity("b", "a/deep/root", identity).prefix) == identity
    assert identity_of_prefix("runs/too/short/") is None
    assert identity_of_prefix("runs/d/r/t/-1/not-a-try/") is None


def test_a_young_container_whose_task_instance_was_marked_failed_is_stopped_at_once() -> None:
    """Marked failed (or success) as it defers, before its trigger ran: no on_kill, so the sweep stops it at
    its next round, not after the grace that covers task instances not yet shown as running (30 s, longer
    than the sweep interval within which the README promises the stop)."""
    now = 10_000.0
    marked = RunIdentity("dag", "run1", "marked", -1, 1, TI)
    succeeded = RunIdentity("dag", "run1", "succeeded", -1, 1, TI)
    starting = RunIdentity("dag", "run1", "starting", -1, 1, TI)
    launcher = FakeLauncher([_task(i, now - 2) for i in (marked, succeeded, starting)])
    states = {"run1": {"marked": "failed", "succeeded": "success", "starting": "queued"}}

    async def states_of(dag_id: str, run_ids: list[str], task_ids: list[str]) -> dict[str, Any] | None:
        return states

    stopped = asyncio.run(sweep_once(launcher, states_of, now))  # type: ignore[arg-type]

    assert sorted(stopped) == sorted(i.execution_id for i in (marked, succeeded))
