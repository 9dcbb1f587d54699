"""The fault suite's core: a ``Row`` per scenario and backend, and the ``Suite`` every scenario runs against
(the catalogue of scenarios is bench/faults/catalogue.py).

A scenario triggers a DAG run through Airflow's REST API, injects its fault (a signal, a docker
command, a REST call a user would make, a call to the emulated AWS account), waits for the run to end
and for its containers to go, and fills a ``Row``: whether every goal was met (zero containers left,
zero lost results, zero duplicates, a cause in words: ``Row.missed``), whether its goals of time were met
(where the fault is the container's, Airflow knowing within ``DETECTION_GOAL`` seconds: ``Row.late``, the
benchmark's alone, never a test's), the seconds to detection, and the message Airflow shows.

The scenarios that run on both backends are the same code against a ``Suite`` of either. On the ECS mode
the stack's launcher runs the ECS backend against the emulated account, whose Fargate tasks are Docker
containers too (labelled with their ECS tags, found by the emulator's label instead of ``airlaunch.scope``),
and ``Suite.assess`` also counts from ECS's own API: one ECS task per try that ran, every task STOPPED.

"Seconds to detection" is measured on the host's clock: from the fault (the signal or command,
the container's own end) to the end_date Airflow records for the task. Where the task is meant
to survive the fault, it is the delay from the later of the fault's end and the container's end
to the task's success: what the fault cost.

The scenarios, by what breaks: container_rows.py (the container), user_rows.py (the user's actions),
stack_rows.py (the stack's own parts), load_rows.py (under load), compose.py (a Celery worker), ecs_rows.py
(ECS's own).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import boto3
from tenacity import retry, retry_if_exception, stop_after_attempt

from airlaunch.airflow_rest import AirflowApiError
from bench.faults.account import EcsAccount, tasks_by_try
from bench.faults.events import DockerEvents, containers
from bench.faults.observe import ORPHAN_GRACE_SECONDS, Assessment, airflow_message, assess, epoch, wait_for
from bench.faults.stack import FaultStack

BACKENDS = ("docker", "ecs")
DETECTION_GOAL = 2.0
SWEEP_SECONDS = float(os.environ.get("AIRLAUNCH_SWEEP_SECONDS") or 15)  # the triggerer's orphan sweep
FAILURE_PATTERNS = ("AirflowException: container task", "container task ", "execution_timeout", "AirflowException")


@dataclass
class Row:
    name: str
    title: str
    goal: str
    outcome: str = "fail"  # pass, fail, not run, error
    backend: str = "docker"  # the launcher's: docker, or ecs (the stack's ECS mode)
    detection: float | None = None
    message: str = ""
    containers_left: int | None = None
    results_lost: int | None = None
    duplicates: int | None = None
    missed: list[str] = field(default_factory=list)  # the goals not met, in words
    late: list[str] = field(default_factory=list)  # the goals of time not met (the benchmark's, not the tests')
    notes: list[str] = field(default_factory=list)  # what was measured, in words
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # how long the scenario took

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def conclude(self) -> Row:
        """The outcome from the goals: a pass when every goal, of behaviour and of time, was met."""
        self.outcome = "pass" if not self.missed and not self.late else "fail"
        return self

    def count(self, found: Assessment, most: int | None = None) -> None:
        """Take the assessment's counts, and say each goal it missed (with ``most`` of its details)."""
        self.containers_left, self.results_lost, self.duplicates = (
            found.containers_left,
            found.results_lost,
            found.duplicates,
        )
        if found.containers_left:
            self.missed.append(f"{found.containers_left} container(s) left: {', '.join(found.left_detail[:most])}")
        if found.results_lost:
            self.missed.append(f"results lost: {'; '.join(found.lost_detail[:most])}")
        if found.duplicates:
            self.missed.append(f"duplicates: {'; '.join(found.duplicate_detail[:most])}")


