"""What a status notification costs in SQS calls with one triggerer and with two (Airflow's HA mode).

Every triggerer runs one long poll on the shared status queue (airlaunch.providers.airflow.triggers.
status_notifications): a message for a key another triggerer watches is handed back (visibility 1 s) for
the others, so with more triggerers a notification can be received more than once before the right one
gets it. This counts, from LocalStack's request log, the SQS calls a fan-out's run made (ReceiveMessage,
ChangeMessageVisibility* for the hand-backs, DeleteMessage*), minus what the same processes make idle (each
triggerer's long poll returns empty every 20 s), per task: each task's status.json is one notification.
"""

from __future__ import annotations

import time
from typing import Any

from bench.harness import BenchAirflow, RequestCounter, background_rates, run_dag
from bench.scale import DAG_ID

SQS_CALLS = ("sqs.ReceiveMessage", "sqs.ChangeMessageVisibilityBatch", "sqs.ChangeMessageVisibility")
SQS_DELETES = ("sqs.DeleteMessageBatch", "sqs.DeleteMessage")


def per_notification(counts: dict[str, int], idle: dict[str, float], seconds: float, tasks: int) -> dict[str, float]:
    """SQS calls of each kind a notification cost: the run's count less the idle rate over its wall time."""
    kinds = {"receives": SQS_CALLS[:1], "hand_backs": SQS_CALLS[1:], "deletes": SQS_DELETES}
    return {
        kind: sum(counts.get(op, 0) - idle.get(op, 0.0) * seconds for op in ops) / tasks for kind, ops in kinds.items()
    }


def sqs_cost(airflow: BenchAirflow, count: int, max_seconds: float, idle_seconds: float) -> dict[str, Any]:
    """One fan-out of ``count`` tasks on this Airflow (its triggerers), after a warm-up and an idle window."""
    api = airflow.api()
    run_dag(api, DAG_ID, {"count": 2, "max_seconds": 0}, timeout=300)  # a triggerer's first triggers connect
    idle = background_rates(idle_seconds)
    counter, started = RequestCounter(), time.monotonic()
    run_id, run = run_dag(api, DAG_ID, {"count": count, "max_seconds": max_seconds}, 600 + 3 * count)
    took = time.monotonic() - started
    counts = {op: n for op, n in counter.count().items() if op.startswith("sqs.")}
    states = [ti["state"] for ti in api.task_instances(DAG_ID, run_id) if ti["task_id"] == "launch"]
    return {
        "triggerers": airflow.triggerers,
        "count": count,
        "state": run["state"],
        "failed_tasks": sum(state != "success" for state in states),
        "seconds": took,
        "sqs_calls": counts,
        "idle_rates": {op: rate for op, rate in idle.items() if op.startswith("sqs.")},
        "per_notification": per_notification(counts, idle, took, count),
    }


def one_and_two(parallelism: int, count: int, max_seconds: float, idle_seconds: float = 30) -> dict[str, Any]:
    """The same fan-out with one triggerer, then with two; the benchmark's Airflow is left with one."""
    out: dict[str, Any] = {}
    for triggerers in (1, 2):
        airflow = BenchAirflow(parallelism, triggerers)
        airflow.ensure()
        out[str(triggerers)] = sqs_cost(airflow, count, max_seconds, idle_seconds)
    BenchAirflow(parallelism).ensure()
    return out
