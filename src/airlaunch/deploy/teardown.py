"""Before ``make destroy`` deletes the stack: no new work, and no task left running in its cluster.

CloudFormation cannot delete an ECS cluster that still has tasks: ECS refuses with
ClusterContainsTasksException, "You can't delete a cluster that has active tasks"
(https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DeleteCluster.html). The cluster
goes late in a stack's deletion (the rule that watches it depends on it), so the stack would end
DELETE_FAILED with the function and the roles already gone and the tasks still running. So, first:

1. the launcher function gets a reserved concurrency of 0, which throttles every invocation
   ("To prevent a function from triggering, you can set the function's reserved concurrency to
   zero", https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html): no
   launch from Airflow, no start again of a task ECS reports as failed to start (the task
   stopped rule) and no reaper run can start more work. Disabling the two EventBridge rules
   would stop only the last two; the throttle stops all three.
2. the running tasks of the stack's cluster are listed (ListTasks, desired status RUNNING, which
   covers PROVISIONING and PENDING too) and stopped (StopTask with a reason), and their last
   status is awaited until STOPPED, for at most ``wait_seconds``. A launcher invocation already
   under way when the throttle came can still start a task until the function's timeout (60 s
   on AWS), so the cluster is listed again until that has passed with nothing running.

A task that has not stopped in time is named and the deletion goes on: it may still stop before
CloudFormation reaches the cluster, and if not, the stack's failure says so and another
``make destroy`` finishes the job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from airlaunch.deploy.errors import failed

FUNCTION_TIMEOUT_SECONDS = 60  # the launcher's Timeout in infra/template.yaml: how long an invocation runs at most
STOP_WAIT_SECONDS = 300  # Fargate: SIGTERM, SIGKILL after the container's 30 s StopTimeout, then ENI release
POLL_SECONDS = 5.0


def throttle_launcher(lam: Any, function: str) -> bool:
    """Reserved concurrency 0 on the launcher function; False when there is no such function."""
    try:
        lam.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=0)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return False
        raise failed(f"throttling the launcher {function} (reserved concurrency 0)", exc) from exc
    except BotoCoreError as exc:
        raise failed(f"throttling the launcher {function} (reserved concurrency 0)", exc) from exc
    return True


def stop_tasks(
    ecs: Any,
    cluster: str,
    reason: str,
    say: Callable[[str], None],
    *,
    settle_seconds: float = 0.0,
    wait_seconds: float = STOP_WAIT_SECONDS,
    poll_seconds: float = POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Stop every task of ``cluster`` and wait until each is STOPPED; returns the ARNs still not stopped.

    Guarantees, when it returns an empty list: every task this loop saw is STOPPED, and a
    listing made at least ``settle_seconds`` after the call began found no task left to stop.
    It never waits much beyond ``wait_seconds`` (one poll at most).
    """
    started = clock()
    stopping: set[str] = set()
    stopped: set[str] = set()
    announced = False
    while True:
        running = _running(ecs, cluster)
        for arn in running:
            if arn not in stopping:
                _stop(ecs, cluster, arn, reason)
                stopping.add(arn)
        if stopping - stopped and not announced:
            say(f"==> Stopping {len(stopping)} running task(s) in cluster {cluster}; waiting up to "
                f"{wait_seconds:.0f} s until ECS reports them STOPPED")  # fmt: skip
            announced = True
        stopped |= _stopped(ecs, cluster, sorted(stopping - stopped))
        waiting = sorted(stopping - stopped)
        now = clock() - started
        if not waiting and not running and now >= settle_seconds:
            if stopping:
                say(f"==> Stopped {len(stopping)} task(s) in cluster {cluster} in {now:.0f} s")
            return []
        if now >= wait_seconds:
            say(f"==> {len(waiting)} task(s) in cluster {cluster} not STOPPED after {now:.0f} s, going on: "
                f"{', '.join(waiting)}")  # fmt: skip
            return waiting
        sleep(poll_seconds)


def _running(ecs: Any, cluster: str) -> list[str]:
    """Tasks whose desired status is still RUNNING (PROVISIONING, PENDING and RUNNING ones); none without a cluster."""
    arns: list[str] = []
    try:
        for page in ecs.get_paginator("list_tasks").paginate(cluster=cluster, desiredStatus="RUNNING"):
            arns += page.get("taskArns", [])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ClusterNotFoundException":
            return []
        raise failed(f"listing the tasks of cluster {cluster}", exc) from exc
    except BotoCoreError as exc:
        raise failed(f"listing the tasks of cluster {cluster}", exc) from exc
    return arns


def _stop(ecs: Any, cluster: str, arn: str, reason: str) -> None:
    try:
        ecs.stop_task(cluster=cluster, task=arn, reason=reason[:255])  # ECS keeps up to 255 characters
    except (ClientError, BotoCoreError) as exc:
        raise failed(f"stopping task {arn}", exc) from exc


def _stopped(ecs: Any, cluster: str, arns: list[str]) -> set[str]:
    """Those of ``arns`` ECS reports STOPPED (or no longer knows)."""
    done: set[str] = set()
    for start in range(0, len(arns), 100):  # DescribeTasks takes up to 100 tasks
        batch = arns[start : start + 100]
        try:
            answer = ecs.describe_tasks(cluster=cluster, tasks=batch)
        except (ClientError, BotoCoreError) as exc:
            raise failed(f"describing the tasks of cluster {cluster}", exc) from exc
        done |= {t["taskArn"] for t in answer.get("tasks", []) if t.get("lastStatus") == "STOPPED"}
        done |= {f["arn"] for f in answer.get("failures", []) if f.get("reason") == "MISSING"}
    return done
