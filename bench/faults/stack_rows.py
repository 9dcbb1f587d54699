"""The scenarios of the stack's own parts: the Docker engine restarted, LocalStack and the launcher kept down
or killed, Airflow's processes killed or restarted. They run on the Docker backend; on the ECS mode they would
break the same LocalStack, launcher and Airflow and measure the same code (the table's "n/a" says so). Each
fills the ``Row`` its catalogue entry (bench/faults/catalogue.py) made.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from bench.faults.observe import airflow_message, epoch, wait_for
from bench.faults.suite import Row, Suite, sleeper


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


def dockerd_restart(suite: Suite, row: Row) -> Row:
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


def localstack_down(suite: Suite, row: Row, seconds: float, task_seconds: int, down_after: float = 3) -> Row:
    """LocalStack killed ``down_after`` seconds after a ``task_seconds`` task started, kept down ``seconds``:
    the task succeeds with its result, in one container, and its log says S3 was unreachable."""
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
    row = suite.judge(
        row, "faults_worker", run_id, expect="success", fault_at=reference, found=found,
        log=("S3 or the launcher is unreachable",),
    )  # fmt: skip
    row.message = (
        airflow_message(suite.api, "faults_worker", run_id, ti, ("unreachable", "retrying", "failed (")) or row.message
    )
    return _one_container(suite, row, run_id)


def _one_container(suite: Suite, row: Row, run_id: str) -> Row:
    """The run's one try ran in one container, the one its airlaunch XCom names."""
    started = suite.events.started(run_id)
    named = (suite.api.xcom("faults_worker", run_id, "task", "airlaunch") or {}).get("task_ref")
    if started != [named] and not (suite.backend == "ecs" and len(started) == 1):  # on ECS the ref is a task ARN
        row.missed.append(f"Docker started {started}, the task's XCom names {named}")
    return row.conclude()


def launcher_down_at_launch(suite: Suite, row: Row) -> Row:
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
    row = suite.judge(row, "faults_worker", run_id, expect="success", found=found, log=("launcher launch failed",))
    ti = found.task_instances[0]
    row.message = airflow_message(suite.api, "faults_worker", run_id, ti, ("retrying in",)) or row.message
    return _one_container(suite, row, run_id)


def launcher_killed_mid_launch(suite: Suite, row: Row) -> Row:
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
    return _one_container(suite, row, run_id)


def component_killed(suite: Suite, row: Row, component: str, dag_id: str, group: bool = True) -> Row:
    """SIGKILL to an Airflow process (its group, or its main process only) right after the container started:
    the supervisor starts it again; the task succeeds in one container at a time, with no relaunch unless the
    worker died before it deferred."""
    name = component.removeprefix("airflow-")
    # Workers die with the scheduler's process group: one killed before its deferral leaves a task instance
    # Airflow cannot know the end of, so Airflow retries it (its heartbeat timeout). That retry is Airflow's
    # rule; ours is that try 2 starts only once try 1's container has ended, and has results of its own.
    worker_dies = group and name == "scheduler"
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
    return row.conclude()


def triggerer_restarted(suite: Suite, row: Row) -> Row:
    """The triggerer stopped and started again (as a deploy does) while its trigger watches a 12 s container:
    the new triggerer resumes the watch; the task succeeds at try 1 with that container's result."""
    run_id, container = sleeper(suite, seconds=12)
    at = time.time()
    suite.stack.stack.restart("airflow-triggerer")
    row.notes.append(f"the triggerer was back {time.time() - at:.1f} s after its stop began")
    found = suite.assess("faults_worker", run_id)
    host = {"host": container[:12]} if suite.backend == "docker" else {}  # the runtime ran in that container
    row = suite.judge(row, "faults_worker", run_id, expect="success", found=found, status=host)
    if found.task_instances[0]["try_number"] != 1:
        row.missed.append(f"the task needed try {found.task_instances[0]['try_number']}")
    return _one_container(suite, row, run_id)
