"""The fault scenarios: each breaks the running stack one way, from the outside, and says what came of it.

A scenario triggers a DAG run through Airflow's REST API, injects its fault (a signal, a docker
command, a REST call a user would make), waits for the run to end and for its containers to go,
and fills a ``Row``: whether every goal was met (zero containers left, zero lost results, zero
duplicates, a cause in words, and where the fault is the container's, Airflow knowing within
``DETECTION_GOAL`` seconds), the seconds to detection, and the message Airflow shows.

"Seconds to detection" is measured on the host's clock: from the fault (the signal or command,
the container's own end) to the end_date Airflow records for the task. Where the task is meant
to survive the fault, it is the delay from the later of the fault's end and the container's end
to the task's success: what the fault cost.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3

from airlaunch.airflow_rest import AirflowApiError
from bench.faults.observe import (
    TERMINAL,
    Assessment,
    DockerEvents,
    airflow_message,
    assess,
    containers,
    epoch,
    wait_for,
    wait_terminal,
)
from bench.faults.stack import FaultStack

DETECTION_GOAL = 2.0
FAILURE_PATTERNS = ("AirflowException: container task", "container task ", "execution_timeout", "AirflowException")


@dataclass
class Row:
    name: str
    title: str
    goal: str
    outcome: str = "fail"  # pass, fail, not run, error
    detection: float | None = None
    message: str = ""
    containers_left: int | None = None
    results_lost: int | None = None
    duplicates: int | None = None
    missed: list[str] = field(default_factory=list)  # the goals not met, in words
    notes: list[str] = field(default_factory=list)  # what was measured, in words
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # how long the scenario took

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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
    """The running stack, the observers, and the steps every scenario shares."""

    def __init__(self, stack: FaultStack, settle_seconds: float = 75.0) -> None:
        self.stack = stack
        self.api = stack.api
        self.scope = stack.cfg.docker_scope
        self.bucket = stack.cfg.bucket
        self.s3 = boto3.client("s3", endpoint_url=stack.cfg.localstack_url, region_name=stack.cfg.region)
        self.events = DockerEvents(self.scope)
        self.settle_seconds = settle_seconds

    # -- steps --------------------------------------------------------------------------------------
    def trigger(self, dag_id: str, conf: dict[str, Any], run_id: str | None = None) -> str:
        return self.api.trigger(dag_id, conf, run_id)

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

    def assess(self, dag_id: str, run_id: str, task_id: str = "task") -> Assessment:
        return assess(
            self.api, self.s3, self.bucket, self.events, self.scope, dag_id, run_id, self.settle_seconds, task_id
        )

    def status_of(self, ti: dict[str, Any], found: Assessment) -> dict[str, Any] | None:
        return next((t.status for t in found.tries if t.ti_id == ti["id"]), None)

    def message(self, dag_id: str, run_id: str, ti: dict[str, Any], status: dict[str, Any] | None) -> str:
        """What Airflow shows: the failure's first line in the task log, else the try's recorded cause."""
        if ti["state"] == "success":
            return "success" + (f"; result {self._xcom(dag_id, run_id)}" if ti["state"] == "success" else "")
        line = airflow_message(self.api, dag_id, run_id, ti, FAILURE_PATTERNS)
        if line:
            return line.removeprefix("AirflowException: ")
        if status is not None and status.get("error"):
            return f"(no failure in the task log) status.json: {status['error']}"
        return "(nothing: no failure in the task log and no status.json)"

    def _xcom(self, dag_id: str, run_id: str) -> Any:
        try:
            return self.api.xcom(dag_id, run_id, "task")
        except AirflowApiError:
            return None

    def clean(self) -> None:
        """Between scenarios: the stack healthy again, no container of an earlier scenario running."""
        self.stack.all_ready()
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
    ) -> Row:
        """Fill the row from the run's end, against the goals; ``cause``: words the message must hold."""
        found = found or self.assess(dag_id, run_id)
        ti = next(ti for ti in found.task_instances if ti["task_id"] == "task")
        status = self.status_of(ti, found)
        row.message = self.message(dag_id, run_id, ti, status)
        end = epoch(ti["end_date"])
        if fault_at is not None and end is not None:
            row.detection = round(end - fault_at, 2)
        row.details.update(
            run_id=run_id, ti=_ti_summary(ti), status=_status_summary(status), assessment=found.to_dict()
        )
        if ti["state"] != expect:
            row.missed.append(f"the task ended {ti['state']}, expected {expect}")
        row.count(found)
        missing = [word for word in cause if word not in row.message]
        if missing:
            row.missed.append(f"the message does not say {' / '.join(missing)!r}")
        if container_fault and (row.detection is None or row.detection > DETECTION_GOAL):
            row.missed.append(f"Airflow knew after {row.detection} s, over the {DETECTION_GOAL:g} s goal")
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
        row.outcome = "pass" if not row.missed else "fail"
        return row


