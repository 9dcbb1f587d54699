"""The scenarios of the stack's own parts: the Docker engine restarted, LocalStack and the launcher kept down
or killed, Airflow's processes killed. They run on the Docker backend; on the ECS mode they would break the
same LocalStack, launcher and Airflow and measure the same code (the table's "n/a" says so).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from bench.faults.observe import (
    airflow_message,
    epoch,
    wait_for,
)
from bench.faults.suite import (
    ENGINE_NOT_ECS,
    SAME_IN_BOTH,
    Row,
    Suite,
    scenario,
    sleeper,
)


def _engine_busy(suite: Suite) -> str:
    """Why the shared engine must not be restarted now ('' when it may be)."""
    others = subprocess.run(
        ["docker", "ps", "--format", '{{.Names}} {{.Label "airlaunch.scope"}}'], capture_output=True, text=True
    ).stdout.splitlines()
    own = {suite.stack.cfg.launcher_container}
    busy = [line for line in others if line.split()[0] not in own and suite.stack.cfg.docker_scope not in line]
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


@scenario("dockerd", ecs=ENGINE_NOT_ECS)
def dockerd_restart(suite: Suite) -> Row:
    row = suite.row("dockerd", "dockerd restarted while a task runs", "task failed: the platform (engine) stopped it")
    busy = _engine_busy(suite)
    if busy:
        row.outcome = "not run"
        row.message = f"shared engine busy: {busy}"
        return row
    run_id, _ = sleeper(suite)
    at = time.time()
    away = restart_dockerd()
    row.notes.append(f"dockerd was away {away:.1f} s (SIGTERM, wait for exit, start)")
    suite.stack.wait_ready("launcher", 120)
    return suite.judge(
        row, "faults_worker", run_id, expect="failed", cause=("SIGTERM",), fault_at=at, container_fault=True
    )


def _localstack_down(suite: Suite, seconds: float, task_seconds: int, down_after: float) -> Row:
    row = suite.row(
        f"localstack-{seconds:g}s",
        f"LocalStack (S3, SQS) killed and kept down {seconds:g} s during a run",
        "task succeeds with its result; the outage is ridden out",
    )
    run_id, _ = sleeper(suite, seconds=task_seconds)
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


@scenario("localstack-10s", ecs=SAME_IN_BOTH.format(what="LocalStack (S3, SQS) and retry path"))
def localstack_10s(suite: Suite) -> Row:
    return _localstack_down(suite, 10, task_seconds=25, down_after=3)


@scenario("localstack-60s", ecs=SAME_IN_BOTH.format(what="LocalStack (S3, SQS) and retry path"))
def localstack_60s(suite: Suite) -> Row:
    # the task ends while S3 is down: its results and status.json wait in the runtime's retries
    return _localstack_down(suite, 60, task_seconds=20, down_after=3)


@scenario("launcher-down", ecs=SAME_IN_BOTH.format(what="launcher endpoint and Airflow's retries"))
def launcher_down_at_launch(suite: Suite) -> Row:
    row = suite.row(
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


@scenario("launcher-killed", ecs=SAME_IN_BOTH.format(what="launcher pool and Airflow's retries"))
def launcher_killed_mid_launch(suite: Suite) -> Row:
    row = suite.row(
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
    row = suite.row(
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


@scenario("triggerer-killed", ecs=SAME_IN_BOTH.format(what="Airflow processes"))
def triggerer_killed(suite: Suite) -> Row:
    return _component_killed(suite, "airflow-triggerer", "faults_trigger")


@scenario("scheduler-crash", ecs=SAME_IN_BOTH.format(what="Airflow processes"))
def scheduler_crash(suite: Suite) -> Row:
    return _component_killed(suite, "airflow-scheduler", "faults_worker", group=False)


@scenario("scheduler-killed", ecs=SAME_IN_BOTH.format(what="Airflow processes"))
def scheduler_killed(suite: Suite) -> Row:
    return _component_killed(suite, "airflow-scheduler", "faults_worker")
