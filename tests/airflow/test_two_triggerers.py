"""Two triggerers (Airflow's HA mode) sharing 200 tasks launched from the triggerer: no status notification
is lost, and every try starts exactly one container.

Every triggerer runs one long poll on the one status queue; a triggerer that receives the notification of a
key another triggerer watches hands it back (airlaunch.providers.airflow.triggers.status_notifications). If a
notification were lost (deleted by the wrong triggerer, or never handed back), its task could still end by
its trigger's safety net, which reads status.json now and then. The DAG of this test
(bench/faults/dags/notified_fan.py) gives its triggers a ``poll_interval`` of an hour: a trigger reads
status.json once when its watch begins, right after the launch, and not again for hours, so within this
test's deadline a task ends only through its own notification, received by the triggerer that watches it.
A lost notification leaves its task deferred, and the test fails at its deadline naming the tasks.

What it asserts, from sources independent of each other: the run and all 200 task instances succeeded,
each with the XCom and status.json of its own try (prefix, container); Docker's event stream, opened before
the run, saw exactly one container start for each (ti id, try number) of the run, and that container is the
one the task's XCom names; and Airflow's REST data showed triggers of the run held by each of the two
triggerers (a deferred task instance's ``trigger.triggerer_id``), so the two did share the tasks.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from airlaunch.airflow_rest import AirflowRest
from airlaunch.protocol import RunIdentity
from airlaunch.protocol.layout import identity_of_prefix
from airlaunch.stack import Stack
from airlaunch.stack.airflow_processes import AirflowHealth, AirflowProcess
from airlaunch.stack.sqlite_triggers import keep_live_assignments
from bench.faults.events import ContainerScope, DockerEvents
from tests.airflow.conftest import status_at

pytestmark = [pytest.mark.stack, pytest.mark.airflow]

DAG_ID = "faults_notified_fan"  # bench/faults/dags/notified_fan.py
TASK_ID = "noop"
COUNT = 200
SAFETY_NET_SECONDS = 3600.0  # the DAG's poll_interval
RUN_DEADLINE_SECONDS = 360.0  # far below the safety net's next read: only notifications end tasks before it
TRIGGERER_START_SECONDS = 180.0
STACKS_TRIGGERER = "airflow-triggerer"
CAPACITY = 130  # triggers a triggerer of this test holds at most: each of the two holds 70 or more of the 200


def _environment_of(pid: int) -> dict[str, str]:
    """A running process's environment, as it was started with."""
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(pair.decode().split("=", 1) for pair in pairs if b"=" in pair)


def _wait_for_new_job(api: AirflowRest, process: AirflowProcess, known: set[int]) -> int:
    """The job id of a triggerer that is not in ``known`` and heartbeats: ``process``'s, once it has started."""
    deadline = time.monotonic() + TRIGGERER_START_SECONDS
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited while starting; see {process.process.log}")
        new = [int(job["id"]) for job in api.alive_jobs("TriggererJob") if int(job["id"]) not in known]
        if new:
            return new[0]
        time.sleep(1)
    raise RuntimeError(f"{process.name} had no live TriggererJob within {TRIGGERER_START_SECONDS:.0f} s")


@pytest.fixture(scope="module")
def triggerer_jobs(stack: Stack, airflow_api: AirflowRest) -> Iterator[dict[int, str]]:
    """Two triggerers for this module's duration, each able to hold fewer triggers than the test's 200.

    Airflow gives a triggerer unassigned triggers up to its ``[triggerer] capacity`` (1,000 by default), 50
    a loop, and a busy triggerer loops many times a second: the stack's triggerer alone would take all 200
    tasks deferred at once. So the stack's triggerer makes way (stopped through the supervisor) and two
    triggerers start with its own environment (the stack's Airflow configuration and database) and a capacity
    of ``CAPACITY``: neither can hold all the tasks, so both run some. Each heartbeats before the test goes
    on; at the end both are stopped (pid files removed; their logs stay: airflow-triggerer-2.log, -3.log)
    and the stack's triggerer runs again, heartbeating. Yields {job id: process name}.

    On SQLite, two triggerers could both take the same trigger, and the loser's cancel would stop the winner's
    container (airlaunch.stack.sqlite_triggers): the stack's database refuses such a move, as PostgreSQL's row
    locks do."""
    stack.up(only=[STACKS_TRIGGERER])
    keep_live_assignments(stack.cfg.airflow_home / "airflow.db")  # as the stack's migrate does (a stack started before)
    stacks = stack.components[STACKS_TRIGGERER]
    assert isinstance(stacks, AirflowProcess) and stacks.process.pid is not None
    environment = {**_environment_of(stacks.process.pid), "AIRFLOW__TRIGGERER__CAPACITY": str(CAPACITY)}
    ours = [
        AirflowProcess("triggerer", stack.cfg, AirflowHealth(stack.cfg), lambda: environment, instance)
        for instance in (2, 3)
    ]
    for process in ours:
        process.stop()  # one an interrupted session left running
    stack.down(only=[STACKS_TRIGGERER])
    jobs: dict[int, str] = {}
    try:
        known = {int(job["id"]) for job in airflow_api.alive_jobs("TriggererJob")}  # the stopped ones, for a while
        for process in ours:
            process.start()
        for process in ours:
            job = _wait_for_new_job(airflow_api, process, known | set(jobs))
            jobs[job] = process.name
        yield jobs
    finally:
        for process in ours:
            process.stop()
        known = {int(job["id"]) for job in airflow_api.alive_jobs("TriggererJob")}
        stack.up(only=[STACKS_TRIGGERER])
        _wait_for_new_job(airflow_api, stacks, known)


