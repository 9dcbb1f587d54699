"""Run catalog tasks as ECS tasks on Fargate (the AWS backend).

Each catalog task runs its own task definition family (``<AIRLAUNCH_ECS_FAMILY_PREFIX>-<task>``,
generated from the catalog by ``make deploy``). The tasks of one task instance, whatever
their try, are found by ``startedBy`` (``al-`` + the identity's slot digest, 35 of the 36
characters ECS allows), and each task's tags name its try; RunTask carries the try's digest
as ``clientToken``, so a retried invocation of the same launch returns the same task
instead of starting a second one. Cluster and network come from
:class:`~airlaunch.config.LauncherSettings`. The task runs with its own task role and gets
credentials for its own run's files only (launcher.run_credentials): the launcher's own AWS
credentials are never passed into a task's environment.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import replace
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from airlaunch import catalog
from airlaunch.aws_names import CONTAINER_NAME, task_family
from airlaunch.catalog import TaskSpec
from airlaunch.config import ADAPTIVE_RETRIES, LauncherSettings
from airlaunch.launcher import run_credentials
from airlaunch.launcher.backends.base import BackendState, LaunchError, LiveTask, Started, labels_for
from airlaunch.protocol import (
    ENV_BUCKET,
    ENV_EXECUTION_ID,
    ENV_PREFIX,
    ENV_RUN_CREDENTIALS,
    ENV_TIMEOUT_SECONDS,
    EcsTimes,
    ResultLayout,
    RunIdentity,
    StopReason,
    TaskState,
    digest_of,
)

log = logging.getLogger(__name__)

_PENDING = {"PROVISIONING", "PENDING", "ACTIVATING"}
_RUNNING = {"RUNNING"}
# Never forwarded to a task: on AWS they are the launcher's own role session.
_CREDENTIAL_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
# ECS tag values: letters, digits, spaces and + - = . _ : / @ (Airflow run ids may also hold '~').
_TAG_VALUE_BAD = re.compile(r"[^\w\s+\-=.:/@]")


def fargate_size(cpu: float, memory_mib: int) -> tuple[int, int]:
    """:func:`airlaunch.catalog.fargate_size`, failing as a launch does."""
    try:
        return catalog.fargate_size(cpu, memory_mib)
    except catalog.FargateSizeError as exc:
        raise LaunchError(str(exc)) from exc


PLACEMENT_ATTEMPTS = 3
_ECS_TIME_KEYS = {
    "created_at": "createdAt",
    "pull_started_at": "pullStartedAt",
    "pull_stopped_at": "pullStoppedAt",
    "started_at": "startedAt",
    "stopping_at": "stoppingAt",
    "stopped_at": "stoppedAt",
}


def _iso_time(value: Any) -> str | None:
    """An ECS time (a datetime from boto3, or the event's ISO string) as ISO 8601."""
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


ENV_START_ATTEMPT = "AIRLAUNCH_START_ATTEMPT"  # which start of its try a task is (after failed starts)


def _environment(task: dict[str, Any]) -> dict[str, str]:
    """The environment a task (or a task state event) was started with, from its container overrides."""
    return {
        item["name"]: item["value"]
        for override in (task.get("overrides") or {}).get("containerOverrides") or []
        for item in override.get("environment") or []
    }


def _throttled(exc: ClientError | BotoCoreError) -> bool:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return exc.response.get("Error", {}).get("Code") in ("ThrottlingException", "ServerException") or status >= 500
    return True  # a connection error: may pass


def started_by(identity: RunIdentity) -> str:
    return f"al-{identity.slot}"


# stopCode -> how the task ended (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/stopped-task-errors.html)
_STOP_CODES = {
    "TaskFailedToStart": StopReason.PLATFORM,
    "SpotInterruption": StopReason.PLATFORM,
    "TerminationNotice": StopReason.PLATFORM,
    "ServiceSchedulerInitiated": StopReason.PLATFORM,
    "UserInitiated": StopReason.STOPPED,
    "EssentialContainerExited": StopReason.LOST,
}


def ecs_tags(labels: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": _TAG_VALUE_BAD.sub("_", v)[:256]} for k, v in labels.items()]


def _client_error(exc: ClientError | BotoCoreError) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', exc)}"
    return str(exc)


class EcsBackend:
    name = "ecs"

    def __init__(self, settings: LauncherSettings, client: Any = None, sts: Any = None) -> None:
        self.settings = settings
        self.cluster = settings.ecs_cluster
        self.client = client or boto3.client("ecs", config=ADAPTIVE_RETRIES)
        self._sts = sts
        self._essential: dict[str, set[str]] = {}  # task definition ARN -> essential container names

    def _describe_tasks(self, arns: list[str]) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = []
        for first in range(0, len(arns), 100):  # DescribeTasks takes at most 100
            response = self.client.describe_tasks(cluster=self.cluster, tasks=arns[first : first + 100])
            tasks += response["tasks"]
        return tasks

    @staticmethod
    def _live_task(task: dict[str, Any]) -> LiveTask:
        env = _environment(task)
        tags = {tag["key"]: tag["value"] for tag in task.get("tags") or []}
        started = task.get("startedAt")
        timeout = env.get(ENV_TIMEOUT_SECONDS, "")
        return LiveTask(
            task_ref=task["taskArn"],
            digest=tags.get("airlaunch.identity") or digest_of(env.get(ENV_EXECUTION_ID, "")),
            layout=ResultLayout(bucket=env.get(ENV_BUCKET, ""), prefix=env.get(ENV_PREFIX, "")),
            started_at=started.timestamp() if started is not None else None,
            timeout_seconds=int(timeout) if timeout.isdigit() else None,
        )

    def _list_live(self, **filters: str) -> list[LiveTask]:
        try:
            pages = self.client.get_paginator("list_tasks").paginate(
                cluster=self.cluster, desiredStatus="RUNNING", **filters
            )
            arns = [arn for page in pages for arn in page["taskArns"]]
            tasks = self._describe_tasks(arns) if arns else []
        except (ClientError, BotoCoreError) as exc:
            raise LaunchError(f"cannot list ECS tasks in cluster {self.cluster!r}: {_client_error(exc)}") from exc
        live = [t for t in tasks if t.get("lastStatus") in _PENDING | _RUNNING]
        return [self._live_task(t) for t in live if str(t.get("startedBy", "")).startswith("al-")]

    def live(self, identity: RunIdentity) -> list[LiveTask]:
        return self._list_live(startedBy=started_by(identity))

    def live_tasks(self) -> list[LiveTask]:
        return self._list_live()

    def find(self, identity: RunIdentity) -> str | None:
        """The live task of exactly this try, if any."""
        mine = [task.task_ref for task in self.live(identity) if task.digest == identity.digest]
        return mine[0] if mine else None

    def forget(self, task_ref: str) -> None:
        """ECS forgets stopped tasks by itself (after about an hour)."""

    def run_task_params(self, spec: TaskSpec, identity: RunIdentity, env: dict[str, str]) -> dict[str, Any]:
        """The RunTask request for one launch (separate so that it can be checked as a whole)."""
        if self.settings.ecs_capacity_provider == "FARGATE_SPOT" and spec.architecture == "arm64":
            raise LaunchError(
                f"task {spec.name!r} is arm64 and AIRLAUNCH_ECS_CAPACITY_PROVIDER is FARGATE_SPOT, which runs no "
                "ARM64 tasks: use FARGATE (CapacityProvider parameter) or build the task for x86_64"
            )
        if not self.settings.ecs_subnets:
            raise LaunchError("AIRLAUNCH_ECS_SUBNETS is empty: set it to the subnet ids Fargate tasks run in")
        cpu, memory = fargate_size(spec.cpu, spec.memory_mib)
        environment = [{"name": k, "value": v} for k, v in sorted(env.items()) if k not in _CREDENTIAL_ENV]
        params: dict[str, Any] = {
            "cluster": self.cluster,
            "taskDefinition": task_family(self.settings.ecs_family_prefix, spec.name),
            "count": 1,
            "startedBy": started_by(identity),
            "clientToken": identity.digest,
            "networkConfiguration": self._network(),
            "overrides": {
                "cpu": str(cpu),
                "memory": str(memory),
                "containerOverrides": [
                    {
                        "name": CONTAINER_NAME,
                        "command": spec.runtime_args(),
                        "environment": environment,
                        "cpu": cpu,
                        "memory": memory,
                    }
                ],
            },
            "tags": ecs_tags(labels_for(spec, identity)),
            "enableECSManagedTags": True,
            "propagateTags": "TASK_DEFINITION",
        }
        self._strategy(params)
        return params

    def _network(self) -> dict[str, Any]:
        return {
            "awsvpcConfiguration": {
                "subnets": list(self.settings.ecs_subnets),
                "securityGroups": list(self.settings.ecs_security_groups),
                "assignPublicIp": "ENABLED" if self.settings.ecs_assign_public_ip else "DISABLED",
            }
        }

    def _strategy(self, params: dict[str, Any]) -> None:
        if self.settings.ecs_capacity_provider:
            params["capacityProviderStrategy"] = [
                {"capacityProvider": self.settings.ecs_capacity_provider, "weight": 1}
            ]
        else:
            params["launchType"] = "FARGATE"

    @property
    def sts(self) -> Any:
        if self._sts is None:
            self._sts = boto3.client("sts", config=ADAPTIVE_RETRIES)
        return self._sts

    def run_credentials(self, identity: RunIdentity) -> dict[str, str]:
        """ENV_RUN_CREDENTIALS for the task: its own run's files only (launcher.run_credentials)."""
        if not self.settings.run_role_arn:
            return {}
        try:
            value = run_credentials.mint(self.sts, self.settings.run_role_arn, identity)
        except ValueError as exc:
            raise LaunchError(str(exc)) from exc
        except (ClientError, BotoCoreError) as exc:
            raise LaunchError(
                f"cannot start a run session of {self.settings.run_role_arn} (AIRLAUNCH_RUN_ROLE_ARN): "
                f"{_client_error(exc)}"
            ) from exc
        return {ENV_RUN_CREDENTIALS: value}

    def start(self, spec: TaskSpec, identity: RunIdentity, env: dict[str, str]) -> Started:
        params = self.run_task_params(spec, identity, {**env, **self.run_credentials(identity)})
        task_ref, created = self._run_task(params, f"task {spec.name!r}")
        return Started(task_ref=task_ref, launched=True, created_at=created)

    def _run_task(self, params: dict[str, Any], what: str) -> tuple[str, str | None]:
        """RunTask, tried again (PLACEMENT_ATTEMPTS, a second apart) when ECS has no capacity or agent just now.

        A placement failure starts nothing, so each retry carries a new clientToken: the first
        one's cached answer would be the same failure.
        """
        for attempt in range(PLACEMENT_ATTEMPTS):
            if attempt:
                time.sleep(attempt)
                params = {**params, "clientToken": f"{params['clientToken'][:40]}-{time.time_ns()}"}
            try:
                response = self.client.run_task(**params)
            except (ClientError, BotoCoreError) as exc:
                raise LaunchError(
                    f"ECS refused to run {what} (task definition {params['taskDefinition']!r}, "
                    f"cluster {self.cluster!r}): {_client_error(exc)}",
                    retryable=_throttled(exc),
                ) from exc
            failures = response.get("failures") or []
            if response.get("tasks") and not failures:
                task = response["tasks"][0]
                log.info("started ECS task %s (%s)", task["taskArn"], params["startedBy"])
                created = task.get("createdAt")
                return task["taskArn"], created.isoformat(timespec="milliseconds") if created else None
            reasons = "; ".join(f"{f.get('reason')} {f.get('detail') or ''} ({f.get('arn', '')})" for f in failures)
            # no capacity or agent just now (RESOURCE:*, AGENT, Capacity is unavailable): may pass
            passing = any(str(f.get("reason", "")).startswith(("RESOURCE:", "AGENT", "Capacity")) for f in failures)
            if not passing:
                break
        raise LaunchError(f"ECS could not place {what}: {reasons or 'no task returned'}", passing)

    # -- ECS task state change events (EventBridge -> the launcher) -----------------------------
    def stopped_task(self, detail: dict[str, Any]) -> tuple[LiveTask, BackendState] | None:
        """An airlaunch task's STOPPED event: the task and how it ended; None for any other event."""
        if detail.get("lastStatus") != "STOPPED" or not str(detail.get("startedBy", "")).startswith("al-"):
            return None
        task = self._live_task(detail)
        if not task.layout.prefix:
            return None
        seen = self.how_it_ended(detail, self._essential_container(detail))
        times = EcsTimes.from_dict({name: _iso_time(detail.get(key)) for name, key in _ECS_TIME_KEYS.items()})
        return task, replace(seen, ecs_times=times)

    @staticmethod
    def failed_to_start(detail: dict[str, Any]) -> int | None:
        """How many starts this try has had, if this task failed to start for a reason that may pass
        (an image pull or the ENI failing now and then, about 1% of Fargate starts); else None."""
        if detail.get("stopCode") != "TaskFailedToStart":
            return None
        env = _environment(detail)
        return int(env.get(ENV_START_ATTEMPT, "1"))

    def start_again(self, detail: dict[str, Any], attempt: int) -> str:
        """Run the failed task again as it was (same definition, overrides, startedBy, network)."""
        overrides = detail.get("overrides") or {}
        containers = [
            {
                **override,
                "environment": [e for e in override.get("environment") or [] if e["name"] != ENV_START_ATTEMPT]
                + [{"name": ENV_START_ATTEMPT, "value": str(attempt)}],
            }
            for override in overrides.get("containerOverrides") or []
        ]
        params: dict[str, Any] = {
            "cluster": self.cluster,
            "taskDefinition": detail["taskDefinitionArn"],
            "count": 1,
            "startedBy": detail["startedBy"],
            "clientToken": f"{detail['startedBy'][3:35]}-start-{attempt}-{detail['taskArn'][-12:]}",
            "networkConfiguration": self._network(),
            "overrides": {
                **{k: v for k, v in overrides.items() if k != "containerOverrides"},
                "containerOverrides": containers,
            },
            "tags": [{"key": t["key"], "value": t["value"]} for t in detail.get("tags") or []],
            "enableECSManagedTags": True,
            "propagateTags": "TASK_DEFINITION",
        }
        if not params["tags"]:
            del params["tags"]
        self._strategy(params)
        return self._run_task(params, f"again the task that failed to start ({detail['taskArn']})")[0]

    def describe(self, task_ref: str) -> BackendState:
        try:
            response = self.client.describe_tasks(cluster=self.cluster, tasks=[task_ref])
        except (ClientError, BotoCoreError) as exc:
            raise LaunchError(f"cannot describe ECS task {task_ref}: {_client_error(exc)}") from exc
        if not response.get("tasks"):
            reason = "; ".join(str(f.get("reason")) for f in response.get("failures") or []) or "not found"
            return BackendState(TaskState.LOST, detail=f"ECS no longer knows task {task_ref} ({reason})")
        task = response["tasks"][0]
        status = task.get("lastStatus", "")
        if status in _PENDING:
            return BackendState(TaskState.PENDING, detail=f"ECS task {status}")
        if status in _RUNNING:
            return BackendState(TaskState.RUNNING)
        container = self._essential_container(task)
        return self.how_it_ended(task, container)

    @staticmethod
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
        if exit_code is not None and exit_code > 128 and reason is StopReason.LOST:
            reason = StopReason.KILLED
        if exit_code is not None:
            parts.append(f"exit code {exit_code}")
        return BackendState(TaskState.LOST, exit_code=exit_code, detail="; ".join(parts), reason=reason)

    def _essential_container(self, task: dict[str, Any]) -> dict[str, Any] | None:
        containers: list[dict[str, Any]] = task.get("containers") or []
        definition = task.get("taskDefinitionArn", "")
        if definition and definition not in self._essential:
            try:
                described = self.client.describe_task_definition(taskDefinition=definition)["taskDefinition"]
                self._essential[definition] = {
                    c["name"] for c in described.get("containerDefinitions", []) if c.get("essential", True)
                }
            except (ClientError, BotoCoreError):  # deregistered or not allowed: fall back to the first container
                self._essential[definition] = set()
        essential = [c for c in containers if c.get("name") in self._essential.get(definition, set())]
        chosen = essential or containers
        return chosen[0] if chosen else None

    def stop(self, task_ref: str, reason: str) -> bool:
        if self.describe(task_ref).state is TaskState.LOST:
            return False
        log.info("stopping ECS task %s: %s", task_ref, reason)
        try:
            self.client.stop_task(cluster=self.cluster, task=task_ref, reason=reason[:255])
        except (ClientError, BotoCoreError) as exc:
            raise LaunchError(f"cannot stop ECS task {task_ref}: {_client_error(exc)}") from exc
        return True
