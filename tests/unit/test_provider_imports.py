"""Parsing a DAG file that uses the operator or the sensor imports neither boto3 nor the Amazon provider.

Airflow 3 sends the dag-processor a task callback request for every task a trigger ends, and the
dag-processor parses the task's DAG file again in a new process to run it: what the operator's module
imports is paid once per batch of ended tasks. With the hook and the trigger imported there, a parse of
the fan-out DAG cost 0.76 CPU-s, with them imported where they are used 0.12 (the floor's DAG 0.02):
docs/benchmarks.md, "Where the CPU goes"."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("boto3", "botocore", "aiobotocore", "s3transfer", "airflow.providers.amazon.aws", "airflow.models.xcom")

PROBE = f"""
import json, sys
import airflow.sdk
import airlaunch.providers.airflow.operators.launch
import airlaunch.providers.airflow.sensors.launched_task
print(json.dumps(sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in {HEAVY!r}))))
"""


def test_the_operator_and_sensor_modules_import_no_aws_sdk_and_no_amazon_provider() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_the_trigger_class_path_names_the_trigger() -> None:
    from airlaunch.providers.airflow.operators.launch import TRIGGER_CLASSPATH
    from airlaunch.providers.airflow.triggers.launched_task import LaunchedTaskTrigger

    assert f"{LaunchedTaskTrigger.__module__}.{LaunchedTaskTrigger.__qualname__}" == TRIGGER_CLASSPATH


def test_launching_keeps_the_launch_on_worker_state_of_the_operator() -> None:
    from airlaunch.providers.airflow.operators import launch
    from airlaunch.providers.airflow.triggers import launching

    assert launching.to_worker("why").payload["state"] == launch.LAUNCH_ON_WORKER == "launch_on_worker"
