"""End to end as a user works: real Airflow processes, driven through the REST API. What a user's faults do (a
failing container, a task marked failed, a triggerer restarted...) is the fault catalogue's, run as
tests/airflow/test_faults.py."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest

from airlaunch.airflow_rest import AirflowRest
from tests.airflow.conftest import E2E_PARALLELISM, run_dag, status_at

pytestmark = [pytest.mark.stack, pytest.mark.airflow]

CONTAINER_TASKS = ["test_docker", "do_task_one", "do_task_two", "do_task_three", "report"]


def test_reference_pipeline_through_the_rest_api(airflow_api: AirflowRest, s3: Any) -> None:
    run_id, run = run_dag(airflow_api, "airlaunch_reference", {"min_seconds": 1, "max_seconds": 2})
    states = {ti["task_id"]: ti["state"] for ti in airflow_api.task_instances("airlaunch_reference", run_id)}
    assert run["state"] == "success", states
    assert set(states.values()) == {"success"}

    for task_id in CONTAINER_TASKS:
        where = airflow_api.xcom("airlaunch_reference", run_id, task_id, "airlaunch")
        status = status_at(s3, where)
        # It ran in a real container: the runtime reports the hostname Docker gave it.
        assert status["state"] == "succeeded" and status["host"] == where["task_ref"][:12]
        for key in where["result_keys"].values():  # every key in XCom names a real object
            assert s3.head_object(Bucket=where["bucket"], Key=key)["ContentLength"] > 0

    two = airflow_api.xcom("airlaunch_reference", run_id, "do_task_two")
    three = airflow_api.xcom("airlaunch_reference", run_id, "do_task_three")
    assert three["task_two_value"] == two["sleep_seconds"] and three["product"] == round(two["sleep_seconds"] * 2, 3)
    log = airflow_api.log("airlaunch_reference", run_id, "do_task_two")
    assert f"[container] slept {two['sleep_seconds']} s" in log


def _overlap(api: AirflowRest, s3: Any, dag_id: str, run_id: str, count: int) -> int:
    """How many of the run's mapped containers ran at the same moment, at most."""
    intervals = []
    for index in range(count):
        where = api.xcom(dag_id, run_id, "sleep", "airlaunch", map_index=index)
        assert re.search(f"/sleep/{index}/1-[0-9a-f-]{{36}}/$", where["prefix"])  # one prefix per index and try
        status = status_at(s3, where)
        intervals.append((datetime.fromisoformat(status["started_at"]), datetime.fromisoformat(status["ended_at"])))
    assert len({start for start, _ in intervals}) == count
    return max(sum(start <= t < end for start, end in intervals) for t, _ in intervals)


def test_waiting_tasks_hold_no_worker_slot(airflow_api: AirflowRest, s3: Any) -> None:
    """8 ten-second containers launched from workers, parallelism 2: if waiting held a slot, 2 would overlap."""
    dag_id = "airlaunch_fan_out_workers"
    run_id, run = run_dag(airflow_api, dag_id, {"count": 8, "min_seconds": 10, "max_seconds": 10})
    assert run["state"] == "success"
    assert airflow_api.xcom(dag_id, run_id, "total") == pytest.approx(80.0)
    most_at_once = _overlap(airflow_api, s3, dag_id, run_id, 8)
    assert most_at_once > E2E_PARALLELISM
    print(f"\n8 x 10 s tasks launched from workers at parallelism {E2E_PARALLELISM}: {most_at_once} ran at once")


def test_tasks_started_from_the_triggerer_never_visit_a_worker(airflow_api: AirflowRest, s3: Any) -> None:
    """start_from_trigger: the scheduler defers the mapped tasks at once; the triggerer launches all 8."""
    dag_id = "airlaunch_fan_out"
    run_id, run = run_dag(airflow_api, dag_id, {"count": 8, "min_seconds": 10, "max_seconds": 10})
    assert run["state"] == "success"
    assert airflow_api.xcom(dag_id, run_id, "total") == pytest.approx(80.0)
    sleepers = [ti for ti in airflow_api.task_instances(dag_id, run_id) if ti["task_id"] == "sleep"]
    assert len(sleepers) == 8 and {ti["state"] for ti in sleepers} == {"success"}
    assert all(ti["queued_when"] is None and ti["pid"] is None for ti in sleepers), sleepers  # never queued
    assert _overlap(airflow_api, s3, dag_id, run_id, 8) == 8
    log = airflow_api.log(dag_id, run_id, "sleep", map_index=3)
    assert "launched task_two (docker" in log and "[container] slept 10.0 s" in log
    # No worker built their extra links: the trigger pushed them (locally the results link is the s3:// URI).
    where = airflow_api.xcom(dag_id, run_id, "sleep", "airlaunch", map_index=3)
    assert airflow_api.xcom(dag_id, run_id, "sleep", "_link_ResultsLink", map_index=3) == where["uri"]
