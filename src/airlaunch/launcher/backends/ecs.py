"""Run catalog tasks as ECS tasks on Fargate (the AWS backend).

Each catalog task runs its own task definition family (``<AIRLAUNCH_ECS_FAMILY_PREFIX>-<task>``,
generated from the catalog by ``make deploy``). The tasks of one task instance, whatever
their try, are found by ``startedBy`` (``al-`` + the identity's slot digest, 35 of the 36
characters ECS allows), and each task's tags name its try; RunTask carries the try's digest
as ``clientToken``, so a retried invocation of the same launch returns the same task
instead of starting a second one (launcher.backends.ecs_run_task: RunTask's retries, budget and
pace; launcher.backends.ecs_tasks: reading ECS's task records). Cluster and network come from
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
from dataclasses import replace
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
    labels_for,
)
from airlaunch.launcher.backends.ecs_images import EcsImages
from airlaunch.launcher.backends.ecs_run_task import RunTaskPacer, client_error, client_token, run_task
from airlaunch.launcher.backends.ecs_tasks import (
    ECS_TIME_KEYS,
    PENDING,
    RUNNING,
    ecs_tags,
    environment,
    how_it_ended,
    is_airlaunch_task,
    iso_time,
    live_task,
    started_by,
)
from airlaunch.launcher.run_credentials import RunSessions
from airlaunch.launcher.settings import LauncherSettings
from airlaunch.protocol import ENV_RUN_CREDENTIALS, EcsTimes, RunIdentity, TaskState

log = logging.getLogger(__name__)

# Never in RunTask's overrides: on AWS the first three are the launcher's own role session, and a run
# session reaches its task only as an environment file (launcher.run_credentials).
_CREDENTIAL_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", ENV_RUN_CREDENTIALS}
# The launcher's own loop (ecs_run_task.run_task) owns RunTask's retries and their budget, so botocore
# only retries a call a few times (standard mode): adaptive mode's client-side rate limiter
# paces one process, and every Lambda execution environment is a process of its own.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=20)


def fargate_size(cpu: float, memory_mib: int) -> tuple[int, int]:
    """:func:`airlaunch.catalog.fargate_size`, failing as a launch does."""
    try:
        return catalog.fargate_size(cpu, memory_mib)
    except catalog.FargateSizeError as exc:
        raise LaunchError(str(exc)) from exc


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

    def _list_live(self, **filters: str) -> list[LiveTask]:
        try:
            pages = self.client.get_paginator("list_tasks").paginate(
                cluster=self.cluster, desiredStatus="RUNNING", **filters
            )
            arns = [arn for page in pages for arn in page["taskArns"]]
            tasks = self._describe_tasks(arns) if arns else []
        except (ClientError, BotoCoreError) as exc:
            raise LaunchError(f"cannot list ECS tasks in cluster {self.cluster!r}: {client_error(exc)}") from exc
        live = [t for t in tasks if t.get("lastStatus") in PENDING | RUNNING]
        return [live_task(t) for t in live if is_airlaunch_task(t)]

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
            "clientToken": client_token(identity, env.get(ENV_START_ATTEMPT, "1")),
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
        task_ref, created = run_task(
            self.client, params, f"task {spec.name!r}", self.settings.launch_budget_seconds, self._pacer
        )
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
                f"{client_error(exc)}",
                is_transient(exc),
            ) from exc

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
            raise LaunchError(f"cannot describe ECS task {task_ref}: {client_error(exc)}", is_transient(exc)) from exc
        task = tasks[0] if tasks else {}
        if task.get("lastStatus") != "STOPPED" or not is_airlaunch_task(task):
            return None
        live = live_task(task)
        if not live.layout.prefix:
            return None
        seen = how_it_ended(task, self._essential_container(task))
        times = EcsTimes.from_dict({name: iso_time(task.get(key)) for name, key in ECS_TIME_KEYS.items()})
        attempt = environment(task).get(ENV_START_ATTEMPT, "1")
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
            raise LaunchError(f"cannot describe ECS task {task_ref}: {client_error(exc)}", is_transient(exc)) from exc
        if not response.get("tasks"):
            reason = "; ".join(str(f.get("reason")) for f in response.get("failures") or []) or "not found"
            return BackendState(TaskState.LOST, detail=f"ECS no longer knows task {task_ref} ({reason})")
        task = response["tasks"][0]
        status = task.get("lastStatus", "")
        if status in PENDING:
            return BackendState(TaskState.PENDING, detail=f"ECS task {status}")
        if status in RUNNING:
            return BackendState(TaskState.RUNNING)
        container = self._essential_container(task)
        return how_it_ended(task, container)

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
            raise LaunchError(f"cannot stop ECS task {task_ref}: {client_error(exc)}") from exc
        return True
