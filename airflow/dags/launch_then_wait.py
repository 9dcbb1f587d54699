"""Launch and wait as two Airflow tasks: the operator only launches, a deferrable sensor waits.

Useful when something should happen between the two (or when the wait needs its own
timeout, retries or pool). The sensor forwards the result keys and values like the operator.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from airlaunch.providers.airflow.operators.launch import LaunchContainerOperator
from airlaunch.providers.airflow.sensors.launched_task import LaunchedTaskSensor

with DAG(
    dag_id="airlaunch_launch_then_wait",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["airlaunch"],
) as dag:
    launch = LaunchContainerOperator(
        task_id="launch", task="task_two", parameters={"max_seconds": 2}, wait_for_completion=False
    )
    wait = LaunchedTaskSensor(task_id="wait", handle=launch.output, execution_timeout=timedelta(minutes=10))

    @task
    def use(result: dict) -> float:
        print(f"task two slept {result['sleep_seconds']} s")
        return result["sleep_seconds"] * 10

    use(wait.output)
