"""bench/targets.py and bench/triggerers.py: the idle rate is taken out of a run's CPU once, ratios to the
floors are judged against their limits, and S3 and SQS counts lose what LocalStack served meanwhile idle."""

from __future__ import annotations

from typing import Any

from bench import targets
from bench.triggerers import per_notification


def test_work_is_the_cpu_less_the_idle_rate_over_the_wall_time() -> None:
    assert targets.work(10.0, 0.05, 100.0) == 5.0
    assert targets.work(1.0, 0.05, 100.0) == 0.0  # a run cannot have done less than nothing


def test_per_task_gives_both_total_and_work() -> None:
    shares = targets.per_task({"airflow scheduler": 30.0, "launcher": 4.0}, {"airflow scheduler": 0.1}, 100.0, 10)
    assert shares["airflow scheduler"] == {"total": 3.0, "work": 2.0}
    assert shares["launcher"] == {"total": 0.4, "work": 0.4}  # no idle rate measured: all of it is work


def test_a_ratio_at_its_limit_passes_and_above_it_fails() -> None:
    assert targets.judged("t", 1.25, 1.0, 1.25, "d")[3] == "PASS"
    assert targets.judged("t", 1.26, 1.0, 1.25, "d")[3] == "FAIL"
    assert targets.judged("t", 1.0, 0.0, 1.25, "d")[3] == "FAIL"  # a floor of nothing cannot be met


def test_s3_requests_a_task_are_only_s3_and_lose_the_background() -> None:
    requests = {"s3.GetObject": 250, "s3.PutObject": 100, "sqs.ReceiveMessage": 40}
    per_task = targets.s3_per_task(requests, {"s3.GetObject": 0.5}, 100.0, 10)
    assert per_task == {"GetObject": 20.0, "PutObject": 10.0}


def test_sqs_calls_a_notification_lose_the_idle_long_polls() -> None:
    counts = {"sqs.ReceiveMessage": 130, "sqs.ChangeMessageVisibilityBatch": 20, "sqs.DeleteMessageBatch": 50}
    cost = per_notification(counts, {"sqs.ReceiveMessage": 0.1}, 300.0, 100)
    assert cost == {"receives": 1.0, "hand_backs": 0.2, "deletes": 0.5}


def _floors() -> dict[str, Any]:
    cpu = {"airflow scheduler": 2.0, "airflow triggerer": 2.0, "machine": 10.0}
    container = {"count": 10, "concurrency": 4, "seconds": 10.0, "container_seconds": {"p50": 0.5, "p95": 0.8}}
    return {
        "idle": {"seconds": 30, "rates": {"airflow scheduler": 0.0, "airflow triggerer": 0.0, "machine": 0.0}},
        "airflow": {"triggerer": {"10": {"count": 10, "seconds": 5.0, "failed_tasks": 0, "cpu_seconds": cpu}}},
        "bare": {**container, "cpu_seconds": {"machine": 1.0}, "container_cpu_seconds": {"mean": 0.1, "p50": 0.1}},
        "runtime": {**container, "cpu_seconds": {"machine": 5.0}, "container_cpu_seconds": {"mean": 0.3, "p50": 0.3}},
        "latency_runs": [{"p50": 0.4, "p95": 0.9}, {"p50": 0.4, "p95": 1.2}],
    }


def _scale() -> dict[str, Any]:
    cpu = {"airflow scheduler": 2.0, "airflow triggerer": 2.5, "launcher": 0.5, "task containers": 3.0, "machine": 15.0}
    return {
        "background_rates": {},
        "10": {
            "count": 10,
            "failed_tasks": 0,
            "seconds": 20.0,
            "cpu_seconds": cpu,
            "s3_requests": {"s3.GetObject": 80, "s3.PutObject": 40, "sqs.ReceiveMessage": 10},
            "completion_latency": {"p50": 0.4, "p95": 0.9},
            "peak_memory_mib": {"total": 1000.0},
        },
    }


def test_floor_rows_judge_each_target_against_the_same_runs_floor() -> None:
    rows = {row[0]: row for row in targets.floor_rows(_floors(), _scale())}
    # ours 0.5 CPU-s a task (scheduler 0.2, triggerer 0.25, launcher 0.05) against the floor's 0.4: x1.25
    assert rows["Target: orchestration CPU a task at 10"][1].startswith("x1.25")
    assert rows["Target: orchestration CPU a task at 10"][3] == "PASS"
    assert rows["Target: runtime start-up (container CPU)"][1].startswith("x3.00")
    assert rows["Target: runtime start-up (container CPU)"][3] == "FAIL"
    assert rows["Target: S3 requests a try at 10"][1].startswith("x2.00")  # 12 a try against 6
    # ours 1.5 machine CPU-s a task against the floors' 1.0 + 0.1
    assert rows["Target: total CPU a task at 10"][1].startswith("x1.36")
    assert rows["Target: completion latency at 10, 2 runs"][3] == "FAIL"  # the second run's p95
    assert rows["Target: stack peak memory at 10 (MiB)"][3] == "PASS"
    sqs = rows["SQS: calls a status notification costs, 1 triggerer, the scale fan-out of 10"]
    assert sqs[1].startswith("1.00 ReceiveMessage")  # one triggerer's receives in the fan-out, a notification