def _messages_left(stack: Stack) -> int:
    """Messages in the status queue nobody claimed (yet): for a while (``UNCLAIMED_SECONDS``) after a run,
    those of tasks that ended without needing their notification."""
    sqs = boto3.client("sqs", endpoint_url=stack.cfg.localstack_url, region_name=stack.cfg.region)
    url = sqs.get_queue_url(QueueName=stack.cfg.status_queue)["QueueUrl"]
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def _run_and_watch_triggerers(api: AirflowRest, run_id: str) -> tuple[dict[str, Any], dict[str, int]]:
    """Wait until the run ends; (the run, the triggerer job seen holding each task instance's trigger).
    At the deadline the run is marked failed (its containers stopped) and the test fails naming what was left
    deferred, and by which triggerer: a task whose notification was lost."""
    holders: dict[str, int] = {}
    deadline = time.monotonic() + RUN_DEADLINE_SECONDS
    while True:
        instances = api.task_instances(DAG_ID, run_id)
        for ti in instances:
            triggerer = (ti.get("trigger") or {}).get("triggerer_id")
            if triggerer is not None:
                holders.setdefault(ti["id"], int(triggerer))
        run = api.dag_run(DAG_ID, run_id)
        if run["state"] in ("success", "failed"):
            return run, holders
        if time.monotonic() > deadline:
            waiting = {
                ti["map_index"]: (ti["state"], (ti.get("trigger") or {}).get("triggerer_id"))
                for ti in instances
                if ti["state"] != "success"
            }
            api.set_run_state(DAG_ID, run_id, "failed")
            pytest.fail(
                f"run {run_id} not over after {RUN_DEADLINE_SECONDS:.0f} s; {len(waiting)} tasks not ended "
                f"(map index: (state, triggerer job)): {waiting}"
            )
        time.sleep(2)


def test_two_triggerers_share_200_tasks_lose_no_notification_and_start_each_try_once(
    stack: Stack, airflow_api: AirflowRest, s3: Any, triggerer_jobs: dict[int, str]
) -> None:
    """Every task ends only by its own status notification (the safety net's next read is an hour away, see
    the module's docstring), so the run's success proves that none of the 200 notifications was lost."""
    assert SAFETY_NET_SECONDS > RUN_DEADLINE_SECONDS
    airflow_api.wait_for_dag(DAG_ID)
    airflow_api.unpause(DAG_ID)
    started = time.monotonic()
    events = DockerEvents(ContainerScope("docker", f"airlaunch.scope={stack.cfg.docker_scope}"))
    try:
        run_id = airflow_api.trigger(DAG_ID)
        run, holders = _run_and_watch_triggerers(airflow_api, run_id)
    finally:
        events.close()
    took = time.monotonic() - started
    unclaimed = _messages_left(stack)

    instances = [ti for ti in airflow_api.task_instances(DAG_ID, run_id) if ti["task_id"] == TASK_ID]
    states = Counter(ti["state"] for ti in instances)
    assert run["state"] == "success" and states == {"success": COUNT}, states
    assert sorted(ti["map_index"] for ti in instances) == list(range(COUNT))

    # Each task's XCom names its own try's prefix and container, whose status.json says it succeeded.
    container_of: dict[tuple[str, str], str] = {}
    for ti in instances:
        where = airflow_api.xcom(DAG_ID, run_id, TASK_ID, "airlaunch", map_index=ti["map_index"])
        try_key = (ti["id"], str(ti["try_number"]))
        own = RunIdentity(DAG_ID, run_id, TASK_ID, ti["map_index"], ti["try_number"], ti["id"])
        assert identity_of_prefix(where["prefix"]) == own, (where["prefix"], own)
        status = status_at(s3, where)
        ran = (status["state"], status["written_by"], status["host"])
        assert ran == ("succeeded", "runtime", where["task_ref"][:12]), (own, status)
        container_of[try_key] = where["task_ref"]

    # Docker started exactly one container for each try, the one its XCom names.
    starts = events.of_run(run_id, "start")
    per_try = Counter((e.labels.get("airlaunch.ti_id", ""), e.labels.get("airlaunch.try_number", "")) for e in starts)
    assert set(per_try) == set(container_of), set(per_try) ^ set(container_of)
    assert [key for key, n in per_try.items() if n != 1] == []
    for event in starts:
        try_key = (event.labels["airlaunch.ti_id"], event.labels["airlaunch.try_number"])
        assert event.container.startswith(container_of[try_key]), (try_key, event.container, container_of[try_key])

    # Each of the two triggerers held some of the run's triggers, and no other triggerer held any.
    shares = Counter(triggerer_jobs.get(job, f"job {job}") for job in holders.values())
    assert sorted(shares) == sorted(triggerer_jobs.values()), shares
    print(
        f"\n{COUNT} tasks on two triggerers in {took:.0f} s; triggers seen held: {dict(shares)} "
        f"({len(holders)} of {COUNT} seen deferred); {len(starts)} container starts; {unclaimed} notifications "
        "left unclaimed in the queue at the end (tasks whose watch's first read found status.json already)"
    )