def _ti_summary(ti: dict[str, Any]) -> dict[str, Any]:
    keys = ("state", "try_number", "start_date", "end_date", "id")
    return {k: ti.get(k) for k in keys}


def _status_summary(status: dict[str, Any] | None) -> dict[str, Any] | None:
    if status is None:
        return None
    keys = ("state", "reason", "exit_code", "written_by", "error", "started_at", "ended_at")
    return {k: status.get(k) for k in keys}


# -- the scenarios -----------------------------------------------------------------------------------

Scenario = Callable[[Suite], Row]
SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str) -> Callable[[Scenario], Scenario]:
    def register(function: Scenario) -> Scenario:
        SCENARIOS[name] = function
        return function

    return register


def _sleeper(suite: Suite, dag_id: str = "faults_worker", seconds: int = 300) -> tuple[str, str]:
    """A running, watched container task; (run id, container id)."""
    run_id = suite.trigger(dag_id, {"action": "sleep", "seconds": seconds})
    container = suite.started(run_id)
    suite.watched(dag_id, run_id)
    return run_id, container


@scenario("exit")
def container_exit(suite: Suite) -> Row:
    row = Row(
        "exit",
        "container exits non-zero (at once, before its trigger runs)",
        "task failed with the exit code and the last log lines",
    )
    return _exit(suite, row, 0)


@scenario("exit-watched")
def container_exit_watched(suite: Suite) -> Row:
    row = Row(
        "exit-watched",
        "container exits non-zero after 8 s (its trigger watching)",
        "task failed with the exit code and the last log lines",
    )
    return _exit(suite, row, 8)


def _exit(suite: Suite, row: Row, after: float) -> Row:
    run_id = suite.trigger("faults_worker", {"action": "exit", "code": 3, "exit_after": after})
    wait_terminal(suite.api, "faults_worker", run_id)
    found = suite.assess("faults_worker", run_id)
    ti = found.task_instances[0]
    status = suite.status_of(ti, found) or {}
    ended = epoch(status.get("ended_at"))  # the container's own end: when it could be known
    return suite.judge(
        row, "faults_worker", run_id, expect="failed", cause=("exit code 3",), fault_at=ended,
        container_fault=True, found=found,
    )  # fmt: skip


@scenario("kill")
def docker_kill(suite: Suite) -> Row:
    row = Row("kill", "docker kill (SIGKILL) of a running task container", "task failed: killed by signal 9")
    run_id, container = _sleeper(suite)
    at = time.time()
    suite.stack.docker("kill", container)
    return suite.judge(
        row, "faults_worker", run_id, expect="failed", cause=("killed by signal 9",), fault_at=at, container_fault=True
    )


@scenario("oom")
def out_of_memory(suite: Suite) -> Row:
    row = Row("oom", "OOM: the task allocates 1 GiB at a 256 MiB limit", "task failed: out of memory, in words")
    run_id = suite.trigger("faults_worker", {"action": "allocate", "mib": 1024})
    wait_terminal(suite.api, "faults_worker", run_id)
    died = suite.events.of_run(run_id, "oom") or suite.events.of_run(run_id, "die")
    at = died[0].at if died else None
    row.notes.append("Docker reported an OOM event" if suite.events.of_run(run_id, "oom") else "no OOM event")
    return suite.judge(
        row, "faults_worker", run_id, expect="failed", cause=("out of memory",), fault_at=at, container_fault=True
    )


@scenario("sigterm")
def outside_sigterm(suite: Suite) -> Row:
    row = Row(
        "sigterm",
        "docker stop (SIGTERM) from outside airlaunch",
        "task failed: stopped by a SIGTERM airlaunch did not send (the platform)",
    )
    run_id, container = _sleeper(suite)
    at = time.time()
    suite.stack.docker("stop", container)
    return suite.judge(
        row, "faults_worker", run_id, expect="failed", cause=("SIGTERM that airlaunch did not send",), fault_at=at,
        container_fault=True,
    )  # fmt: skip


