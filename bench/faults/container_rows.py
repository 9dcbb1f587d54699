"""The scenarios of the container itself: it exits, is killed, runs out of memory, is stopped from outside.
They run on both backends, the same code against a ``Suite`` of either (bench/faults/suite.py); each fills the
``Row`` its catalogue entry (bench/faults/catalogue.py) made.
"""

from __future__ import annotations

import time

from bench.faults.observe import epoch, wait_terminal
from bench.faults.suite import Row, Suite, sleeper


def container_exit(suite: Suite, row: Row, after: float = 0) -> Row:
    """The task exits with code 3 ``after`` seconds: the task fails with the code, its message and its log's
    last lines (the diagnostic task's first line, ``diagnostic action=exit``, travels with the error)."""
    run_id = suite.trigger("faults_worker", {"action": "exit", "code": 3, "exit_after": after})
    wait_terminal(suite.api, "faults_worker", run_id)
    found = suite.assess("faults_worker", run_id)
    status = suite.status_of(found.task_instances[0], found) or {}
    ended = epoch(status.get("ended_at"))  # the container's own end: when it could be known
    return suite.judge(
        row, "faults_worker", run_id, expect="failed", fault_at=ended, container_fault=True, found=found,
        cause=("container task failed (reason: exit, exit code 3): exit code 3: exiting with code 3",),
        status={"state": "failed", "reason": "exit", "exit_code": 3}, log=("diagnostic action=exit",),
    )  # fmt: skip


def docker_kill(suite: Suite, row: Row) -> Row:
    """SIGKILL leaves the runtime no moment to write status.json: the launcher writes it on its behalf."""
    run_id, container = sleeper(suite)
    at = time.time()
    suite.stack.docker("kill", container)
    return suite.judge(
        row, "faults_worker", run_id, expect="failed", fault_at=at, container_fault=True,
        cause=("killed by signal 9 (SIGKILL)",),
        status={"state": "failed", "reason": "killed", "exit_code": 137, "written_by": "launcher"},
    )  # fmt: skip


def out_of_memory(suite: Suite, row: Row) -> Row:
    # The catalog's 0.5 vCPU and 256 MiB: Docker's limit is 256 MiB; Fargate has no such size and runs 1 GiB.
    limit, mib = (256, 1024) if suite.backend == "docker" else (1024, 4096)
    run_id = suite.trigger("faults_worker", {"action": "allocate", "mib": mib})
    wait_terminal(suite.api, "faults_worker", run_id)
    died = suite.events.of_run(run_id, "oom") or suite.events.of_run(run_id, "die")
    at = died[0].at if died else None
    row.notes.append("Docker reported an OOM event" if suite.events.of_run(run_id, "oom") else "no OOM event")
    return suite.judge(
        row, "faults_worker", run_id, expect="failed", fault_at=at, container_fault=True,
        cause=(f"out of memory: the kernel killed the task at its {limit} MiB memory limit",),
        status={"state": "failed", "reason": "oom", "exit_code": 137},
    )  # fmt: skip


def outside_sigterm(suite: Suite, row: Row) -> Row:
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
