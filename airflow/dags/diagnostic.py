"""Check the platform from Airflow: one container task whose behaviour the run's conf picks.

Trigger with conf {"action": "echo"} (default), {"action": "exit", "code": 3, "exit_after": 0},
{"action": "raise", "message": "..."}, {"action": "sleep", "seconds": 60}, or use resources
for `airlaunch report`: {"action": "burn", "cpu_seconds": 2}, {"action": "allocate", "mib": 64}
(past the catalog's 256 MiB the kernel kills it), {"action": "log", "log_mib": 100} (a log burst);
{"action": "secret", "task": "<a catalog task with secrets>"} prints the secrets its entry gives it, which
the task log shows masked. "task" picks the catalog task (default: diagnostic, which has no secrets).
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
        "task": Param("diagnostic", type="string"),
        "action": Param(
            "echo", enum=["echo", "exit", "raise", "sleep", "bad_result", "burn", "allocate", "log", "secret"]
        ),
        "name": Param("", type="string"),
        "code": Param(3, type="integer"),
        "exit_after": Param(0, type="number", minimum=0),
        "seconds": Param(60, type="number", minimum=0),
        "message": Param("ok", type="string"),
        "cpu_seconds": Param(1, type="number", minimum=0),
        "mib": Param(64, type="integer", minimum=1),
        "log_mib": Param(100, type="number", minimum=0),
    },
) as dag:
    LaunchContainerOperator(task_id="diagnostic", task="{{ params.task }}", retries=0)