class Suite:
    """The running stack with one backend, the observers, and the steps every scenario shares."""

    def __init__(self, stack: FaultStack, settle_seconds: float = 75.0, backend: str = "docker") -> None:
        self.stack = stack
        self.backend = backend
        self.api = stack.api
        self.scope = stack.container_scope()
        self.bucket = stack.cfg.bucket
        self.s3 = boto3.client("s3", endpoint_url=stack.cfg.localstack_url, region_name=stack.cfg.region)
        self.ecs = EcsAccount(stack.cfg) if backend == "ecs" else None
        self.events = DockerEvents(self.scope)
        self.settle_seconds = settle_seconds

    def task_arn(self, run_id: str) -> str:
        """The ECS task of the run's first container (the emulator labels each container with its task)."""
        start = self.events.wait(run_id, "start", 180)[0]
        return start.labels["airlaunch.ecs-emulator.task-arn"]

    # -- steps --------------------------------------------------------------------------------------
    def trigger(self, dag_id: str, conf: dict[str, Any], run_id: str | None = None) -> str:
        return self.api.trigger(dag_id, conf, run_id)

    @retry(
        retry=retry_if_exception(lambda exc: "Database error" in str(exc)),
        stop=stop_after_attempt(3),
        reraise=True,
    )
    def mark_failed(self, dag_id: str, run_id: str) -> None:
        """The task marked failed, as a user does it. The stack's Airflow keeps its metadata in SQLite, which
        takes one writer at a time: a write that waited out its lock (HTTP 500 "Database error", after five
        seconds) is made again, as the user would."""
        self.api.set_task_state(dag_id, run_id, "task", "failed")

    def started(self, run_id: str, timeout: float = 180) -> str:
        """The run's first container, once Docker started it."""
        return self.events.wait(run_id, "start", timeout)[0].container

    def watched(self, dag_id: str, run_id: str, timeout: float = 180) -> None:
        """Wait until the task's log shows its container's output: the trigger watches it."""
        wait_for(
            lambda: "[container] " in self.api.log(dag_id, run_id, "task"),
            "the trigger to show the container's output",
            timeout,
            pause=0.5,
        )

    def wait_ti_state(self, dag_id: str, run_id: str, states: set[str], timeout: float = 180) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            ti = self.api.task_instance(dag_id, run_id, "task")
            return ti if ti["state"] in states else None

        found: dict[str, Any] = wait_for(reached, f"task of {run_id} to be {'/'.join(sorted(states))}", timeout, 0.05)
        return found

    def assess(
        self, dag_id: str, run_id: str, task_id: str = "task", orphan_grace: float = ORPHAN_GRACE_SECONDS
    ) -> Assessment:
        found = assess(
            self.api, self.s3, self.bucket, self.events, self.scope, dag_id, run_id, self.settle_seconds, task_id,
            orphan_grace,
        )  # fmt: skip
        if self.ecs is not None:
            self._count_ecs_tasks(found, run_id)
        return found

    def _count_ecs_tasks(self, found: Assessment, run_id: str) -> None:
        """ECS's own books, beside Docker's: more than one task per try that ran is a duplicate (tasks that
        failed to start are started again by design, up to three), a task not STOPPED is left behind."""
        assert self.ecs is not None
        tasks = self.ecs.settled_tasks(run_id)
        codes = sorted({str(t.get("stopCode") or t["lastStatus"]) for t in tasks})
        tries = tasks_by_try(tasks)
        found.notes.append(f"ECS: {len(tasks)} task(s) for {len(tries)} tr(ies), stop codes {', '.join(codes) or '-'}")
        for (map_index, try_number, _), group in tries.items():
            ran = [t for t in group if t.get("stopCode") != "TaskFailedToStart"]
            if len(ran) > 1:
                found.duplicates += len(ran) - 1
                found.duplicate_detail.append(f"try {try_number} of map index {map_index}: {len(ran)} ECS tasks ran")
        for task in tasks:
            if task["lastStatus"] != "STOPPED":
                found.containers_left += 1
                found.left_detail.append(f"ECS task {task['taskArn'].rsplit('/', 1)[-1]} still {task['lastStatus']}")

    def status_of(self, ti: dict[str, Any], found: Assessment) -> dict[str, Any] | None:
        return next((t.status for t in found.tries if t.ti_id == ti["id"]), None)

    def message(self, dag_id: str, run_id: str, ti: dict[str, Any], status: dict[str, Any] | None) -> str:
        """What Airflow shows: the failure's first line in the task log, else the try's recorded cause."""
        if ti["state"] == "success":
            return "success" + (f"; result {self.xcom(dag_id, run_id)}" if ti["state"] == "success" else "")
        line = airflow_message(self.api, dag_id, run_id, ti, FAILURE_PATTERNS)
        if line:
            return line.removeprefix("AirflowException: ")
        if status is not None and status.get("error"):
            return f"(no failure in the task log) status.json: {status['error']}"
        return "(nothing: no failure in the task log and no status.json)"

    def xcom(self, dag_id: str, run_id: str) -> Any:
        try:
            return self.api.xcom(dag_id, run_id, "task")
        except AirflowApiError:
            return None

    def clean(self) -> None:
        """Between scenarios: the stack healthy again, no container of an earlier scenario running; in the ECS
        mode, the events of the emulated account running now (a restarted one is a new account)."""
        self.stack.all_ready()
        scope = self.stack.container_scope()
        if scope != self.scope:
            self.events.close()
            self.scope, self.events = scope, DockerEvents(scope)
        wait_for(lambda: not containers(self.scope, running_only=True), "no task container running", 120, 1.0)

    # -- judging ------------------------------------------------------------------------------------
    def judge(
        self,
        row: Row,
        dag_id: str,
        run_id: str,
        *,
        expect: str,
        cause: tuple[str, ...] = (),
        fault_at: float | None = None,
        container_fault: bool = False,
        found: Assessment | None = None,
        status: dict[str, Any] | None = None,
        log: tuple[str, ...] = (),
    ) -> Row:
        """Fill the row from the run's end, against the goals; ``cause``: words the message must hold;
        ``status``: fields the last try's status.json must have; ``log``: words the task log must hold."""
        found = found or self.assess(dag_id, run_id)
        ti = next(ti for ti in found.task_instances if ti["task_id"] == "task")
        expected_status, status = status, self.status_of(ti, found)
        row.message = self.message(dag_id, run_id, ti, status)
        end = epoch(ti["end_date"])
        if fault_at is not None and end is not None:
            row.detection = round(end - fault_at, 2)
        row.details.update(
            run_id=run_id, ti=_ti_summary(ti), status=_status_summary(status), assessment=found.to_dict()
        )
        if ti["state"] != expect:
            row.missed.append(f"the task ended {ti['state']}, expected {expect}")
        row.notes += found.notes
        row.count(found)
        missing = [word for word in cause if word not in row.message]
        if missing:
            row.missed.append(f"the message does not say {' / '.join(missing)!r}")
        for key, value in (expected_status or {}).items():
            if status is None or status.get(key) != value:
                row.missed.append(f"status.json's {key} is {(status or {}).get(key)!r}, not {value!r}")
        task_log = self.api.log(dag_id, run_id, "task", ti["try_number"] or 1) if log else ""
        row.missed += [f"the task log does not say {words!r}" for words in log if words not in task_log]
        if container_fault and (row.detection is None or row.detection > DETECTION_GOAL):
            row.late.append(f"Airflow knew after {row.detection} s, over the {DETECTION_GOAL:g} s goal")
        if status is not None:
            row.notes.append(
                f"status.json: {status['state']}, reason {status.get('reason')}, exit code {status.get('exit_code')}, "
                f"written by {status.get('written_by') or 'the runtime'}"
            )
            recorded = epoch(status.get("ended_at"))
            if fault_at is not None and recorded is not None and end is not None and recorded >= fault_at - 0.01:
                row.notes.append(
                    f"status.json was written {recorded - fault_at:.2f} s after the fault, and Airflow ended the "
                    f"task {end - recorded:.2f} s after that"
                )
                row.details["recorded_after"] = round(recorded - fault_at, 2)
        if found.last_container_gone_after is not None and found.tries:
            row.notes.append(f"its containers were gone {found.last_container_gone_after:.1f} s after the task ended")
        return row.conclude()


def _ti_summary(ti: dict[str, Any]) -> dict[str, Any]:
    keys = ("state", "try_number", "start_date", "end_date", "id")
    return {k: ti.get(k) for k in keys}


def _status_summary(status: dict[str, Any] | None) -> dict[str, Any] | None:
    if status is None:
        return None
    keys = ("state", "reason", "exit_code", "written_by", "error", "started_at", "ended_at")
    return {k: status.get(k) for k in keys}


def sleeper(suite: Suite, dag_id: str = "faults_worker", seconds: int = 300) -> tuple[str, str]:
    """A running, watched container task; (run id, container id)."""
    run_id = suite.trigger(dag_id, {"action": "sleep", "seconds": seconds})
    container = suite.started(run_id)
    suite.watched(dag_id, run_id)
    return run_id, container
