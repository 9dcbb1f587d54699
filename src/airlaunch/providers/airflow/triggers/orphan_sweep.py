"""The triggerer's orphan sweep: stops containers whose Airflow task instance no longer runs.

A deferred task's container is stopped by its trigger's ``on_kill``, but not always: a
task marked failed before its trigger started, a worker, scheduler or triggerer killed at
the worst moment, a DAG run deleted. Every ``interval`` seconds (``[airlaunch] sweep_seconds``)
one sweep per triggerer and launcher (function, connection and region; the triggerer's
``TriggererLoop`` starts them) asks the launcher for its live tasks and Airflow for the state
of their task instances, and stops each container whose task instance is neither running nor
about to (finished, up for retry, or its run deleted); the launcher records why in the
try's status.json. So an orphan lives at most about one interval past its task instance.

A container younger than ``GRACE_SECONDS`` is stopped only when its task instance has ended
for good (success, failed, skipped...): a task marked failed at the moment it defers, before
its trigger runs, is stopped at the next sweep, not a grace later. Otherwise a young one is
left alone (its task instance may not show as running yet, or its run not be visible), and
so are those of DAGs this Airflow has no runs of (another Airflow's, or a launch made
outside Airflow).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async

from airlaunch.protocol import RunIdentity, identity_of_prefix

if TYPE_CHECKING:  # the hook imports the triggerer's shared state, which starts sweeps
    from airlaunch.providers.airflow.hooks.launcher import LauncherHook

log = logging.getLogger(__name__)

ALIVE = {"running", "deferred", "queued", "scheduled", "restarting", "up_for_reschedule"}
# Ended for good: no later try can be running yet (up_for_retry can turn into the next try at any moment).
ENDED = {"success", "failed", "skipped", "upstream_failed", "removed"}
GRACE_SECONDS = 30.0


async def sweep_forever(hook: LauncherHook, interval: float) -> None:
    """Sweep ``hook``'s launcher every ``interval`` seconds until cancelled; a failed sweep waits for the next."""
    while True:
        await asyncio.sleep(interval)
        try:
            stopped = await sweep_once(hook)
            if stopped:
                log.warning("stopped %d container(s) whose task instance no longer runs: %s", len(stopped), stopped)
        except Exception as exc:  # the launcher or Airflow unreachable: next time
            log.warning("orphan sweep failed (%s); next one in %.0f s", exc, interval)


async def sweep_once(hook: LauncherHook, states_of: Any = None, now: float | None = None) -> list[str]:
    """One sweep; returns the execution ids stopped. ``states_of(dag_id, run_ids, task_ids)`` gives
    {run_id: {task_id or task_id_mapindex: state}} or None for a DAG this Airflow has no runs of."""
    states_of = states_of or _airflow_states
    now = now or time.time()
    tasks = await hook.alist_tasks(budget=0)
    by_dag: dict[str, list[RunIdentity]] = {}
    young: set[RunIdentity] = set()
    for task in tasks:
        identity = identity_of_prefix(task.prefix)
        if identity is not None:
            by_dag.setdefault(identity.dag_id, []).append(identity)
            if now - (task.started_at or now) < GRACE_SECONDS:
                young.add(identity)
    stopped = []
    for dag_id, identities in by_dag.items():
        states = await states_of(
            dag_id, sorted({i.run_id for i in identities}), sorted({i.task_id for i in identities})
        )
        if states is None:
            continue
        for identity in identities:
            key = identity.task_id if identity.map_index < 0 else f"{identity.task_id}_{identity.map_index}"
            state = (states.get(identity.run_id) or {}).get(key)
            if state in ALIVE or (identity in young and state not in ENDED):
                continue
            why = f"its Airflow task instance is {state}" if state else "its Airflow task instance or run is gone"
            await hook.astop(f"orphan sweep: {why}", identity=identity)
            stopped.append(identity.execution_id)
    return stopped


async def _airflow_states(dag_id: str, run_ids: list[str], task_ids: list[str]) -> dict[str, Any] | None:
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    if not await sync_to_async(RuntimeTaskInstance.get_dr_count)(dag_id=dag_id):
        return None
    states: dict[str, Any] = await sync_to_async(RuntimeTaskInstance.get_task_states)(
        dag_id=dag_id, run_ids=run_ids, task_ids=task_ids
    )
    return states
