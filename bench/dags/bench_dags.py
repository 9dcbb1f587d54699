"""The benchmark's DAGs (loaded only by the benchmark's own Airflow, never by the stack's).

bench_single     one container task per run (max_active_runs=1): launch overhead, completion latency
bench_fan_out    N mapped container tasks through airlaunch, then one task that reads all their XComs
bench_python     N mapped PythonOperators that run the container with the docker SDK and wait (the tutorial)
bench_docker     N mapped DockerOperators (apache-airflow-providers-docker), blocking a slot as well
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.docker.operators.docker import DockerOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param, task

from airlaunch.providers.airflow.operators.launch import LaunchContainerOperator

IMAGE = "airlaunch/reference-tasks:latest"
START = datetime(2026, 1, 1)
COUNT = Param(4, type="integer", minimum=1, maximum=1000)


def sleep_command(seconds: float) -> list[str]:
    return ["python", "-c", f"import time; time.sleep({seconds})"]


with DAG(
    dag_id="bench_single",
    schedule=None,
    start_date=START,
    catchup=False,
    max_active_runs=1,
    params={"min_seconds": Param(0, type="number"), "max_seconds": Param(0, type="number")},
):
    LaunchContainerOperator(task_id="launch", task="task_two", retries=0)


with DAG(
    dag_id="bench_fan_out",
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
        task_id="launch", task="task_two", include_dag_params=False, max_active_tis_per_dag=None, retries=0
    ).expand(parameters=items())

    @task
    def collect(results: list[dict]) -> list[float]:
        """Every mapped result as downstream tasks see it (through XCom), in map-index order."""
        return [r["sleep_seconds"] for r in results]

    collect(launched.output)


def run_in_docker(seconds: float) -> None:
    """The tutorial's way: start the container from the task and wait for it, holding the slot."""
    import docker

    docker.from_env().containers.run(IMAGE, entrypoint=sleep_command(seconds), network_mode="host", remove=True)


with DAG(dag_id="bench_python", schedule=None, start_date=START, catchup=False, params={"count": COUNT}):

    @task
    def python_items(params=None) -> list[dict]:
        return [{"seconds": 10} for _ in range(params["count"])]

    PythonOperator.partial(task_id="run", python_callable=run_in_docker, retries=0).expand(op_kwargs=python_items())


with DAG(dag_id="bench_docker", schedule=None, start_date=START, catchup=False, params={"count": COUNT}):

    @task
    def commands(params=None) -> list[list[str]]:
        return [sleep_command(10)[2:] for _ in range(params["count"])]

    DockerOperator.partial(
        task_id="run",
        image=IMAGE,
        entrypoint=["python", "-c"],
        network_mode="host",
        auto_remove="success",
        mount_tmp_dir=False,
        retries=0,
    ).expand(command=commands())
