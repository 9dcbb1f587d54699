"""The fault suite's DAGs (`make faults`, bench/faults): container tasks whose behaviour the run's conf picks.

faults_worker    one diagnostic container, launched from a worker (the operator's default)
faults_trigger   the same, launched from the triggerer (start_from_trigger=True)
faults_timeout   the same from a worker, with an execution_timeout of 8 s
faults_fan       `count` sleeping containers mapped from the triggerer (the random-kill scenario)

The conf takes the diagnostic task's params (tasks/reference/diagnostic.py): action echo, exit,
sleep, allocate, log...
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from airlaunch.providers.airflow.operators.launch import LaunchContainerOperator

PARAMS = {
    "action": Param("echo", type="string"),
    "code": Param(3, type="integer"),
    "exit_after": Param(0, type="number", minimum=0),
    "seconds": Param(10, type="number", minimum=0),
    "message": Param("ok", type="string"),
    "mib": Param(64, type="integer", minimum=1),
    "log_mib": Param(100, type="number", minimum=0),
}


def one_container(dag_id: str, description: str, **operator: Any) -> DAG:
    with DAG(
        dag_id=dag_id,
        description=description,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["airlaunch-faults"],
        params=PARAMS,
    ) as dag:
        LaunchContainerOperator(task_id="task", task="diagnostic", retries=0, **operator)
    return dag


one_container("faults_worker", "one container launched from a worker")
one_container("faults_trigger", "one container launched from the triggerer", start_from_trigger=True)
one_container("faults_timeout", "one container with an 8 s execution_timeout", execution_timeout=timedelta(seconds=8))

with DAG(
    dag_id="faults_fan",
    description="count sleeping containers launched from the triggerer",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["airlaunch-faults"],
    max_active_tasks=2000,
    params={
        "count": Param(200, type="integer", minimum=1, maximum=2000),
        "min_seconds": Param(40, type="number", minimum=0),
        "max_seconds": Param(80, type="number", minimum=0),
    },
) as fan:

    @task
    def sleeps(params: Any = None) -> list[dict[str, Any]]:
        low, high = params["min_seconds"], params["max_seconds"]
        return [{"action": "sleep", "seconds": round(random.uniform(low, high))} for _ in range(params["count"])]

    LaunchContainerOperator.partial(
        task_id="sleep",
        task="diagnostic",
        include_dag_params=False,
        retries=0,
        max_active_tis_per_dag=None,
        start_from_trigger=True,
    ).expand(parameters=sleeps())
