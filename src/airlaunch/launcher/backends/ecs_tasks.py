"""ECS's task records read as the launcher needs them: which try a task is, where its files are, and how
it ended, in words.

A task's try comes from its tags (``airlaunch.identity``) or the environment it was started with (its
container overrides), never from anything else an event might carry; the times are ECS's own, as boto3
gives them (datetimes) or as ECS's events spell them (ISO 8601 strings). How a stopped task ended follows
ECS's stopCode and the essential container's reason and exit code ("Amazon ECS stopped tasks error
codes"). Everything here is a pure function of what ECS answered: no call to AWS.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from airlaunch.launcher.backends.base import BackendState, LiveTask, killed_by
from airlaunch.protocol import (
    ENV_BUCKET,
    ENV_CACHE_CLAIM,
    ENV_EXECUTION_ID,
    ENV_PREFIX,
    ENV_TIMEOUT_SECONDS,
    ResultLayout,
    RunIdentity,
    StopReason,
    TaskState,
    digest_of,
)

PENDING = {"PROVISIONING", "PENDING", "ACTIVATING"}
RUNNING = {"RUNNING"}
# ECS tag values: letters, digits, spaces and + - = . _ : / @ (Airflow run ids may also hold '~').
_TAG_VALUE_BAD = re.compile(r"[^\w\s+\-=.:/@]")
# EcsTimes' fields -> the task's keys
ECS_TIME_KEYS = {
    "created_at": "createdAt",
    "pull_started_at": "pullStartedAt",
    "pull_stopped_at": "pullStoppedAt",
    "started_at": "startedAt",
    "stopping_at": "stoppingAt",
    "stopped_at": "stoppedAt",
}
# stopCode -> how the task ended (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/stopped-task-errors.html)
_STOP_CODES = {
    "TaskFailedToStart": StopReason.PLATFORM,
    "SpotInterruption": StopReason.PLATFORM,
    "TerminationNotice": StopReason.PLATFORM,
    "ServiceSchedulerInitiated": StopReason.PLATFORM,
    "UserInitiated": StopReason.STOPPED,
    "EssentialContainerExited": StopReason.LOST,
}


def started_by(identity: RunIdentity) -> str:
    """RunTask's ``startedBy`` for every try of a task instance: ``al-`` + the slot digest (35 of ECS's 36)."""
    return f"al-{identity.slot}"


def is_airlaunch_task(task: dict[str, Any]) -> bool:
    return str(task.get("startedBy", "")).startswith("al-")


def ecs_tags(labels: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": _TAG_VALUE_BAD.sub("_", v)[:256]} for k, v in labels.items()]


def iso_time(value: Any) -> str | None:
    """An ECS time (a datetime from boto3, or an ISO string as in ECS's events) as ISO 8601."""
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def epoch(value: Any) -> float | None:
    """An ECS time as epoch seconds: boto3 gives datetimes, ECS's events ISO-8601 strings ("...Z")."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def environment(task: dict[str, Any]) -> dict[str, str]:
    """The environment a task (or a task state event) was started with, from its container overrides."""
    return {
        item["name"]: item["value"]
        for override in (task.get("overrides") or {}).get("containerOverrides") or []
        for item in override.get("environment") or []
    }


def live_task(task: dict[str, Any]) -> LiveTask:
    """A described task as the launcher tracks it: its try, its files, its start and timeout."""
    env = environment(task)
    tags = {tag["key"]: tag["value"] for tag in task.get("tags") or []}
    timeout = env.get(ENV_TIMEOUT_SECONDS, "")
    return LiveTask(
        task_ref=task["taskArn"],
        digest=tags.get("airlaunch.identity") or digest_of(env.get(ENV_EXECUTION_ID, "")),
        layout=ResultLayout(bucket=env.get(ENV_BUCKET, ""), prefix=env.get(ENV_PREFIX, "")),
        started_at=epoch(task.get("startedAt")),
        timeout_seconds=int(timeout) if timeout.isdigit() else None,
        cache=env.get(ENV_CACHE_CLAIM, ""),
    )


def how_it_ended(task: dict[str, Any], container: dict[str, Any] | None) -> BackendState:
    """A stopped task in words: ECS's stopCode and stoppedReason, the container's exit code or reason."""
    code = task.get("stopCode", "")
    reason = _STOP_CODES.get(code, StopReason.LOST)
    parts = [f"ECS task {task.get('lastStatus', 'STOPPED')}"]
    parts += [f"{key}: {task[key]}" for key in ("stopCode", "stoppedReason") if task.get(key)]
    if code == "SpotInterruption":
        parts.insert(0, "Fargate Spot reclaimed its capacity")
    if container and container.get("reason"):
        parts.append(f"container {container.get('name')}: {container['reason']}")
        if "OutOfMemory" in container["reason"]:
            reason = StopReason.OOM
    exit_code = container.get("exitCode") if container else None
    killed = killed_by(exit_code) if exit_code is not None else None
    if killed and reason is StopReason.LOST:
        reason = StopReason.KILLED
        parts.insert(0, killed)
    if exit_code is not None:
        parts.append(f"exit code {exit_code}")
    image = container.get("imageDigest") if container else None
    return BackendState(TaskState.LOST, exit_code=exit_code, detail="; ".join(parts), reason=reason, image=image)
