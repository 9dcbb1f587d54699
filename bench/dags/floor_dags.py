"""The floor DAGs (bench/floor_operator.py): Airflow's own cost for the shapes airlaunch's DAGs have.

bench_floor_triggerer  N mapped EndAtOnceOperators deferred by the scheduler (start_from_trigger), then
                       collect: bench_fan_out_triggerer's shape with nothing launched
bench_floor_workers    the same, each deferring from a worker: bench_fan_out's shape
bench_noop_python      one no-op PythonOperator per run (max_active_runs=1): Airflow's own worker start,
                       printed beside a worker-launched task's launch overhead
"""

from __future__ import annotations

import json
from datetime import datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param, task

from bench.floor_operator import EndAtOnceOperator

START = datetime(2026, 1, 1)
COUNT = Param(4, type="integer", minimum=1, maximum=1000)


def floor_fan_out(dag_id: str, *, start_from_trigger: bool) -> None:
    with DAG(dag_id=dag_id, schedule=None, start_date=START, catchup=False, params={"count": COUNT}):

        @task
        def items(params=None) -> list[dict]:
            return [{"item": i} for i in range(params["count"])]

        ended = EndAtOnceOperator.partial(
            task_id="launch", max_active_tis_per_dag=None, retries=0, start_from_trigger=start_from_trigger
        ).expand(parameters=items())

        @task
        def collect(results: list) -> list[float]:
            """Airflow 3.3 stores a TaskSuccessEvent's XComs JSON-encoded a second time: read them as strings."""
            return [(json.loads(r) if isinstance(r, str) else r)["sleep_seconds"] for r in results]

        collect(ended.output)


floor_fan_out("bench_floor_triggerer", start_from_trigger=True)
floor_fan_out("bench_floor_workers", start_from_trigger=False)


def nothing() -> None:
    """Runs nothing: what is measured is Airflow starting and ending the task on a worker."""


with DAG(dag_id="bench_noop_python", schedule=None, start_date=START, catchup=False, max_active_runs=1):
    PythonOperator(task_id="noop", python_callable=nothing, retries=0)
