"""Run catalog tasks as ECS tasks on Fargate (the AWS backend).

A task is found again by ``startedBy`` (``al-`` + the identity digest, 35 of the 36
characters ECS allows) and RunTask carries the digest as ``clientToken``, so a retried
invocation of the same launch returns the same task instead of starting a second one.
The catalog decides the task definition family and container; cluster and network come
from :class:`~airlaunch.config.LauncherSettings`. The task runs with its task role: the
launcher's own AWS credentials are never passed into a task's environment.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from airlaunch import catalog
from airlaunch.catalog import TaskSpec
from airlaunch.config import LauncherSettings
from airlaunch.launcher.backends.base import BackendState, LaunchError, Started, labels_for
from airlaunch.protocol import RunIdentity, TaskState

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


def started_by(identity: RunIdentity) -> str:
    return f"al-{identity.digest}"


def ecs_tags(labels: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": _TAG_VALUE_BAD.sub("_", v)[:256]} for k, v in labels.items()]


def _client_error(exc: ClientError | BotoCoreError) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', exc)}"
    return str(exc)


class EcsBackend:
    name = "ecs"

    def __init__(self, settings: LauncherSettings, client: Any = None) -> None:
        self.settings = settings
        self.cluster = settings.ecs_cluster
        self.client = client or boto3.client("ecs")
        self._essential: dict[str, set[str]] = {}  # task definition ARN -> essential container names

    def find(self, identity: RunIdentity) -> str | None:
        try:
            arns = self.client.list_tasks(
                cluster=self.cluster, startedBy=started_by(identity), desiredStatus="RUNNING"
            )["taskArns"]
            if not arns:
                return None
            tasks = self.client.describe_tasks(cluster=self.cluster, tasks=arns)["tasks"]
        except (ClientError, BotoCoreError) as exc:
            raise LaunchError(f"cannot list ECS tasks in cluster {self.cluster!r}: {_client_error(exc)}") from exc
        live = [t["taskArn"] for t in tasks if t.get("lastStatus") in _PENDING | _RUNNING]
        return live[0] if live else None

    def run_task_params(self, spec: TaskSpec, identity: RunIdentity, env: dict[str, str]) -> dict[str, Any]:
        """The RunTask request for one launch (separate so that it can be checked as a whole)."""
        if spec.ecs is None:
            raise LaunchError(f"task {spec.name!r} has no 'ecs' entry in the catalog; add ecs.task_definition")
        if not self.settings.ecs_subnets:
            raise LaunchError("AIRLAUNCH_ECS_SUBNETS is empty: set it to the subnet ids Fargate tasks run in")
        cpu, memory = fargate_size(spec.cpu, spec.memory_mib)
        environment = [{"name": k, "value": v} for k, v in sorted(env.items()) if k not in _CREDENTIAL_ENV]
        params: dict[str, Any] = {
            "cluster": self.cluster,
            "taskDefinition": spec.ecs.task_definition,
            "count": 1,
            "startedBy": started_by(identity),
            "clientToken": identity.digest,
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": list(self.settings.ecs_subnets),
                    "securityGroups": list(self.settings.ecs_security_groups),
                    "assignPublicIp": "ENABLED" if self.settings.ecs_assign_public_ip else "DISABLED",
                }
            },
            "overrides": {
                "cpu": str(cpu),
                "memory": str(memory),
                "containerOverrides": [
                    {
                        "name": spec.ecs.container_name,
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
        if self.settings.ecs_capacity_provider:
            params["capacityProviderStrategy"] = [
                {"capacityProvider": self.settings.ecs_capacity_provider, "weight": 1}
            ]
        else:
            params["launchType"] = "FARGATE"
        return params

    def start(self, spec: TaskSpec, identity: RunIdentity, env: dict[str, str]) -> Started:
        params = self.run_task_params(spec, identity, env)
        try:
            response = self.client.run_task(**params)
        except (ClientError, BotoCoreError) as exc:
            raise LaunchError(
                f"ECS refused to run task {spec.name!r} (task definition {params['taskDefinition']!r}, "
                f"cluster {self.cluster!r}): {_client_error(exc)}"
            ) from exc
        failures = response.get("failures") or []
        if failures or not response.get("tasks"):
            reasons = "; ".join(f"{f.get('reason')} {f.get('detail') or ''} ({f.get('arn', '')})" for f in failures)
            raise LaunchError(f"ECS could not place task {spec.name!r}: {reasons or 'no task returned'}")
        arn: str = response["tasks"][0]["taskArn"]
        log.info("started ECS task %s for %s", arn, identity.execution_id)
        return Started(task_ref=arn, launched=True)

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
        parts = [f"ECS task {status}"]
        parts += [f"{key}: {task[key]}" for key in ("stopCode", "stoppedReason") if task.get(key)]
        if container and container.get("reason"):
            parts.append(f"container {container.get('name')}: {container['reason']}")
        return BackendState(
            TaskState.LOST, exit_code=container.get("exitCode") if container else None, detail="; ".join(parts)
        )

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
        except ClientError as exc:
            raise LaunchError(f"cannot stop ECS task {task_ref}: {_client_error(exc)}") from exc
        return True