def _engine_busy(suite: Suite) -> str:
    """Why the shared engine must not be restarted now ('' when it may be)."""
    others = subprocess.run(
        ["docker", "ps", "--format", '{{.Names}} {{.Label "airlaunch.scope"}}'], capture_output=True, text=True
    ).stdout.splitlines()
    own = {suite.stack.cfg.launcher_container}
    busy = [line for line in others if line.split()[0] not in own and suite.scope not in line]
    return f"{len(busy)} other container(s) run on the shared engine: {', '.join(busy[:5])}" if busy else ""


def restart_dockerd() -> float:
    """SIGTERM to dockerd, then dockerd started again as it was (command line, folder, log file); the
    seconds the engine was away. Pid files in FAULTS_DOCKERD_PIDFILES (':'-separated) that named the old
    dockerd are given the new one's pid."""
    pid = int(subprocess.run(["pgrep", "-xo", "dockerd"], capture_output=True, text=True, check=True).stdout)
    proc = Path(f"/proc/{pid}")
    argv = proc.joinpath("cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    cwd = os.readlink(proc / "cwd")
    out = os.readlink(proc / "fd" / "1")
    log_file = out if out.startswith("/") and Path(out).is_file() else "/tmp/airlaunch-faults-dockerd.log"
    started = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), "dockerd to stop", 90)
    with open(log_file, "ab") as log:
        new = subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for(lambda: subprocess.run(["docker", "info"], capture_output=True).returncode == 0, "dockerd to answer", 90)
    for name in filter(None, os.environ.get("FAULTS_DOCKERD_PIDFILES", "").split(":")):
        pid_file = Path(name)
        if pid_file.is_file() and pid_file.read_text().strip() == str(pid):
            pid_file.write_text(f"{new.pid}\n")
    return time.monotonic() - started


@scenario("dockerd")
def dockerd_restart(suite: Suite) -> Row:
    row = Row("dockerd", "dockerd restarted while a task runs", "task failed: the platform (engine) stopped it")
    busy = _engine_busy(suite)
    if busy:
        row.outcome = "not run"
        row.message = f"shared engine busy: {busy}"
        return row
    run_id, _ = _sleeper(suite)
    at = time.time()
    away = restart_dockerd()
    row.notes.append(f"dockerd was away {away:.1f} s (SIGTERM, wait for exit, start)")
    suite.stack.wait_ready("launcher", 120)
    return suite.judge(
        row, "faults_worker", run_id, expect="failed", cause=("SIGTERM",), fault_at=at, container_fault=True
    )


def _localstack_down(suite: Suite, seconds: float, task_seconds: int, down_after: float) -> Row:
    row = Row(
        f"localstack-{seconds:g}s",
        f"LocalStack (S3, SQS) killed and kept down {seconds:g} s during a run",
        "task succeeds with its result; the outage is ridden out",
    )
    run_id, _ = _sleeper(suite, seconds=task_seconds)
    time.sleep(down_after)
    with suite.stack.supervisor_paused():
        suite.stack.kill("localstack", signal.SIGKILL, group=True)
        suite.stack.wait_dead("localstack")
        killed = time.monotonic()
        time.sleep(max(0.0, seconds - (time.monotonic() - killed)))
    back_after = suite.stack.wait_ready("localstack", 180)
    back = time.time()
    row.notes.append(f"LocalStack answered again {back_after:.1f} s after the supervisor was resumed")
    found = suite.assess("faults_worker", run_id)
    ti = found.task_instances[0]
    status = suite.status_of(ti, found) or {}
    reference = max(back, epoch(status.get("ended_at")) or back)
    row = suite.judge(row, "faults_worker", run_id, expect="success", fault_at=reference, found=found)
    row.message = (
        airflow_message(suite.api, "faults_worker", run_id, ti, ("unreachable", "retrying", "failed (")) or row.message
    )
    return row


@scenario("localstack-10s")
def localstack_10s(suite: Suite) -> Row:
    return _localstack_down(suite, 10, task_seconds=25, down_after=3)


@scenario("localstack-60s")
def localstack_60s(suite: Suite) -> Row:
    # the task ends while S3 is down: its results and status.json wait in the runtime's retries
    return _localstack_down(suite, 60, task_seconds=20, down_after=3)


