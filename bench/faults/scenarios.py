"""The scenarios of the container itself (it exits, is killed, runs out of memory, is stopped from outside)
and of the user's actions (mark failed at each moment, clear, execution_timeout, a re-created run): they
run on both backends, the same code against a ``Suite`` of either (bench/faults/suite.py).
"""

from __future__ import annotations

import time

from bench.faults.observe import (
    ORPHAN_GRACE_SECONDS,
    TERMINAL,
    epoch,
    wait_for,
    wait_terminal,
)
from bench.faults.suite import (
    SWEEP_SECONDS,
    Row,
    Suite,
    scenario,
    sleeper,
)


@scenario("exit", ecs=True)
def container_exit(suite: Suite) -> Row:
    row = suite.row(
        "exit",
        "container exits non-zero (at once, before its trigger runs)",
        "task failed with the exit code and the last log lines",
    )
    return _exit(suite, row, 0)


@scenario("exit-watched", ecs=True)
def container_exit_watched(suite: Suite) -> Row:
    row = suite.row(
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


@scenario("kill", ecs=True)
def docker_kill(suite: Suite) -> Row:
    what = "a running task container" if suite.backend == "docker" else "a running ECS task's container"
    row = suite.row("kill", f"docker kill (SIGKILL) of {what}", "task failed: killed by signal 9")
    run_id, container = sleeper(suite)
    at = time.time()
    suite.stack.docker("kill", container)
    return suite.judge(
        row, "faults_worker", run_id, expect="failed", cause=("killed by signal 9",), fault_at=at, container_fault=True
    )


@scenario("oom", ecs=True)
def out_of_memory(suite: Suite) -> Row:
    # The catalog's 0.5 vCPU and 256 MiB: Docker's limit is 256 MiB; Fargate has no such size and runs 1 GiB.
    limit, mib = ("256 MiB", 1024) if suite.backend == "docker" else ("1 GiB (Fargate's size for 256 MiB)", 4096)
    title = f"OOM: the task allocates {mib / 1024:g} GiB at a {limit} limit"
    row = suite.row("oom", title, "task failed: out of memory, in words")
    run_id = suite.trigger("faults_worker", {"action": "allocate", "mib": mib})
    wait_terminal(suite.api, "faults_worker", run_id)
    died = suite.events.of_run(run_id, "oom") or suite.events.of_run(run_id, "die")
    at = died[0].at if died else None
    row.notes.append("Docker reported an OOM event" if suite.events.of_run(run_id, "oom") else "no OOM event")
    return suite.judge(
        row, "faults_worker", run_id, expect="failed", cause=("out of memory",), fault_at=at, container_fault=True
    )


@scenario("sigterm", ecs=True)
def outside_sigterm(suite: Suite) -> Row:
    how = "docker stop" if suite.backend == "docker" else "ECS StopTask by someone else (the console, the CLI)"
    row = suite.row(
        "sigterm",
        f"{how} (SIGTERM) from outside airlaunch",
        "task failed: stopped by a SIGTERM airlaunch did not send (the platform)",
    )
    run_id, container = sleeper(suite)
    at = time.time()
    if suite.ecs is None:
        suite.stack.docker("stop", container)
    else:
        suite.ecs.ecs.stop_task(cluster=suite.ecs.cluster, task=suite.task_arn(run_id), reason="an operator's stop")
    return suite.judge(
        row, "faults_worker", run_id, expect="failed", cause=("SIGTERM that airlaunch did not send",), fault_at=at,
        container_fault=True,
    )  # fmt: skip


def _mark_failed(suite: Suite, delay: float, dag_id: str = "faults_worker") -> Row:
    where = " (launched from the triggerer)" if dag_id == "faults_trigger" else ""
    row = suite.row(
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


@scenario("mark-failed-0s", ecs=True)
def mark_failed_0(suite: Suite) -> Row:
    return _mark_failed(suite, 0)


@scenario("mark-failed-1s", ecs=True)
def mark_failed_1(suite: Suite) -> Row:
    return _mark_failed(suite, 1)


@scenario("mark-failed-5s", ecs=True)
def mark_failed_5(suite: Suite) -> Row:
    return _mark_failed(suite, 5)


@scenario("mark-failed-in-launch", ecs=True)
def mark_failed_in_launch(suite: Suite) -> Row:
    """Marked failed the moment Docker creates the container: the launch is in flight, the worker has not
    deferred yet, so no trigger exists to stop it."""
    row = suite.row(
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


@scenario("mark-failed-0s-trigger", ecs=True)
def mark_failed_0_trigger(suite: Suite) -> Row:
    return _mark_failed(suite, 0, "faults_trigger")


@scenario("mark-failed-at-defer", ecs=True)
def mark_failed_at_defer(suite: Suite) -> Row:
    """Marked failed the moment the worker deferred, before the triggerer picked the trigger up: no trigger
    will ever stop the container, and the worker has gone; the triggerer's orphan sweep must."""
    row = suite.row(
        "mark-failed-at-defer",
        "mark failed at the moment it defers (before the triggerer picked its trigger up)",
        f"the orphan sweep stops the container within {SWEEP_SECONDS:g} s (AIRLAUNCH_SWEEP_SECONDS); its end "
        "recorded; nothing left running",
    )
    # the sweep runs in a triggerer once a trigger has run there (since its start): one short task first
    warm = suite.trigger("faults_trigger", {"action": "echo"})
    if wait_terminal(suite.api, "faults_trigger", warm)["state"] != "success":
        raise RuntimeError(f"the warm-up task faults_trigger/{warm} did not succeed")
    run_id = suite.trigger("faults_worker", {"action": "sleep", "seconds": 300})
    ti = suite.wait_ti_state("faults_worker", run_id, {"deferred"} | TERMINAL)
    suite.api.set_task_state("faults_worker", run_id, "task", "failed")
    at = time.time()
    row.notes.append(
        f"marked failed {at - (epoch(ti.get('start_date')) or at):.2f} s after the task started (it was {ti['state']})"
    )
    found = suite.assess("faults_worker", run_id, orphan_grace=SWEEP_SECONDS + ORPHAN_GRACE_SECONDS)
    row = suite.judge(row, "faults_worker", run_id, expect="failed", found=found)
    status = suite.status_of(found.task_instances[0], found)
    died = suite.events.of_run(run_id, "die")
    if died:
        row.detection = round(died[-1].at - at, 2)
        row.notes.append(f"its container ended {row.detection:.1f} s after the mark")
    limit = SWEEP_SECONDS + 3.0  # the sweep's interval, then the stop itself (SIGTERM; the runtime exits)
    if row.detection is None or row.detection > limit:
        row.missed.append(f"the container ended {row.detection} s after the mark, over {limit:g} s")
    if status is None:
        row.missed.append("the try has no status.json")
    else:
        row.message = f"status.json: {status.get('error')}"
        if "stopped by airlaunch" not in (status.get("error") or ""):
            row.missed.append("status.json does not say airlaunch stopped it")
    row.outcome = "pass" if not row.missed else "fail"
    return row


@scenario("clear", ecs=True)
def clear_while_running(suite: Suite) -> Row:
    row = suite.row(
        "clear",
        "clear the task while its container runs",
        "try 1's container stopped before try 2's starts; try 2 succeeds with its own result",
    )
    run_id, first = sleeper(suite, seconds=15)
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


@scenario("execution-timeout", ecs=True)
def execution_timeout(suite: Suite) -> Row:
    row = suite.row(
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


@scenario("recreated-run", ecs=True)
def recreated_run(suite: Suite) -> Row:
    row = suite.row(
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
