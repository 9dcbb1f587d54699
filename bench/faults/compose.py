"""The Celery worker's fault, on the compose stack (docker-compose.yml).

The embedded stack runs Airflow's LocalExecutor, whose workers are the scheduler's children: a
Celery worker is a container of its own that can die alone, with its task between the launch and
the deferral. ``ComposeProject`` brings up a compose project of its own (``airlaunch-faults``:
Airflow on 8380, LocalStack on 4866, the launcher on 9300) with Airflow's heartbeat timeout at
``HEARTBEAT_TIMEOUT_S`` (its default, 300 s, would make the scenario wait five minutes), and takes
it down with its volumes afterwards.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

import boto3

from airlaunch.airflow_rest import AirflowRest
from bench.faults.events import ContainerScope, DockerEvents
from bench.faults.observe import assess, epoch, wait_terminal
from bench.faults.stack import REPO
from bench.faults.suite import Row, Suite

PROJECT = "airlaunch-faults"
PORTS = {"AIRFLOW_PORT": "8380", "LOCALSTACK_PORT": "4866", "LAUNCHER_PORT": "9300"}
HEARTBEAT_TIMEOUT_S = 45
SWEEP_SECONDS = 15.0  # the triggerer's orphan sweep (AIRLAUNCH_SWEEP_SECONDS' default)
BUCKET = "airlaunch-results"
DAG_ID, TASK_ID = "airlaunch_diagnostic", "diagnostic"


class ComposeProject:
    def __init__(self) -> None:
        self.auth_dir = REPO / ".stack-faults" / "compose-airflow"
        self.env = {**os.environ, **PORTS, "AIRFLOW_TASK_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S)}
        # the launcher's AIRLAUNCH_DOCKER_SCOPE (the project's network)
        self.scope = ContainerScope("docker", f"airlaunch.scope=compose-{PROJECT}")

    def make(self, *targets: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["make", "--no-print-directory", *targets, f"COMPOSE_PROJECT={PROJECT}"]
        result = subprocess.run(
            [*command, f"AIRFLOW_AUTH_DIR={self.auth_dir}"], cwd=REPO, env=self.env, capture_output=True, text=True
        )
        if check and result.returncode:
            raise RuntimeError(f"make {' '.join(targets)} failed: {(result.stdout + result.stderr)[-2000:]}")
        return result

    def container(self, service: str) -> str:
        filters = [f"label=com.docker.compose.project={PROJECT}", f"label=com.docker.compose.service={service}"]
        command = ["docker", "ps", "-q", *(arg for f in filters for arg in ("--filter", f))]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()[0]

    def api(self) -> AirflowRest:
        return AirflowRest.for_home(f"http://127.0.0.1:{PORTS['AIRFLOW_PORT']}", self.auth_dir)

    def s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{PORTS['LOCALSTACK_PORT']}",
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )


def celery_worker_killed(suite: Suite, row: Row) -> Row:
    project = ComposeProject()
    start = time.monotonic()
    project.make("build", "up")
    row.notes.append(f"compose project {PROJECT} built and healthy in {time.monotonic() - start:.0f} s")
    events = DockerEvents(project.scope)
    try:
        api, s3 = project.api(), project.s3()
        api.wait_for_dag(DAG_ID)
        api.unpause(DAG_ID)
        # the sweep starts in a triggerer with its first trigger: a task that deferred there before
        warm = api.trigger(DAG_ID, {"action": "echo"})
        if wait_terminal(api, DAG_ID, warm, task_id=TASK_ID)["state"] != "success":
            raise RuntimeError(f"the warm-up task {DAG_ID}/{warm} did not succeed")
        run_id = api.trigger(DAG_ID, {"action": "sleep", "seconds": 600})
        created = events.wait(run_id, "create", 180)[0]
        worker = project.container("airflow-worker")
        pid = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Pid}}", worker], capture_output=True, text=True, check=True
        ).stdout.strip()
        os.kill(int(pid), 9)
        killed = time.time()
        row.notes.append(f"the worker was killed {killed - created.at:.2f} s after the container's create event")
        found = assess(
            api, s3, BUCKET, events, project.scope, DAG_ID, run_id, SWEEP_SECONDS + 75, TASK_ID,
            orphan_grace=SWEEP_SECONDS + 12,
        )  # fmt: skip
        [ti] = found.task_instances
        status = next((t.status for t in found.tries if t.ti_id == ti["id"]), None) or {}
        ended = epoch(ti["end_date"])
        row.detection = round(ended - killed, 2) if ended else None
        row.message = f"status.json: {status.get('error') or status.get('state')}"
        row.details.update(run_id=run_id, ti=ti.get("state"), status=status, assessment=found.to_dict())
        died = [e.at for e in events.of_run(run_id, "die")]
        if died and ended:
            row.notes.append(f"the container ended {died[0] - ended:.1f} s after Airflow failed the task")
        restarts = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Status}} {{.RestartCount}}", worker], capture_output=True, text=True
        ).stdout.strip()
        row.notes.append(f"the worker container after the kill: {restarts} (restart count)")
        if ti["state"] != "failed":
            row.missed.append(f"the task ended {ti['state']}, expected failed")
        if "orphan sweep: its Airflow task instance is failed" not in row.message:
            row.missed.append("status.json does not say the orphan sweep stopped it because its task failed")
        row.count(found)
        if not restarts.startswith("running"):
            row.missed.append(f"the worker did not come back: {restarts}")
    finally:
        events.close()
        project.make("compose-down", "COMPOSE_DOWN_ARGS=-v", check=False)
    return row.conclude()
