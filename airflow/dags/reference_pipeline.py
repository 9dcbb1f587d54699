"""The 2019 tutorial's pipeline on Airflow 3, every piece of work in its own container.

print_date >> test_docker >> [do_task_one, do_task_two] >> read_xcoms >> [do_task_three, report]

Airflow only schedules: each container task is launched by the airlaunch Lambda and waited
for in the triggerer. test_docker and tasks one and two are even launched from the triggerer
(start_from_trigger); tasks three and report take an XComArg, so a worker launches them.
do_task_two sleeps a random time and returns it; do_task_three gets that value through XCom
(do_task_two.output["sleep_seconds"]) in its params.yaml.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param, task

from airlaunch.providers.airflow.operators.launch import LaunchContainerOperator

with DAG(
    dag_id="airlaunch_reference",
    description="The tutorial pipeline: Airflow schedules, containers do the work, results land in S3.",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["airlaunch", "reference"],
    params={
        "min_seconds": Param(1, type="number", minimum=0, description="task two sleeps at least this long"),
        "max_seconds": Param(5, type="number", minimum=0, description="task two sleeps at most this long"),
        "factor": Param(2, type="number", description="task three multiplies task two's value by this"),
    },
) as dag:
    print_date = BashOperator(task_id="print_date", bash_command="date")

    test_docker = LaunchContainerOperator(
        task_id="test_docker",
        task="diagnostic",
        parameters={"action": "echo", "message": "launcher and container platform answer"},
        include_dag_params=False,
        start_from_trigger=True,
    )

    do_task_one = LaunchContainerOperator(task_id="do_task_one", task="task_one", start_from_trigger=True)
    do_task_two = LaunchContainerOperator(task_id="do_task_two", task="task_two", start_from_trigger=True)

    @task
    def read_xcoms(one: dict, two: dict, ti=None) -> float:
        """The tutorial's read_xcoms: show what tasks one and two left, pass task two's value on."""
        print(f"task one said: {one['message']}")
        print(f"task two slept {two['sleep_seconds']} s")
        for task_id in ("do_task_one", "do_task_two"):
            print(f"{task_id} results: {ti.xcom_pull(task_ids=task_id, key='airlaunch')['uri']}")
        return two["sleep_seconds"]

    value = read_xcoms(do_task_one.output, do_task_two.output)

    do_task_three = LaunchContainerOperator(
        task_id="do_task_three",
        task="task_three",
        parameters={"task_two_value": value, "factor": "{{ params.factor }}"},
        include_dag_params=False,
    )

    report = LaunchContainerOperator(
        task_id="report",
        task="report_notebook",
        parameters={"name": "{{ dag_run.run_id }}", "values": [1, 2, 3], "factor": value},
        include_dag_params=False,
    )

    print_date >> test_docker >> [do_task_one, do_task_two]
    value >> [do_task_three, report]