@scenario("launcher-down")
def launcher_down_at_launch(suite: Suite) -> Row:
    row = Row(
        "launcher-down",
        "launcher Lambda down (20 s) when the task launches",
        "the launch is retried; task succeeds, one container",
    )
    with suite.stack.supervisor_paused():
        suite.stack.docker("kill", suite.stack.cfg.launcher_container)
        down = time.time()
        run_id = suite.trigger("faults_worker", {"action": "sleep", "seconds": 5})
        time.sleep(20)
    suite.stack.wait_ready("launcher", 120)
    up = time.time()
    row.notes.append(f"the launcher was down {up - down:.1f} s")
    found = suite.assess("faults_worker", run_id)
    starts = suite.events.of_run(run_id, "start")
    if starts:
        row.notes.append(f"the container started {starts[0].at - up:.1f} s after the launcher was back")
    row = suite.judge(row, "faults_worker", run_id, expect="success", found=found)
    ti = found.task_instances[0]
    row.message = airflow_message(suite.api, "faults_worker", run_id, ti, ("retrying in",)) or row.message
    return row


@scenario("launcher-killed")
def launcher_killed_mid_launch(suite: Suite) -> Row:
    row = Row(
        "launcher-killed",
        "launcher Lambda killed mid-launch (at its container's create event)",
        "the launch is retried; task succeeds, one container",
    )
    run_id = suite.trigger("faults_worker", {"action": "sleep", "seconds": 5})
    created = suite.events.wait(run_id, "create", 180)[0]
    suite.stack.docker("kill", suite.stack.cfg.launcher_container)
    state = suite.stack.docker("inspect", "-f", "{{.State.Status}}", created.container).stdout.strip()
    row.notes.append(f"killed {time.time() - created.at:.2f} s after the create event; the container was {state}")
    suite.stack.wait_ready("launcher", 120)
    found = suite.assess("faults_worker", run_id)
    row = suite.judge(row, "faults_worker", run_id, expect="success", found=found)
    ti = found.task_instances[0]
    row.message = airflow_message(suite.api, "faults_worker", run_id, ti, ("retrying in",)) or row.message
    return row


def _component_killed(suite: Suite, component: str, dag_id: str, group: bool = True) -> Row:
    name = component.removeprefix("airflow-")
    how = "its process group (its workers too)" if group else "its main process only"
    # Workers die with the scheduler's process group: one killed before its deferral leaves a task instance
    # Airflow cannot know the end of, so Airflow retries it (its heartbeat timeout). That retry is Airflow's
    # rule; ours is that try 2 starts only once try 1's container has ended, and has results of its own.
    worker_dies = group and name == "scheduler"
    row = Row(
        f"{name}-killed" if group else f"{name}-crash",
        f"{name} killed (SIGKILL to {how}) right after the launch"
        + (" (launched from the triggerer)" if dag_id == "faults_trigger" else ""),
        "restarted by the supervisor; task succeeds, one container at a time, "
        + ("a retry only if the worker died before deferring" if worker_dies else "no relaunch"),
    )
    run_id = suite.trigger(dag_id, {"action": "sleep", "seconds": 20})
    start = suite.events.wait(run_id, "start", 180)[0]
    old = suite.stack.kill(component, signal.SIGKILL, group=group)
    killed = time.time()
    row.notes.append(f"killed {killed - start.at:.2f} s after the container started")
    wait_for(lambda: suite.stack.pid(component) not in (None, old), f"{name} to be started again", 120, 0.1)
    row.notes.append(f"the supervisor started {name} again {time.time() - killed:.1f} s later")
    found = suite.assess(dag_id, run_id)
    ti = found.task_instances[0]
    status = suite.status_of(ti, found) or {}
    if worker_dies and ti["try_number"] > 1 and not found.duplicates:
        rerun = [detail for detail in found.lost_detail if "ran the work again" in detail]
        found.lost_detail = [detail for detail in found.lost_detail if detail not in rerun]
        found.results_lost -= len(rerun)
        row.notes.append(
            f"the worker died before it deferred: Airflow retried the task (try {ti['try_number']}), which started "
            "after try 1's container had ended, with results of its own (the work ran twice)"
        )
    row = suite.judge(row, dag_id, run_id, expect="success", fault_at=epoch(status.get("ended_at")), found=found)
    if ti["try_number"] != 1 and not worker_dies:
        row.missed.append(f"the task needed try {ti['try_number']}")
        row.outcome = "fail"
    return row


