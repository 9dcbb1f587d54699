"""The scenarios of the user's actions: a task marked failed at each moment of its life, cleared while it runs,
over its execution_timeout, its DAG run deleted and made again. They run on both backends, the same code
against a ``Suite`` of either (bench/faults/suite.py); each fills the ``Row`` its catalogue entry made.

A task ended by the user must leave nothing running, and every try that launched a container must say in its
status.json that airlaunch stopped it (reason ``stopped``): ``stopped_by_airlaunch``.
"""

from __future__ import annotations

import time

from bench.faults.observe import ORPHAN_GRACE_SECONDS, TERMINAL, Assessment, epoch, wait_for, wait_terminal
from bench.faults.suite import SWEEP_SECONDS, Row, Suite, sleeper


def stopped_by_airlaunch(row: Row, found: Assessment) -> None:
    """Every try that launched says airlaunch stopped it; the row's message is the last one's words."""
    for item in found.tries:
        if item.status is None:
            row.missed.append(f"{item.prefix} has no status.json")
            continue
        row.message = f"status.json: {item.status.get('error')}"
        if item.status.get("reason") != "stopped" or "stopped by airlaunch" not in (item.status.get("error") or ""):
            row.missed.append(f"{item.prefix}'s status.json does not say airlaunch stopped it: {row.message}")
    if not found.tries:
        row.message = "(marked failed by the user; no container was launched)"


def _mark_noted(suite: Suite, row: Row, run_id: str, at: float) -> None:
    """When the run's container ended after the mark (the row's detection), or that none ran."""
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


def mark_failed(suite: Suite, row: Row, delay: float, dag_id: str = "faults_worker") -> Row:
    """Marked failed ``delay`` seconds after the task instance started (running, or already deferred)."""
    run_id = suite.trigger(dag_id, {"action": "sleep", "seconds": 300})
    ti = suite.wait_ti_state(dag_id, run_id, {"running", "deferred"} | TERMINAL)
    started = epoch(ti.get("start_date")) or time.time()
    time.sleep(max(0.0, started + delay - time.time()))
    at = time.time()
    suite.mark_failed(dag_id, run_id)
    row.notes.append(f"marked failed {at - started:.2f} s after the task started (it was {ti['state']})")
    found = suite.assess(dag_id, run_id)
    row = suite.judge(row, dag_id, run_id, expect="failed", found=found)
    _mark_noted(suite, row, run_id, at)
    stopped_by_airlaunch(row, found)
    return row.conclude()


def mark_failed_watched(suite: Suite, row: Row) -> Row:
    """Marked failed once its trigger watches the container (its output in the task log): the trigger's
    on_kill stops it, and the runtime in that container records the stop."""
    run_id, container = sleeper(suite)
    at = time.time()
    suite.mark_failed("faults_worker", run_id)
    found = suite.assess("faults_worker", run_id)
    host = {"host": container[:12]} if suite.backend == "docker" else {}  # the hostname Docker gave it
    row = suite.judge(row, "faults_worker", run_id, expect="failed", found=found, status=host)
    _mark_noted(suite, row, run_id, at)
    stopped_by_airlaunch(row, found)
    return row.conclude()


def mark_failed_in_launch(suite: Suite, row: Row) -> Row:
    """Marked failed the moment Docker creates the container: the launch is in flight, the worker has not
    deferred yet, so no trigger exists to stop it."""
    run_id = suite.trigger("faults_worker", {"action": "sleep", "seconds": 300})
    created = suite.events.wait(run_id, "create", 180)[0]
    suite.mark_failed("faults_worker", run_id)
    at = time.time()
    row.notes.append(f"marked failed {at - created.at:.2f} s after the create event")
    found = suite.assess("faults_worker", run_id)
    row = suite.judge(row, "faults_worker", run_id, expect="failed", found=found)
    _mark_noted(suite, row, run_id, at)
    if not found.tries:
        row.missed.append("the try has no status.json")
    stopped_by_airlaunch(row, found)
    return row.conclude()


def mark_failed_at_defer(suite: Suite, row: Row) -> Row:
    """Marked failed the moment the worker deferred, before the triggerer picked the trigger up: no trigger
    will ever stop the container, and the worker has gone; the triggerer's orphan sweep must."""
    # the sweep runs in a triggerer once a trigger has run there (since its start): one short task first
    warm = suite.trigger("faults_trigger", {"action": "echo"})
    if wait_terminal(suite.api, "faults_trigger", warm)["state"] != "success":
        raise RuntimeError(f"the warm-up task faults_trigger/{warm} did not succeed")
    run_id = suite.trigger("faults_worker", {"action": "sleep", "seconds": 300})
    ti = suite.wait_ti_state("faults_worker", run_id, {"deferred"} | TERMINAL)
    suite.mark_failed("faults_worker", run_id)
    at = time.time()
    row.notes.append(
        f"marked failed {at - (epoch(ti.get('start_date')) or at):.2f} s after the task started (it was {ti['state']})"
    )
    found = suite.assess("faults_worker", run_id, orphan_grace=SWEEP_SECONDS + ORPHAN_GRACE_SECONDS)
    row = suite.judge(row, "faults_worker", run_id, expect="failed", found=found)
    _mark_noted(suite, row, run_id, at)
    limit = SWEEP_SECONDS + 3.0  # the sweep's interval, then the stop itself (SIGTERM; the runtime exits)
    if row.detection is None or row.detection > limit:
        row.late.append(f"the container ended {row.detection} s after the mark, over {limit:g} s")
    if not found.tries:
        row.missed.append("the try has no status.json")
    stopped_by_airlaunch(row, found)
    return row.conclude()


def clear_while_running(suite: Suite, row: Row) -> Row:
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
    return row.conclude()


def execution_timeout(suite: Suite, row: Row) -> Row:
    run_id = suite.trigger("faults_timeout", {"action": "sleep", "seconds": 120})
    ti = wait_terminal(suite.api, "faults_timeout", run_id)
    limit = (epoch(ti["start_date"]) or 0) + 8
    found = suite.assess("faults_timeout", run_id)
    return suite.judge(
        row, "faults_timeout", run_id, expect="failed", cause=("execution_timeout",), fault_at=limit, found=found
    )


def recreated_run(suite: Suite, row: Row) -> Row:
    run_id = f"faults_recreated_{time.time_ns()}"
    suite.trigger("faults_worker", {"action": "echo", "message": "first run"}, run_id)
    first = wait_terminal(suite.api, "faults_worker", run_id)
    first_result = suite.xcom("faults_worker", run_id)
    suite.api.wait_for_run("faults_worker", run_id, timeout=120)  # a running run cannot be deleted
    suite.stack.stack.wait_executor_done("faults_worker", run_id)  # Airflow's own race (Stack.wait_executor_done)
    suite.api.delete_run("faults_worker", run_id)
    suite.trigger("faults_worker", {"action": "echo", "message": "second run"}, run_id)
    found = suite.assess("faults_worker", run_id)
    row = suite.judge(row, "faults_worker", run_id, expect="success", found=found)
    second_result = suite.xcom("faults_worker", run_id)
    row.notes.append(f"first run: {first_result}; second run: {second_result}")
    if (second_result or {}).get("echo") != "second run":
        row.missed.append(f"the second run's result is {second_result!r}, not its own")
    if len(found.tries) != 2 or first["id"] == found.task_instances[0]["id"]:
        row.missed.append(f"expected two tries with their own prefixes, found {[t.prefix for t in found.tries]}")
    if len(suite.events.started(run_id)) != 2:
        row.missed.append(f"expected a container for each run, Docker started {suite.events.started(run_id)}")
    return row.conclude()
