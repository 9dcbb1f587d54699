"""End to end as a user works: real Airflow processes, driven through the REST API."""

from __future__ import annotations

import re
import subprocess
import time
from typing import Any

import pytest

from airlaunch.airflow_rest import AirflowRest
from airlaunch.stack import Stack, StackConfig
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


def test_failing_container_fails_the_task_with_exit_code_and_log_tail(airflow_api: AirflowRest) -> None:
    run_id, run = run_dag(airflow_api, "airlaunch_diagnostic", {"action": "exit", "code": 7})
    assert run["state"] == "failed"
    log = airflow_api.log("airlaunch_diagnostic", run_id, "diagnostic")
    assert "container task failed (reason: exit, exit code 7): exit code 7: exiting with code 7" in log
    assert "diagnostic action=exit" in log  # the log tail travels with the error


def _watched_sleeper(api: AirflowRest, seconds: int) -> tuple[str, str, str]:
    """Trigger a sleeping diagnostic container; return once the triggerer watches it.

    Watching shows as its container lines in the task log. (A task marked failed before the
    triggerer picked up its trigger never gets on_kill from Airflow.)
    """
    dag_id = "airlaunch_diagnostic"
    api.wait_for_dag(dag_id)
    api.unpause(dag_id)
    run_id = api.trigger(dag_id, {"action": "sleep", "seconds": seconds})
    _wait_for(lambda: bool(_containers(run_id)), "the container to start")
    _wait_for(lambda: "[container] sleeping" in api.log(dag_id, run_id, "diagnostic"), "the trigger to run")
    return dag_id, run_id, _containers(run_id)[0]


def test_marking_a_running_task_failed_stops_its_container(airflow_api: AirflowRest, s3: Any) -> None:
    dag_id, run_id, container = _watched_sleeper(airflow_api, 300)

    airflow_api.set_task_state(dag_id, run_id, "diagnostic", "failed")

    _wait_for(lambda: not _containers(run_id), "the container to be stopped", timeout=60)
    where = airflow_api.xcom(dag_id, run_id, "diagnostic", "airlaunch_handle")
    status = status_at(s3, where)
    assert status["state"] == "failed" and status["reason"] == "stopped" and status["host"] == container[:12]
    assert _ti_state(airflow_api, dag_id, run_id) == "failed"


def test_a_triggerer_restart_resumes_the_watch_without_relaunching(airflow_api: AirflowRest, s3: Any) -> None:
    dag_id, run_id, container = _watched_sleeper(airflow_api, 12)

    Stack(StackConfig()).restart("airflow-triggerer")

    run = airflow_api.wait_for_run(dag_id, run_id, timeout=120)
    assert run["state"] == "success"
    ti = next(ti for ti in airflow_api.task_instances(dag_id, run_id) if ti["task_id"] == "diagnostic")
    assert ti["try_number"] == 1
    where = airflow_api.xcom(dag_id, run_id, "diagnostic", "airlaunch")
    assert where["task_ref"] == container  # the one container launched, watched to its end
    assert status_at(s3, where)["host"] == container[:12]


def _overlap(api: AirflowRest, s3: Any, dag_id: str, run_id: str, count: int) -> int:
    """How many of the run's mapped containers ran at the same moment, at most."""
    intervals = []
    for index in range(count):
        where = api.xcom(dag_id, run_id, "sleep", "airlaunch", map_index=index)
        assert re.search(f"/sleep/{index}/1-[0-9a-f-]{{36}}/$", where["prefix"])  # one prefix per index and try
        status = status_at(s3, where)
        intervals.append((_epoch(status["started_at"]), _epoch(status["ended_at"])))
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


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def _containers(run_id: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-q", "--no-trunc", "--filter", f"label=airlaunch.run_id={run_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def _ti_state(api: AirflowRest, dag_id: str, run_id: str) -> str | None:
    return next(ti["state"] for ti in api.task_instances(dag_id, run_id) if ti["task_id"] == "diagnostic")


def _wait_for(condition: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")
