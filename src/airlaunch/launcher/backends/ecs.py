"""Run catalog tasks as ECS tasks on Fargate (the AWS backend).

Each catalog task runs its own task definition family (``<AIRLAUNCH_ECS_FAMILY_PREFIX>-<task>``,
generated from the catalog by ``make deploy``). The tasks of one task instance, whatever
their try, are found by ``startedBy`` (``al-`` + the identity's slot digest, 35 of the 36
characters ECS allows), and each task's tags name its try; RunTask carries the try's digest
as ``clientToken``, so a retried invocation of the same launch returns the same task
instead of starting a second one. Cluster and network come from
:class:`~airlaunch.launcher.settings.LauncherSettings`. The task runs with its own task role and gets
credentials for its own run's files only, as an environment file in S3 that RunTask names
by ARN (launcher.run_credentials): neither they nor the launcher's own AWS credentials are
ever in RunTask's request, so DescribeTasks and ECS's events do not show them. A task's secrets
are its task definition's ``secrets``, which ECS's agent fetches with the execution role: the
launcher never holds their values, and a variable the catalog names secret never goes into
RunTask's overrides.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from dataclasses import replace
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from airlaunch import catalog
from airlaunch.aws_errors import is_transient
from airlaunch.aws_names import CONTAINER_NAME, task_family
from airlaunch.catalog import TaskSpec
from airlaunch.launcher.backends.base import (
    ENV_START_ATTEMPT,
    BackendState,
    LaunchError,
    LiveTask,
    Started,
    StoppedTask,
    killed_by,
    labels_for,
)
from airlaunch.launcher.backends.ecs_images import EcsImages
from airlaunch.launcher.run_credentials import RunSessions
from airlaunch.launcher.settings import LauncherSettings
from airlaunch.protocol import (
    ENV_BUCKET,
    ENV_CACHE_CLAIM,
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
# Never in RunTask's overrides: on AWS the first three are the launcher's own role session, and a run
# session reaches its task only as an environment file (launcher.run_credentials).
_CREDENTIAL_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", ENV_RUN_CREDENTIALS}
# ECS tag values: letters, digits, spaces and + - = . _ : / @ (Airflow run ids may also hold '~').
_TAG_VALUE_BAD = re.compile(r"[^\w\s+\-=.:/@]")


def fargate_size(cpu: float, memory_mib: int) -> tuple[int, int]:
    """:func:`airlaunch.catalog.fargate_size`, failing as a launch does."""
    try:
        return catalog.fargate_size(cpu, memory_mib)
    except catalog.FargateSizeError as exc:
        raise LaunchError(str(exc)) from exc


# The launcher's own loop (``_run_task``) owns RunTask's retries and their budget, so botocore
# only retries a call a few times (standard mode): adaptive mode's client-side rate limiter
# paces one process, and every Lambda execution environment is a process of its own.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=20)
_ECS_TIME_KEYS = {
    "created_at": "createdAt",
    "pull_started_at": "pullStartedAt",
    "pull_stopped_at": "pullStoppedAt",
    "started_at": "startedAt",
    "stopping_at": "stoppingAt",
    "stopped_at": "stoppedAt",
}


def _iso_time(value: Any) -> str | None:
    """An ECS time (a datetime from boto3, or an ISO string as in ECS's events) as ISO 8601."""
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _epoch(value: Any) -> float | None:
    """An ECS time as epoch seconds: boto3 gives datetimes, ECS's events ISO-8601 strings ("...Z")."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _environment(task: dict[str, Any]) -> dict[str, str]:
    """The environment a task (or a task state event) was started with, from its container overrides."""
    return {
        item["name"]: item["value"]
        for override in (task.get("overrides") or {}).get("containerOverrides") or []
        for item in override.get("environment") or []
    }


# RunTask failures[] that started nothing and may pass: no capacity or agent just now (RESOURCE:*,
# AGENT; "Capacity is unavailable at this time...", AWS Knowledge Center ecs-fargate-runtask-capacity),
# and the account's concurrent Fargate vCPU (formerly task count) quota, which frees up as tasks end
# ("You've reached the limit on the number of vCPUs you can run concurrently"; ECS service quotas).
_PASSING_FAILURES = re.compile(r"^(RESOURCE:|AGENT)|capacity is unavailable|reached the limit on the number of", re.I)


def _may_pass(failure: dict[str, Any]) -> bool:
    return bool(_PASSING_FAILURES.search(str(failure.get("reason", ""))))


def started_by(identity: RunIdentity) -> str:
    return f"al-{identity.slot}"


def _client_token(identity: RunIdentity, start_attempt: str) -> str:
    """RunTask's idempotency token: the try's digest, so a retried launch gets its task back from ECS;
    a start after failed starts has a token of its own (the failed start's would return that task)."""
    return identity.digest if start_attempt == "1" else f"{identity.digest[:40]}-start-{start_attempt}"


_clock, _sleep = time.monotonic, time.sleep  # module attributes, so that tests can run a budget on a fake clock


def _pause(attempt: int, deadline: float) -> bool:
    """Sleep before retry ``attempt + 1`` (full jitter); False, without sleeping, once the budget is spent."""
    pause = random.uniform(0, min(5.0, 0.5 * 2**attempt))
    if _clock() + pause >= deadline:
        return False
    _sleep(pause)
    return True


class RunTaskPacer:
    """Spaces one execution environment's RunTask calls (retries included) ``interval`` seconds apart.

    Lambda runs each invocation of an execution environment alone, and at most the function's reserved
    concurrency of them at once, so environments that each keep concurrency / rate seconds between their
    calls stay together within ``rate`` calls a second: Fargate's sustained task launch rate, whatever the
    size of the fan-out. Nothing has to be shared between environments for that.
    """

    def __init__(self, settings: LauncherSettings) -> None:
        self.interval = max(1, settings.launcher_concurrency) / max(settings.ecs_run_task_rate, 0.001)
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = _clock()
            turn = max(now, self._next)
            self._next = turn + self.interval
        if turn > now:
            _sleep(turn - now)


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
    injects_secrets = True  # ECS's agent: the task definition's secrets, with the task's execution role

    def __init__(self, settings: LauncherSettings, client: Any = None, sts: Any = None, s3: Any = None) -> None:
        self.settings = settings
        self.cluster = settings.ecs_cluster
        self.client = client or boto3.client("ecs", config=CLIENT_CONFIG)
        self.run_sessions: RunSessions | None = None  # the service renews and removes them (launcher.service)
        if settings.run_role_arn:
            self.run_sessions = RunSessions(
                sts or boto3.client("sts", config=CLIENT_CONFIG), s3 or boto3.client("s3", config=CLIENT_CONFIG),
                settings.run_role_arn, settings.bucket, settings.key_prefix,
            )  # fmt: skip
        self._essential: dict[str, set[str]] = {}  # task definition ARN -> essential container names
        self.images = EcsImages(self.client, settings.ecs_family_prefix)  # the result cache's image digests
        self._pacer = RunTaskPacer(settings)

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
        timeout = env.get(ENV_TIMEOUT_SECONDS, "")
        return LiveTask(
            task_ref=task["taskArn"],
            digest=tags.get("airlaunch.identity") or digest_of(env.get(ENV_EXECUTION_ID, "")),
            layout=ResultLayout(bucket=env.get(ENV_BUCKET, ""), prefix=env.get(ENV_PREFIX, "")),
            started_at=_epoch(task.get("startedAt")),
            timeout_seconds=int(timeout) if timeout.isdigit() else None,
            cache=env.get(ENV_CACHE_CLAIM, ""),
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

    def forget(self, task_ref: str) -> None:
        """ECS forgets stopped tasks by itself (after about an hour)."""

    def run_task_params(
        self, spec: TaskSpec, identity: RunIdentity, env: dict[str, str], env_file: str | None = None
    ) -> dict[str, Any]:
        """The RunTask request for one launch (separate so that it can be checked as a whole); ``env_file``:
        the ARN of the run session's environment file, which only the ECS agent reads."""
        if self.settings.ecs_capacity_provider == "FARGATE_SPOT" and spec.architecture == "arm64":
            raise LaunchError(
                f"task {spec.name!r} is arm64 and AIRLAUNCH_ECS_CAPACITY_PROVIDER is FARGATE_SPOT, which runs no "
                "ARM64 tasks: use FARGATE (CapacityProvider parameter) or build the task for x86_64"
            )
        if not self.settings.ecs_subnets:
            raise LaunchError("AIRLAUNCH_ECS_SUBNETS is empty: set it to the subnet ids Fargate tasks run in")
        cpu, memory = fargate_size(spec.cpu, spec.memory_mib)
        hidden = _CREDENTIAL_ENV | set(spec.secrets)  # secrets come from the task definition, never the overrides
        environment = [{"name": k, "value": v} for k, v in sorted(env.items()) if k not in hidden]
        container: dict[str, Any] = {
            "name": CONTAINER_NAME,
            "command": spec.runtime_args(),
            "environment": environment,
            "cpu": cpu,
            "memory": memory,
        }
        if env_file:
            container["environmentFiles"] = [{"type": "s3", "value": env_file}]
        params: dict[str, Any] = {
            "cluster": self.cluster,
            "taskDefinition": task_family(self.settings.ecs_family_prefix, spec.name),
            "count": 1,
            "startedBy": started_by(identity),
            "clientToken": _client_token(identity, env.get(ENV_START_ATTEMPT, "1")),
            "networkConfiguration": self._network(),
            "overrides": {
                "cpu": str(cpu),
                "memory": str(memory),
                "containerOverrides": [container],
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

    def start(self, spec: TaskSpec, identity: RunIdentity, env: dict[str, str]) -> Started:
        params = self.run_task_params(spec, identity, env, self._run_session(spec, identity, env))
        task_ref, created = self._run_task(params, f"task {spec.name!r}")
        return Started(task_ref=task_ref, launched=True, created_at=created)

    def image_digest(self, spec: TaskSpec) -> str | None:
        return self.images.digest(spec)

    def _run_session(self, spec: TaskSpec, identity: RunIdentity, env: dict[str, str]) -> str | None:
        """The ARN of the try's run session file (launcher.run_credentials); None without a files role."""
        if self.run_sessions is None:
            return None
        try:
            return self.run_sessions.start(identity, spec.timeout_seconds, env.get(ENV_START_ATTEMPT, "1") == "1")
        except ValueError as exc:
            raise LaunchError(str(exc)) from exc
        except (ClientError, BotoCoreError) as exc:
            raise LaunchError(
                f"cannot start a run session of {self.settings.run_role_arn} (AIRLAUNCH_RUN_ROLE_ARN): "
                f"{_client_error(exc)}",
                is_transient(exc),
            ) from exc

    def _run_task(self, params: dict[str, Any], what: str) -> tuple[str, str | None]:
        """RunTask, tried again within the launch budget (LauncherSettings.launch_budget_seconds) while
        ECS throttles, answers 5xx or not at all, or places nothing for a reason that may pass.

        Every attempt waits its turn (RunTaskPacer), so that the launcher as a whole stays within
        Fargate's launch rate. The budget keeps every retry inside one invocation well short of the
        function's timeout (60 s in infra/template.yaml); once it is spent the error is ``retryable``
        and Airflow's hook tries the whole launch again later, which finds this try's task if one started.
        Pauses are exponential with full jitter (0.5 s doubling, at most 5 s), so that a fan-out's
        launches spread out instead of coming back together. An error may hide a started task,
        so a retry after one keeps the clientToken (ECS answers with that task); a placement
        failure started nothing, so its retry carries a new token (the old one's answer would be
        the same failure).
        """
        deadline = _clock() + self.settings.launch_budget_seconds
        for attempt in range(1, 1000):
            self._pacer.wait()
            try:
                response = self.client.run_task(**params)
            except (ClientError, BotoCoreError) as exc:
                transient = is_transient(exc)
                message = (
                    f"ECS refused to run {what} (task definition {params['taskDefinition']!r}, "
                    f"cluster {self.cluster!r}): {_client_error(exc)}"
                )
                if not transient or not _pause(attempt, deadline):
                    raise LaunchError(message, retryable=transient) from exc
                log.warning("%s; trying again (attempt %d)", message, attempt + 1)
                continue
            failures = response.get("failures") or []
            if response.get("tasks") and not failures:
                task = response["tasks"][0]
                log.info("started ECS task %s (%s)", task["taskArn"], params["startedBy"])
                created = task.get("createdAt")
                return task["taskArn"], created.isoformat(timespec="milliseconds") if created else None
            reasons = "; ".join(f"{f.get('reason')} {f.get('detail') or ''} ({f.get('arn', '')})" for f in failures)
            passing = bool(failures) and all(_may_pass(f) for f in failures)
            message = f"ECS could not place {what}: {reasons or 'no task returned'}"
            if not passing or not _pause(attempt, deadline):
                raise LaunchError(message, passing)
            log.warning("%s; trying again (attempt %d)", message, attempt + 1)
            params = {**params, "clientToken": f"{params['clientToken'][:40]}-{time.time_ns()}"}
        raise AssertionError("unreachable")

    # -- ECS task state change events (EventBridge -> the launcher) -----------------------------
    def stopped_task(self, task_ref: str) -> StoppedTask | None:
        """The task an event names, as ECS describes it in this launcher's cluster: how it ended, and
        whether it failed to start for a reason that may pass (an image pull or the ENI failing now and
        then, about 1% of Fargate starts). None unless ECS says it is a stopped airlaunch task here.
        Nothing of the event itself is used (airlaunch.launcher.platform_events says why)."""
        if task_ref.split(":task/", 1)[-1].split("/", 1)[0] != self.cluster.rsplit("/", 1)[-1]:
            return None  # another cluster's task: not ours to describe
        try:
            tasks = self.client.describe_tasks(cluster=self.cluster, tasks=[task_ref], include=["TAGS"])["tasks"]
        except (ClientError, BotoCoreError) as exc:
            raise LaunchError(f"cannot describe ECS task {task_ref}: {_client_error(exc)}", is_transient(exc)) from exc
        task = tasks[0] if tasks else {}
        if task.get("lastStatus") != "STOPPED" or not str(task.get("startedBy", "")).startswith("al-"):
            return None
        live = self._live_task(task)
        if not live.layout.prefix:
            return None
        seen = self.how_it_ended(task, self._essential_container(task))
        times = EcsTimes.from_dict({name: _iso_time(task.get(key)) for name, key in _ECS_TIME_KEYS.items()})
        attempt = _environment(task).get(ENV_START_ATTEMPT, "1")
        return StoppedTask(
            task=live,
            seen=replace(seen, ecs_times=times),
            start_attempt=int(attempt) if attempt.isdigit() else 1,
            may_start_again=task.get("stopCode") == "TaskFailedToStart",
        )

    def describe(self, task_ref: str) -> BackendState:
        try:
            response = self.client.describe_tasks(cluster=self.cluster, tasks=[task_ref])
        except (ClientError, BotoCoreError) as exc:
            raise LaunchError(f"cannot describe ECS task {task_ref}: {_client_error(exc)}", is_transient(exc)) from exc
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
        killed = killed_by(exit_code) if exit_code is not None else None
        if killed and reason is StopReason.LOST:
            reason = StopReason.KILLED
            parts.insert(0, killed)
        if exit_code is not None:
            parts.append(f"exit code {exit_code}")
        image = container.get("imageDigest") if container else None
        return BackendState(TaskState.LOST, exit_code=exit_code, detail="; ".join(parts), reason=reason, image=image)

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
