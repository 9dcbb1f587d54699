"""The blocking ways to run a container from Airflow, for the slot test (their own file, so that
parsing the airlaunch DAGs does not import the docker provider).

bench_python     N mapped PythonOperators that run the container with the docker SDK and wait (the tutorial)
bench_docker     N mapped DockerOperators (apache-airflow-providers-docker), blocking a slot as well
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.docker.operators.docker import DockerOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param, task

IMAGE = "airlaunch/reference-tasks:latest"
START = datetime(2026, 1, 1)
COUNT = Param(4, type="integer", minimum=1, maximum=1000)


def sleep_command(seconds: float) -> list[str]:
    return ["python", "-c", f"import time; time.sleep({seconds})"]


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
