"""Fan-out: one container per mapped index (dynamic task mapping), then a sum of their results.

airlaunch_fan_out          launches every container from the triggerer (start_from_trigger):
                           no worker is involved, all indexes start at once
airlaunch_fan_out_workers  launches from workers, so Airflow's parallelism, pools and
                           max_active_tis_per_dag bound how many start at a time
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param, task

from airlaunch.providers.airflow.operators.launch import LaunchContainerOperator


def fan_out(dag_id: str, *, start_from_trigger: bool, description: str) -> DAG:
    with DAG(
        dag_id=dag_id,
        description=description,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["airlaunch"],
        params={
            "count": Param(4, type="integer", minimum=1, maximum=1000, description="how many containers"),
            "task": Param("task_two", type="string", description="the catalog task each one runs"),
            "min_seconds": Param(0, type="number", minimum=0),
            "max_seconds": Param(3, type="number", minimum=0),
        },
    ) as dag:

        @task
        def batches(params=None) -> list[dict]:
            low, high = params["min_seconds"], params["max_seconds"]
            return [{"min_seconds": low, "max_seconds": high, "batch": i} for i in range(params["count"])]

        sleepers = LaunchContainerOperator.partial(
            task_id="sleep",
            task="{{ params.task }}",  # any catalog task that returns sleep_seconds, as task_two does
            include_dag_params=False,
            max_active_tis_per_dag=None,
            start_from_trigger=start_from_trigger,
        ).expand(parameters=batches())

        @task
        def total(results: list[dict]) -> float:
            seconds = [r["sleep_seconds"] for r in results]
            print(f"{len(seconds)} containers slept {sum(seconds):.3f} s in all")
            return round(sum(seconds), 3)

        total(sleepers.output)
    return dag


fan_out("airlaunch_fan_out", start_from_trigger=True, description="N containers launched from the triggerer")
fan_out("airlaunch_fan_out_workers", start_from_trigger=False, description="N containers launched from workers")
