"""The compose stack (docker-compose.yml) end to end, as a user runs it: `make build up`, the
reference pipeline through Airflow's REST API on the Celery worker, results in LocalStack's S3,
`make compose-down` with volumes (the stack itself: tests/compose/conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime

import pytest

from tests.compose.conftest import HEARTBEAT_TIMEOUT_S, ComposeStack

DAG_ID = "airlaunch_reference"
FROM_TRIGGERER = {"test_docker", "do_task_one", "do_task_two"}  # start_from_trigger in the DAG
CONTAINER_TASKS = ("test_docker", "do_task_one", "do_task_two", "do_task_three", "report")
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
STACK_MEMORY_LIMIT_MIB = 3 * 1024

pytestmark = [pytest.mark.stack, pytest.mark.compose, pytest.mark.timeout(1500)]


def test_every_service_is_healthy_on_the_requested_ports(compose_stack: ComposeStack) -> None:
    services = {"postgres", "redis", "localstack", "launcher", "airflow-worker", *AIRFLOW_SERVICES}
    for service in services:
        [container] = compose_stack.containers(service)
        assert compose_stack.inspect(container, "{{.State.Health.Status}}") == "healthy", service
    [init] = compose_stack.containers("airflow-init")
    assert compose_stack.inspect(init, "{{.State.Status}} {{.State.ExitCode}}") == "exited 0"
    [autoheal] = compose_stack.containers("autoheal")  # restarts what stays unhealthy
    assert compose_stack.inspect(autoheal, "{{.State.Status}}") == "running"
    assert (
        "restarting unhealthy containers of compose project"
        in subprocess.run(["docker", "logs", autoheal], capture_output=True, text=True).stderr
    )
    for service, port, name in (
        ("airflow-apiserver", 8080, "airflow"),
        ("localstack", 4566, "localstack"),
        ("launcher", 9000, "launcher"),
    ):
        [container] = compose_stack.containers(service)
        published = subprocess.run(["docker", "port", container, str(port)], capture_output=True, text=True)
        assert published.stdout.split() == [f"127.0.0.1:{compose_stack.ports[name]}"], service
    health = compose_stack.api().health()
    for part in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        assert health[part]["status"] == "healthy", health


def test_reference_pipeline_runs_on_the_celery_worker_and_leaves_results_in_s3(compose_stack: ComposeStack) -> None:
    api = compose_stack.api()
    api.wait_for_dag(DAG_ID)
    api.unpause(DAG_ID)
    start = time.monotonic()
    run_id = api.trigger(DAG_ID, {"min_seconds": 1, "max_seconds": 2})
    run = api.wait_for_run(DAG_ID, run_id, timeout=600)
    compose_stack.figures["pipeline_s"] = round(time.monotonic() - start, 1)
    instances = {ti["task_id"]: ti for ti in api.task_instances(DAG_ID, run_id)}
    states = {task_id: ti["state"] for task_id, ti in instances.items()}
    assert run["state"] == "success", states
    assert set(states.values()) == {"success"} and len(states) == 7, states

    # The Celery worker ran every task but those launched from the triggerer: its hostname is
    # on each task instance, and its log shows each task received from the broker.
    [worker] = compose_stack.containers("airflow-worker")
    worker_hostname = compose_stack.inspect(worker, "{{.Config.Hostname}}")
    logs = subprocess.run(["docker", "logs", worker], capture_output=True, text=True)
    worker_log = logs.stdout + logs.stderr
    for task_id, ti in instances.items():
        received = f"task_id='{task_id}', dag_id='{DAG_ID}', run_id='{run_id}'" in worker_log
        if task_id in FROM_TRIGGERER:
            assert ti["hostname"] == "" and ti["queued_when"] is None and not received, task_id
        else:
            assert ti["hostname"] == worker_hostname and ti["queue"] == "default" and received, task_id
    for service in AIRFLOW_SERVICES:
        [container] = compose_stack.containers(service)
        assert worker_hostname != compose_stack.inspect(container, "{{.Config.Hostname}}")

    # Each container task left its files in LocalStack's S3, and the values went through XCom.
    s3 = compose_stack.s3()
    run_prefix = f"runs/{DAG_ID}/{run_id}/"
    keys = {obj["Key"] for obj in s3.list_objects_v2(Bucket="airlaunch-results", Prefix=run_prefix)["Contents"]}
    prefixes = {task_id: api.xcom(DAG_ID, run_id, task_id, "airlaunch")["prefix"] for task_id in CONTAINER_TASKS}
    for task_id, prefix in prefixes.items():
        assert prefix.startswith(f"{run_prefix}{task_id}/-1/1-"), prefix  # try 1, with its task-instance id
        assert {f"{prefix}params.yaml", f"{prefix}status.json", f"{prefix}log.txt"} <= keys, task_id
        status = json.loads(s3.get_object(Bucket="airlaunch-results", Key=f"{prefix}status.json")["Body"].read())
        assert status["state"] == "succeeded" and status["exit_code"] == 0, (task_id, status)
    assert f"{prefixes['report']}output.ipynb" in keys
    two_key = f"{prefixes['do_task_two']}result.json"
    two = json.loads(s3.get_object(Bucket="airlaunch-results", Key=two_key)["Body"].read())
    assert 1 <= two["sleep_seconds"] <= 2
    assert api.xcom(DAG_ID, run_id, "do_task_two")["sleep_seconds"] == two["sleep_seconds"]
    assert api.xcom(DAG_ID, run_id, "read_xcoms") == two["sleep_seconds"]

    memory = compose_stack.memory_mib()
    compose_stack.figures["memory_mib"] = {
        name.removeprefix(compose_stack.project): mib for name, mib in memory.items()
    }
    compose_stack.figures["memory_total_mib"] = round(sum(memory.values()))
    assert sum(memory.values()) < STACK_MEMORY_LIMIT_MIB, memory
    compose_stack.figures["run_id"] = run_id


def test_a_celery_worker_killed_mid_launch_leaves_no_container_running(compose_stack: ComposeStack) -> None:
    """The worker dies while its task's launch is in flight (at the container's create event): the
    container still starts, nobody will defer to watch it. Airflow fails the task once its heartbeat
    is missing; the triggerer's orphan sweep (running since the pipeline above deferred there) then
    stops the container, and the runtime records the stop in the try's status.json."""
    api, dag_id = compose_stack.api(), "airlaunch_diagnostic"
    api.wait_for_dag(dag_id)
    api.unpause(dag_id)
    # a stream, not `docker events --since` afterwards: the engine keeps only its last 256 events
    creates = subprocess.Popen(
        ["docker", "events", "--filter", "event=create", "--filter", "label=airlaunch.run_id",
         "--format", '{{index .Actor.Attributes "airlaunch.run_id"}}'],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        run_id = api.trigger(dag_id, {"action": "sleep", "seconds": 600})
        label = ["--filter", f"label=airlaunch.run_id={run_id}"]

        def created() -> list[str]:
            return subprocess.run(["docker", "ps", "-aq", *label], capture_output=True, text=True).stdout.split()

        deadline = time.monotonic() + 180
        while not created():
            assert time.monotonic() < deadline, "no task container created within 180 s"
            time.sleep(0.05)
        [worker] = compose_stack.containers("airflow-worker")
        subprocess.run(["kill", "-9", compose_stack.inspect(worker, "{{.State.Pid}}")], check=True)
        killed = time.time()

        deadline = time.monotonic() + HEARTBEAT_TIMEOUT_S + 180
        while (ti := api.task_instance(dag_id, run_id, "diagnostic"))["state"] not in ("failed", "success"):
            assert time.monotonic() < deadline, f"the task is still {ti['state']} {time.time() - killed:.0f} s after"
            time.sleep(1)
        assert ti["state"] == "failed", ti
        ended = datetime.fromisoformat(ti["end_date"].replace("Z", "+00:00")).timestamp()
        compose_stack.figures["worker_killed_to_task_failed_s"] = round(ended - killed, 1)
        deadline = time.monotonic() + 90  # the sweep's 15 s, the runtime's stop, Docker's 10 s grace
        while subprocess.run(["docker", "ps", "-q", *label], capture_output=True, text=True).stdout.split():
            assert time.monotonic() < deadline, "the killed worker's container still runs 90 s after its task failed"
            time.sleep(0.5)
        compose_stack.figures["task_failed_to_container_gone_s"] = round(time.time() - ended, 1)
    finally:
        creates.terminate()  # also when an assertion above failed: no `docker events` left running
    events = [line for line in creates.communicate()[0].splitlines() if line == run_id]
    assert len(events) == 1, f"one container for the try, not {len(events)}"
    assert compose_stack.inspect(worker, "{{.State.Status}} {{.RestartCount}}") == "running 1"  # restarted

    s3 = compose_stack.s3()
    prefix = f"runs/{dag_id}/{run_id}/diagnostic/-1/1-{ti['id']}/"
    status = json.loads(s3.get_object(Bucket="airlaunch-results", Key=f"{prefix}status.json")["Body"].read())
    assert status["state"] == "failed" and status["reason"] == "stopped", status
    assert "orphan sweep: its Airflow task instance is failed" in status["error"], status["error"]


def test_results_and_airflow_runs_survive_make_down_and_up(compose_stack: ComposeStack) -> None:
    """`make down` keeps the named volumes: the same keys and bytes come back, and Airflow still has the run."""
    run_id = compose_stack.figures["run_id"]
    s3 = compose_stack.s3()
    prefix = f"runs/{DAG_ID}/{run_id}/"

    def snapshot() -> dict[str, bytes]:
        listed = s3.list_objects_v2(Bucket="airlaunch-results", Prefix=prefix)["Contents"]
        return {o["Key"]: s3.get_object(Bucket="airlaunch-results", Key=o["Key"])["Body"].read() for o in listed}

    before = snapshot()
    compose_stack.make("compose-down")  # as `make down` does: the volumes stay
    assert compose_stack.containers() == []
    start = time.monotonic()
    compose_stack.make("up")
    compose_stack.figures["restart_to_healthy_s"] = round(time.monotonic() - start, 1)
    s3 = compose_stack.s3()
    assert snapshot() == before
    runs = compose_stack.api().task_instances(DAG_ID, run_id)
    assert {ti["state"] for ti in runs} == {"success"} and len(runs) == 7
