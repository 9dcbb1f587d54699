"""faults_notified_fan: 200 `noop` containers launched from the triggerer, which can end only by their
status notification (tests/airflow/test_two_triggerers.py).

A trigger's safety net reads status.json at its watch's first tick and then once per ``poll_interval`` x
``log_every`` ticks; the launcher is asked about the container every ``describe_every`` ticks. With
``poll_interval`` an hour, after the first tick (right after the launch, before the container's runtime
has written anything) the next read is hours away, so within a test a task ends only when the triggerer
watching it receives the SQS notification of its status.json. The map input is a literal list, so no
worker runs anything: the scheduler defers all 200 tasks to the triggerers at once.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airlaunch.providers.airflow.operators.launch import LaunchContainerOperator

COUNT = 200
SAFETY_NET_SECONDS = 3600.0  # the trigger's poll_interval: its periodic reads are this far apart, and more

with DAG(
    dag_id="faults_notified_fan",
    description=f"{COUNT} noop containers from the triggerer that only a status notification can end",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["airlaunch-faults"],
    max_active_tasks=2000,
):
    LaunchContainerOperator.partial(
        task_id="noop",
        task="noop",
        include_dag_params=False,
        cache=False,  # a container for every try, whatever the result cache holds
        retries=0,
        max_active_tis_per_dag=None,
        start_from_trigger=True,
        poll_interval=SAFETY_NET_SECONDS,
    ).expand(parameters=[{"index": index} for index in range(COUNT)])