@scenario("triggerer-killed")
def triggerer_killed(suite: Suite) -> Row:
    return _component_killed(suite, "airflow-triggerer", "faults_trigger")


@scenario("scheduler-crash")
def scheduler_crash(suite: Suite) -> Row:
    return _component_killed(suite, "airflow-scheduler", "faults_worker", group=False)


@scenario("scheduler-killed")
def scheduler_killed(suite: Suite) -> Row:
    return _component_killed(suite, "airflow-scheduler", "faults_worker")


def _mark_failed(suite: Suite, delay: float, dag_id: str = "faults_worker") -> Row:
    where = " (launched from the triggerer)" if dag_id == "faults_trigger" else ""
    row = Row(
        f"mark-failed-{delay:g}s" + ("-trigger" if where else ""),
        f"mark failed {delay:g} s after the task starts{where}",
        "container stopped (or never started) and its end recorded; nothing left running",
    )
    run_id = suite.trigger(dag_id, {"action": "sleep", "seconds": 300})
    ti = suite.wait_ti_state(dag_id, run_id, {"running", "deferred"} | TERMINAL)
    started = epoch(ti.get("start_date")) or time.time()
    time.sleep(max(0.0, started + delay - time.time()))
    at = time.time()
    suite.api.set_task_state(dag_id, run_id, "task", "failed")
    row.notes.append(f"marked failed {at - started:.2f} s after the task started (it was {ti['state']})")
    found = suite.assess(dag_id, run_id)
    row = suite.judge(row, dag_id, run_id, expect="failed", found=found)
    status = suite.status_of(found.task_instances[0], found)
    died = suite.events.of_run(run_id, "die")
    if died:
        row.detection = round(died[-1].at - at, 2)
        row.notes.append(f"its container ended {row.detection:.1f} s after the mark")
        if not suite.events.of_run(run_id, "kill") and row.detection > 15:
            row.notes.append("nothing stopped it before then")
    elif suite.events.of_run(run_id, "create"):
        row.notes.append("a container was created but never ran")
    else:
        row.notes.append("no container was ever created (the mark came before the launch)")
    if status is None and found.tries:
        row.missed.append("the try has no status.json")
    if status and status.get("error"):
        row.message = f"status.json: {status['error']}"
    elif not found.tries:
        row.message = "(marked failed by the user; no container was launched)"
    if status is not None and "stopped by airlaunch" not in (status.get("error") or ""):
        row.missed.append("status.json does not say airlaunch stopped it")
    row.outcome = "pass" if not row.missed else "fail"
    return row


@scenario("mark-failed-0s")
def mark_failed_0(suite: Suite) -> Row:
    return _mark_failed(suite, 0)


@scenario("mark-failed-1s")
def mark_failed_1(suite: Suite) -> Row:
    return _mark_failed(suite, 1)


@scenario("mark-failed-5s")
def mark_failed_5(suite: Suite) -> Row:
    return _mark_failed(suite, 5)


@scenario("mark-failed-in-launch")
def mark_failed_in_launch(suite: Suite) -> Row:
    """Marked failed the moment Docker creates the container: the launch is in flight, the worker has not
    deferred yet, so no trigger exists to stop it."""
    row = Row(
        "mark-failed-in-launch",
        "mark failed while the launch is in flight (at its container's create event)",
        "container stopped within seconds and its end recorded; nothing left running",
    )
    run_id = suite.trigger("faults_worker", {"action": "sleep", "seconds": 300})
    created = suite.events.wait(run_id, "create", 180)[0]
    suite.api.set_task_state("faults_worker", run_id, "task", "failed")
    at = time.time()
    row.notes.append(f"marked failed {at - created.at:.2f} s after the create event")
    found = suite.assess("faults_worker", run_id)
    row = suite.judge(row, "faults_worker", run_id, expect="failed", found=found)
    status = suite.status_of(found.task_instances[0], found)
    died = suite.events.of_run(run_id, "die")
    if died:
        row.detection = round(died[-1].at - at, 2)
        row.notes.append(f"its container ended {row.detection:.1f} s after the mark")
    if status is None:
        row.missed.append("the try has no status.json")
    else:
        row.message = f"status.json: {status.get('error')}"
        if "stopped by airlaunch" not in (status.get("error") or ""):
            row.missed.append("status.json does not say airlaunch stopped it")
    row.outcome = "pass" if not row.missed else "fail"
    return row


