"""Airflow on the ECS mode: the same DAGs, the launcher's ECS backend against the emulated account.

The container fault rows run at the launcher's layer (tests/stack/test_ecs_mode.py); here, end to end once
through Airflow's REST API: the reference pipeline, and a 20-way mapped fan-out of a catalog task that has
an image of its own, added to the catalog and deployed as `make deploy` would.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from airlaunch.airflow_rest import AirflowRest
from airlaunch.stack import Stack
from airlaunch.stack.ecs_account import STACK_NAME
from tests.airflow.conftest import run_dag, status_at
from tests.conftest import TEST_CATALOG, redeploy_ecs_account

pytestmark = [pytest.mark.stack, pytest.mark.airflow]

PROBE = Path(__file__).resolve().parents[1] / "fixtures" / "ecs_probe"
PROBE_IMAGE = "airlaunch/ecs-probe:latest"


@pytest.fixture(scope="module")
def ecs_airflow(ecs_mode: Stack, airflow_api: AirflowRest) -> Iterator[AirflowRest]:
    """The probe task in the stack's catalog with its image built, deployed into a new emulated account, as
    `make deploy` would after the change; the catalog as it was afterwards."""
    subprocess.run(["docker", "build", "-q", "-t", PROBE_IMAGE, str(PROBE)], check=True, capture_output=True)
    original = TEST_CATALOG.read_text()
    catalog = yaml.safe_load(original)
    catalog["tasks"]["ecs_probe"] = {
        "image": PROBE_IMAGE,
        "command": ["python", "/opt/probe/probe.py"],
        "cpu": 0.25,
        "memory_mib": 512,
        "description": "sleeps like task two in an image of its own",
    }
    TEST_CATALOG.write_text(yaml.safe_dump(catalog, sort_keys=False))
    try:
        redeploy_ecs_account(ecs_mode)
        yield airflow_api
    finally:
        TEST_CATALOG.write_text(original)


def test_the_reference_pipeline_runs_on_ecs(ecs_airflow: AirflowRest, s3: Any) -> None:
    run_id, run = run_dag(ecs_airflow, "airlaunch_reference", {"min_seconds": 1, "max_seconds": 2})
    states = {ti["task_id"]: ti["state"] for ti in ecs_airflow.task_instances("airlaunch_reference", run_id)}
    assert run["state"] == "success", states
    for task_id in ("test_docker", "do_task_one", "do_task_two", "do_task_three", "report"):
        where = ecs_airflow.xcom("airlaunch_reference", run_id, task_id, "airlaunch")
        assert where["task_ref"].startswith(f"arn:aws:ecs:us-east-1:000000000000:task/{STACK_NAME}/"), where
        assert status_at(s3, where)["state"] == "succeeded"
    two = ecs_airflow.xcom("airlaunch_reference", run_id, "do_task_two")
    three = ecs_airflow.xcom("airlaunch_reference", run_id, "do_task_three")
    assert three["task_two_value"] == two["sleep_seconds"]


def test_a_20_way_fan_out_of_a_new_task_with_its_own_image(ecs_airflow: AirflowRest, stack: Stack, s3: Any) -> None:
    conf = {"count": 20, "task": "ecs_probe", "min_seconds": 0, "max_seconds": 2}
    run_id, run = run_dag(ecs_airflow, "airlaunch_fan_out", conf, timeout=600)
    assert run["state"] == "success", [ti["state"] for ti in ecs_airflow.task_instances("airlaunch_fan_out", run_id)]
    results = [ecs_airflow.xcom("airlaunch_fan_out", run_id, "sleep", map_index=i) for i in range(20)]
    assert sorted(r["batch"] for r in results) == list(range(20))
    assert all(r["probe"] == "airlaunch/ecs-probe" and r["on_fargate"] for r in results), results
    total = ecs_airflow.xcom("airlaunch_fan_out", run_id, "total")
    assert total == round(sum(r["sleep_seconds"] for r in results), 3)
    # One ECS task per mapped try, each of the probe's own task definition and image, all stopped.
    ecs = boto3.client("ecs", endpoint_url=stack.cfg.ecs_url, region_name=stack.cfg.region)
    wheres = [ecs_airflow.xcom("airlaunch_fan_out", run_id, "sleep", "airlaunch", map_index=i) for i in range(20)]
    tasks = ecs.describe_tasks(cluster=STACK_NAME, tasks=[w["task_ref"] for w in wheres])["tasks"]
    assert len({t["taskArn"] for t in tasks}) == 20
    assert all(t["taskDefinitionArn"].split("/")[-1].startswith(f"{STACK_NAME}-ecs_probe:") for t in tasks)
    assert all(t["lastStatus"] == "STOPPED" and t["containers"][0]["exitCode"] == 0 for t in tasks)
    assert all(
        f".dkr.ecr.us-east-1.amazonaws.com/{STACK_NAME}/ecs-probe:" in t["containers"][0]["image"] for t in tasks
    )
