"""The reference pipeline under dag.test(): real containers, real LocalStack, Airflow in-process."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from airflow.models.dagbag import DagBag
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

from airlaunch.stack import Stack
from tests.airflow.conftest import _CFG

pytestmark = [pytest.mark.stack, pytest.mark.airflow]

CONTAINER_TASKS = ["test_docker", "do_task_one", "do_task_two", "do_task_three", "report"]


def _xcom(run_id: str, task_id: str, key: str, dag_id: str = "airlaunch_reference") -> Any:
    with create_session() as session:
        row = session.query(XComModel).filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id, key=key).one()
        value = row.value
    return json.loads(value) if isinstance(value, str) else value


def test_reference_pipeline_runs_green_with_dag_test(stack: Stack, airflow_db: None, s3: Any) -> None:
    dag = DagBag(dag_folder=str(_CFG.repo / "airflow" / "dags")).get_dag("airlaunch_reference")
    run = dag.test(run_conf={"min_seconds": 0.5, "max_seconds": 1.5, "factor": 4})

    assert run.state == "success"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert set(states.values()) == {"success"}, states
    ti_ids = {ti.task_id: str(ti.id) for ti in run.get_task_instances()}

    two = _xcom(run.run_id, "do_task_two", "return_value")
    assert 0.5 <= two["sleep_seconds"] <= 1.5
    three = _xcom(run.run_id, "do_task_three", "return_value")
    assert three == {
        "task_two_value": two["sleep_seconds"],
        "factor": 4.0,
        "product": round(two["sleep_seconds"] * 4, 3),
    }
    for task_id in CONTAINER_TASKS:
        where = _xcom(run.run_id, task_id, "airlaunch")
        assert where["state"] == "succeeded" and where["exit_code"] == 0
        status = json.loads(s3.get_object(Bucket=where["bucket"], Key=where["prefix"] + "status.json")["Body"].read())
        # each try's files are its own: the prefix holds Airflow's task-instance id
        assert status["execution_id"] == f"airlaunch_reference/{run.run_id}/{task_id}/-1/1-{ti_ids[task_id]}"
        assert set(where["result_keys"]) >= {"params", "log", "result"}


def test_launch_then_wait_with_the_sensor(stack: Stack, airflow_db: None) -> None:
    dag = DagBag(dag_folder=str(_CFG.repo / "airflow" / "dags")).get_dag("airlaunch_launch_then_wait")
    run = dag.test()
    assert run.state == "success"
    handle = _xcom(run.run_id, "launch", "return_value", "airlaunch_launch_then_wait")
    assert handle["launched"] and re.search(
        "/launch/-1/1-[0-9a-f-]{36}/$", handle["prefix"]
    )  # the wait launched nothing
    slept = _xcom(run.run_id, "wait", "return_value", "airlaunch_launch_then_wait")["sleep_seconds"]
    assert _xcom(run.run_id, "use", "return_value", "airlaunch_launch_then_wait") == slept * 10
    where = _xcom(run.run_id, "wait", "airlaunch", "airlaunch_launch_then_wait")
    assert where["prefix"] == handle["prefix"] and where["state"] == "succeeded"