@scenario("mark-failed-0s-trigger")
def mark_failed_0_trigger(suite: Suite) -> Row:
    return _mark_failed(suite, 0, "faults_trigger")


@scenario("clear")
def clear_while_running(suite: Suite) -> Row:
    row = Row(
        "clear",
        "clear the task while its container runs",
        "try 1's container stopped before try 2's starts; try 2 succeeds with its own result",
    )
    run_id, first = _sleeper(suite, seconds=15)
    at = time.time()
    suite.api.clear_task("faults_worker", run_id, "task")
    wait_for(lambda: len(suite.events.of_run(run_id, "start")) >= 2, "try 2's container", 240, 0.5)
    found = suite.assess("faults_worker", run_id)
    row = suite.judge(row, "faults_worker", run_id, expect="success", found=found)
    ti = found.task_instances[0]
    first_try = next((t for t in found.tries if t.try_number == 1), None)
    died = [e for e in suite.events.of_run(run_id, "die") if e.container == first]
    if died:
        row.detection = round(died[0].at - at, 2)
        row.notes.append(f"try 1's container ended {row.detection:.1f} s after the clear")
    if first_try is None or first_try.status is None:
        row.missed.append("try 1 has no status.json")
    else:
        row.notes.append(f"try 1: {first_try.status.get('error')}")
    if ti["try_number"] < 2:
        row.missed.append(f"the task ended at try {ti['try_number']}")
    row.outcome = "pass" if not row.missed else "fail"
    return row


@scenario("execution-timeout")
def execution_timeout(suite: Suite) -> Row:
    row = Row(
        "execution-timeout",
        "execution_timeout (8 s) passes while the task is deferred",
        "task failed at its timeout, container stopped, in words",
    )
    run_id = suite.trigger("faults_timeout", {"action": "sleep", "seconds": 120})
    ti = wait_terminal(suite.api, "faults_timeout", run_id)
    limit = (epoch(ti["start_date"]) or 0) + 8
    found = suite.assess("faults_timeout", run_id)
    return suite.judge(
        row, "faults_timeout", run_id, expect="failed", cause=("execution_timeout",), fault_at=limit, found=found
    )


@scenario("recreated-run")
def recreated_run(suite: Suite) -> Row:
    row = Row(
        "recreated-run",
        "a DAG run deleted and triggered again with the same run id",
        "the new run gets fresh results, never the old run's",
    )
    run_id = f"faults_recreated_{int(time.time())}"
    suite.trigger("faults_worker", {"action": "echo", "message": "first run"}, run_id)
    first = wait_terminal(suite.api, "faults_worker", run_id)
    first_result = suite._xcom("faults_worker", run_id)
    suite.api.wait_for_run("faults_worker", run_id, timeout=120)  # a running run cannot be deleted
    suite.stack.stack.wait_executor_done("faults_worker", run_id)  # Airflow's own race (Stack.wait_executor_done)
    suite.api.delete_run("faults_worker", run_id)
    suite.trigger("faults_worker", {"action": "echo", "message": "second run"}, run_id)
    found = suite.assess("faults_worker", run_id)
    row = suite.judge(row, "faults_worker", run_id, expect="success", found=found)
    second_result = suite._xcom("faults_worker", run_id)
    row.notes.append(f"first run: {first_result}; second run: {second_result}")
    if (second_result or {}).get("echo") != "second run":
        row.missed.append(f"the second run's result is {second_result!r}, not its own")
    if len(found.tries) != 2 or first["id"] == found.task_instances[0]["id"]:
        row.missed.append(f"expected two tries with their own prefixes, found {[t.prefix for t in found.tries]}")
    row.outcome = "pass" if not row.missed else "fail"
    return row


def _short_latency(suite: Suite) -> tuple[float, str]:
    """A 2 s task launched from the triggerer: seconds from its status.json to Airflow's success."""
    run_id = suite.trigger("faults_trigger", {"action": "sleep", "seconds": 2})
    ti = wait_terminal(suite.api, "faults_trigger", run_id, timeout=180)
    found = suite.assess("faults_trigger", run_id)
    status = suite.status_of(ti, found) or {}
    ended = epoch(status.get("ended_at"))
    if ti["state"] != "success" or ended is None:
        raise RuntimeError(f"the short task {run_id} ended {ti['state']}")
    return (epoch(ti["end_date"]) or 0) - ended, run_id


