"""Check the platform from Airflow: one container task whose behaviour the run's conf picks.

Trigger with conf {"action": "echo"} (default), {"action": "exit", "code": 3},
{"action": "raise", "message": "..."} or {"action": "sleep", "seconds": 60}.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param

from airlaunch.providers.airflow.operators.launch import LaunchContainerOperator

with DAG(
    dag_id="airlaunch_diagnostic",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["airlaunch"],
    params={
        "action": Param("echo", enum=["echo", "exit", "raise", "sleep", "bad_result"]),
        "code": Param(3, type="integer"),
        "seconds": Param(60, type="number", minimum=0),
        "message": Param("ok", type="string"),
    },
) as dag:
    LaunchContainerOperator(task_id="diagnostic", task="diagnostic", retries=0)
