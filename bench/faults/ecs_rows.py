"""The fault rows only ECS has: made through ECS's API or the emulator's control API, judged through Airflow.

Each row runs the suite's diagnostic task from a worker (``faults_worker``) on the stack's ECS mode and
makes one of the faults AWS makes that Docker has no equivalent of:

* an image that cannot be pulled: a task definition revision naming a tag that is gone, as a deploy
  whose image was deleted would leave (ECS: TaskFailedToStart, CannotPullContainerError);
* a Fargate Spot interruption (the warning, SIGTERM, then the stop: SpotInterruption);
* no Fargate capacity just now, and the account's concurrent vCPU quota full (RunTask answers
  ``failures[]`` and starts nothing);
* RunTask throttled (ThrottlingException "Rate exceeded").

The goals are the suite's (zero left, zero lost, zero duplicates, a cause in words); each row also says
how many RunTask calls the emulator answered and how, from its call counter. Whatever a row changes in
the account (a task definition revision, a limit, an injected failure) it puts back, pass or fail.
"""

from __future__ import annotations

import time
from typing import Any

from bench.faults.account import DIAGNOSTIC_FAMILY
from bench.faults.observe import epoch, wait_terminal
from bench.faults.suite import Row, Suite


def _account(suite: Suite) -> Any:
    if suite.ecs is None:
        raise RuntimeError("an ECS row on the Docker backend")
    return suite.ecs


def _run_task_note(suite: Suite, row: Row, since: float) -> dict[str, int]:
    calls = _account(suite).run_task_calls(since)
    row.notes.append("RunTask calls answered: " + ", ".join(f"{n} {outcome}" for outcome, n in calls.items() if n))
    row.details["run_task_calls"] = calls
    return calls


def _launch_wait(suite: Suite, row: Row, run_id: str, ti: dict[str, Any]) -> None:
    """How long the launch took: the task instance's start to its container's start (the fault's cost)."""
    starts = suite.events.of_run(run_id, "start")
    began = epoch(ti.get("start_date"))
    if starts and began is not None:
        row.notes.append(f"its container started {starts[0].at - began:.1f} s after the task instance started")


def cannot_pull(suite: Suite, row: Row) -> Row:
    account = _account(suite)
    since = time.time()
    good = account.image_of(DIAGNOSTIC_FAMILY)
    account.register_image(DIAGNOSTIC_FAMILY, good.rsplit(":", 1)[0] + ":gone")
    try:
        run_id = suite.trigger("faults_worker", {"action": "echo"})
        wait_terminal(suite.api, "faults_worker", run_id)
    finally:
        account.register_image(DIAGNOSTIC_FAMILY, good)
    found = suite.assess("faults_worker", run_id)
    tasks = account.settled_tasks(run_id)
    last_stop = max((t["stoppedAt"].timestamp() for t in tasks if t.get("stoppedAt")), default=None)
    row = suite.judge(
        row, "faults_worker", run_id, expect="failed", cause=("CannotPullContainerError",), fault_at=last_stop,
        found=found,
    )  # fmt: skip
    _run_task_note(suite, row, since)
    codes = [t.get("stopCode") for t in tasks]
    if codes != ["TaskFailedToStart"] * 3:
        row.missed.append(f"expected three starts that failed to start, ECS has {codes}")
    return row.conclude()


def spot_interruption(suite: Suite, row: Row) -> Row:
    account = _account(suite)
    run_id = suite.trigger("faults_worker", {"action": "sleep", "seconds": 300})
    arn = suite.task_arn(run_id)
    suite.watched("faults_worker", run_id)
    at = time.time()
    account.control("spot-interruption", {"task": arn, "graceSeconds": 5})
    # The runtime has the SIGTERM without airlaunch's stop.json; what it says covers a Spot interruption among
    # the platform's stops, and ECS's stop code (checked below) says which it was.
    row = suite.judge(
        row, "faults_worker", run_id, expect="failed", cause=("SIGTERM that airlaunch did not send", "Spot"),
        fault_at=at, container_fault=True,
    )  # fmt: skip
    codes = [t.get("stopCode") for t in account.settled_tasks(run_id)]
    if codes != ["SpotInterruption"]:
        row.missed.append(f"ECS's stop codes are {codes}, not SpotInterruption")
    return row.conclude()


def _refused_launches(suite: Suite, row: Row, reason: str) -> Row:
    """The next three RunTasks start nothing (``reason``): the launch is retried and the task succeeds."""
    account = _account(suite)
    since = time.time()
    account.control("fail-run-task", {"count": 3, "reason": reason})
    try:
        run_id = suite.trigger("faults_worker", {"action": "echo", "message": reason})
        ti = wait_terminal(suite.api, "faults_worker", run_id)
    finally:
        account.control("fail-run-task", {"count": 0, "reason": reason})
    row = suite.judge(row, "faults_worker", run_id, expect="success")
    _launch_wait(suite, row, run_id, ti)
    if _run_task_note(suite, row, since).get("failures", 0) < 3:
        row.missed.append("the emulator answered fewer than three RunTasks with failures[]")
    return row.conclude()


def no_capacity(suite: Suite, row: Row) -> Row:
    return _refused_launches(suite, row, "capacity")


def full_vcpu_quota(suite: Suite, row: Row) -> Row:
    """The account's quota lowered to one task's 0.5 vCPU; a 30 s task holds it while a second launches. The
    second launch rides the quota out: the launcher's retries (20 s a call), then Airflow's hook retries."""
    account = _account(suite)
    before = account.control("limits")["vcpu_quota"]
    since = time.time()
    account.control("limits", {"vcpu_quota": 0.5})
    try:
        holder = suite.trigger("faults_worker", {"action": "sleep", "seconds": 30})
        suite.events.wait(holder, "start", 180)
        run_id = suite.trigger("faults_worker", {"action": "echo", "message": "after the quota"})
        ti = wait_terminal(suite.api, "faults_worker", run_id, timeout=400)
        held = wait_terminal(suite.api, "faults_worker", holder, timeout=120)
    finally:
        account.control("limits", {"vcpu_quota": before})
    row = suite.judge(row, "faults_worker", run_id, expect="success")
    _launch_wait(suite, row, run_id, ti)
    row.notes.append(f"the task holding the quota ended {held['state']}")
    if _run_task_note(suite, row, since).get("failures", 0) < 1:
        row.missed.append("no RunTask was refused for the quota: the fault did not happen")
    if held["state"] != "success":
        row.missed.append(f"the task holding the quota ended {held['state']}")
    return row.conclude()


def run_task_throttled(suite: Suite, row: Row) -> Row:
    account = _account(suite)
    since = time.time()
    account.control("throttle", {"action": "RunTask", "count": 10})
    try:
        run_id = suite.trigger("faults_worker", {"action": "echo", "message": "throttled"})
        ti = wait_terminal(suite.api, "faults_worker", run_id)
    finally:
        account.control("throttle", {"action": "RunTask", "count": 0})
    row = suite.judge(row, "faults_worker", run_id, expect="success")
    _launch_wait(suite, row, run_id, ti)
    if _run_task_note(suite, row, since).get("throttled", 0) < 10:
        row.missed.append("the emulator throttled fewer than ten RunTasks")
    return row.conclude()