@scenario("log-burst")
def log_burst(suite: Suite) -> Row:
    row = Row(
        "log-burst",
        "a 100 MB log burst beside a short task",
        "the short task's completion latency unchanged (within +1 s); the burst's task log bounded",
    )
    baseline = sorted(_short_latency(suite)[0] for _ in range(3))
    burst_run = suite.trigger("faults_trigger", {"action": "log", "log_mib": 100})
    suite.started(burst_run)
    part = f"runs/faults_trigger/{burst_run}/task/-1/"

    def parts() -> list[str]:
        listed = suite.s3.list_objects_v2(Bucket=suite.bucket, Prefix=part).get("Contents", [])
        return [o["Key"] for o in listed if "/log/" in o["Key"]]

    wait_for(lambda: len(parts()) >= 4, "the burst's fourth log part", 180, 0.5)
    during: list[float] = []
    while len(during) < 3 and suite.api.task_instance("faults_trigger", burst_run, "task")["state"] not in TERMINAL:
        during.append(_short_latency(suite)[0])
    found = suite.assess("faults_trigger", burst_run)
    row = suite.judge(row, "faults_trigger", burst_run, expect="success", found=found)
    ti = found.task_instances[0]
    log = suite.api.log("faults_trigger", burst_run, "task")
    status = suite.status_of(ti, found) or {}
    row.details.update(baseline=baseline, during=during, airflow_log_bytes=len(log))
    median = baseline[len(baseline) // 2]
    row.detection = round(max(during), 2) if during else None
    row.notes.append(
        f"short task latency without the burst {', '.join(f'{x:.2f}' for x in baseline)} s; during it "
        f"{', '.join(f'{x:.2f}' for x in during)} s; the burst's task log in Airflow is {len(log) / 1e6:.2f} MB, "
        f"its log.txt {_size(suite, status.get('result_keys', {}).get('log')) / 1e6:.0f} MB"
    )
    if not during:
        row.missed.append("the burst ended before a short task could run beside it")
    elif max(during) > median + 1.0:
        row.missed.append(f"the short task took up to {max(during):.2f} s against {median:.2f} s without the burst")
    if len(log) > 5_000_000:
        row.missed.append(f"the burst's task log in Airflow is {len(log) / 1e6:.1f} MB")
    row.message = f"the burst's log in Airflow: {len(log) / 1e6:.2f} MB; " + (
        next((line for line in log.splitlines() if "bytes of output not shown" in line), "no truncation marker")
    )
    row.outcome = "pass" if not row.missed else "fail"
    return row


@scenario("fan-out-kills")
def fan_out_with_kills(suite: Suite, count: int = 200, kills: int = 20) -> Row:
    row = Row(
        "fan-out-kills",
        f"{count} concurrent tasks, {kills} of them killed at random",
        "the killed fail (killed by signal 9) within 2 s, the others succeed with their results",
    )
    # Long enough that all of them run at once: starting 200 takes about 5 minutes on 2 cores, and the
    # kills wait for that start-up to settle (up to 3 minutes): detection is measured beside 200
    # running tasks, not inside their start-up's queue for the CPU.
    run_id = suite.trigger("faults_fan", {"count": count, "min_seconds": 540, "max_seconds": 570})
    wait_for(lambda: len(suite.events.of_run(run_id, "start")) >= count, f"{count} containers to start", 900, 1.0)
    settled = time.monotonic() + 180
    while (busy := cpu_busy(5.0)) > 0.8 and time.monotonic() < settled:
        pass
    concurrent = len(containers(suite.scope, run_id, running_only=True))
    row.notes.append(
        f"{concurrent} running at once at the first kill; the CPU {busy:.0%} busy over the 5 s before it, "
        f"load average {os.getloadavg()[0]:.0f}"
    )
    killed: dict[str, float] = {}
    rng = random.Random(12)
    while len(killed) < kills:
        running = [c for c in containers(suite.scope, run_id, running_only=True) if c not in killed]
        if not running:
            break
        victim = rng.choice(running)
        killed[victim] = time.time()
        suite.stack.docker("kill", victim)
        time.sleep(rng.uniform(0.2, 1.5))
    found = suite.assess("faults_fan", run_id, task_id="sleep")
    starts = {e.container: e for e in suite.events.of_run(run_id, "start")}
    index_of = {c: int(e.labels.get("airlaunch.map_index", "-1")) for c, e in starts.items()}
    tis = {ti["map_index"]: ti for ti in found.task_instances}
    detections, wrong, too_late, recorded = [], [], [], []
    for container, at in killed.items():
        ti = tis.get(index_of.get(container, -2))
        if ti is None:
            wrong.append(f"{container[:12]}: no task instance")
            continue
        status = suite.status_of(ti, found) or {}
        ended = epoch(status.get("ended_at"))
        if status.get("state") == "succeeded" and ended is not None and ended <= at:
            too_late.append(ti["map_index"])  # it had finished (status.json written) when the kill came
            continue
        if ti["state"] != "failed":
            wrong.append(f"[{ti['map_index']}] killed but {ti['state']}")
        detections.append((epoch(ti["end_date"]) or at) - at)
        written = next((t.status_written for t in found.tries if t.ti_id == ti["id"]), None)
        if written is not None:
            recorded.append(written - at)
    if too_late:
        row.notes.append(f"killed after their status.json (so rightly succeeded): {too_late}")
    others = [ti for index, ti in tis.items() if index not in {index_of.get(c) for c in killed} - set(too_late)]
    not_ok = [f"[{ti['map_index']}] {ti['state']}" for ti in others if ti["state"] != "success"]
    detections.sort()
    if detections:
        row.detection = round(detections[-1], 2)
        p50 = detections[len(detections) // 2]
        row.notes.append(f"detection of the {len(detections)} kills: p50 {p50:.2f} s, max {detections[-1]:.2f} s")
    if recorded:
        recorded.sort()
        row.notes.append(
            f"the launcher's status.json was in S3 (LastModified, whole seconds) {recorded[len(recorded) // 2]:.0f} s "
            f"after the kill at p50, {recorded[-1]:.0f} s at most"
        )
    sample = next(iter(killed), None)
    if sample is not None and index_of.get(sample) in tis:
        ti = tis[index_of[sample]]
        row.message = airflow_message(suite.api, "faults_fan", run_id, ti, FAILURE_PATTERNS).removeprefix(
            "AirflowException: "
        )
    row.notes.append(
        f"{len(starts)} containers started for {len(tis)} tasks; {len(others) - len(not_ok)} of {len(others)} "
        f"not killed succeeded"
    )
    row.details.update(run_id=run_id, detections=detections, assessment=found.to_dict(), wrong=wrong, not_ok=not_ok)
    if wrong:
        row.missed.append(f"killed tasks not failed: {', '.join(wrong[:5])}")
    if not_ok:
        row.missed.append(f"tasks not killed that did not succeed: {', '.join(not_ok[:5])}")
    row.count(found, most=5)
    if not detections or detections[-1] > DETECTION_GOAL:
        row.missed.append(f"detection up to {row.detection} s, over the {DETECTION_GOAL:g} s goal")
    if "killed by signal 9" not in row.message:
        row.missed.append("the message does not say 'killed by signal 9'")
    row.outcome = "pass" if not row.missed else "fail"
    return row


def cpu_busy(seconds: float) -> float:
    """The share of the machine's CPU time spent busy over the next ``seconds`` (/proc/stat)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle, iowait
        return sum(fields) - idle, sum(fields)

    busy, total = sample()
    time.sleep(seconds)
    busy_after, total_after = sample()
    return (busy_after - busy) / max(1, total_after - total)


def _size(suite: Suite, key: str | None) -> int:
    if not key:
        return 0
    size: int = suite.s3.head_object(Bucket=suite.bucket, Key=key)["ContentLength"]
    return size


def run_one(suite: Suite, name: str) -> Row:
    """Run a scenario; a scenario that breaks is an 'error' row with what broke."""
    started = time.monotonic()
    try:
        suite.clean()
        row = SCENARIOS[name](suite)
    except Exception as exc:  # one broken scenario must not hide the others
        row = Row(name, name, "", outcome="error", message=f"{type(exc).__name__}: {exc}")
    row.seconds = round(time.monotonic() - started, 1)
    return row
