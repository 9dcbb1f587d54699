"""The benchmark's DAGs (loaded only by the benchmark's own Airflow, never by the stack's).

bench_single     one container task per run (max_active_runs=1): launch overhead, completion latency
bench_single_triggerer  the same, launched from the triggerer (start_from_trigger)
bench_fan_out    N mapped container tasks launched from workers, then one task that reads all their XComs
bench_fan_out_triggerer  the same, launched from the triggerer (start_from_trigger)
(The blocking ways for the slot test are in blocking_dags.py.)
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param, task

from airlaunch.providers.airflow.operators.launch import LaunchContainerOperator

START = datetime(2026, 1, 1)
COUNT = Param(4, type="integer", minimum=1, maximum=1000)


for single_dag_id, from_trigger in (("bench_single", False), ("bench_single_triggerer", True)):
    with DAG(
        dag_id=single_dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        params={"min_seconds": Param(0, type="number"), "max_seconds": Param(0, type="number")},
    ):
        LaunchContainerOperator(task_id="launch", task="task_two", retries=0, start_from_trigger=from_trigger)


def bench_fan_out(dag_id: str, *, start_from_trigger: bool) -> None:
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        params={"count": COUNT, "min_seconds": Param(0, type="number"), "max_seconds": Param(1, type="number")},
    ):

        @task
        def items(params=None) -> list[dict]:
            low, high = params["min_seconds"], params["max_seconds"]
            return [{"min_seconds": low, "max_seconds": high, "item": i} for i in range(params["count"])]

        launched = LaunchContainerOperator.partial(
            task_id="launch",
            task="task_two",
            include_dag_params=False,
            max_active_tis_per_dag=None,
            retries=0,
            start_from_trigger=start_from_trigger,
        ).expand(parameters=items())

        @task
        def collect(results: list[dict]) -> list[float]:
            """Every mapped result as downstream tasks see it (through XCom), in map-index order."""
            return [r["sleep_seconds"] for r in results]

        collect(launched.output)


bench_fan_out("bench_fan_out", start_from_trigger=False)
bench_fan_out("bench_fan_out_triggerer", start_from_trigger=True)
