"""Run catalog tasks as ECS tasks on Fargate (the AWS backend).

Each catalog task runs its own task definition family (``<AIRLAUNCH_ECS_FAMILY_PREFIX>-<task>``,
generated from the catalog by ``make deploy``). A task is found again by ``startedBy``
(``al-`` + the identity digest, 35 of the 36 characters ECS allows) and RunTask carries
the digest as ``clientToken``, so a retried invocation of the same launch returns the same
task instead of starting a second one. Cluster and network come from
:class:`~airlaunch.config.LauncherSettings`. The task runs with its own task role and gets
credentials for its own run's files only (launcher.run_credentials): the launcher's own AWS
credentials are never passed into a task's environment.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from airlaunch.aws_names import CONTAINER_NAME, task_family
from airlaunch.catalog import TaskSpec
from airlaunch.config import ADAPTIVE_RETRIES, LauncherSettings
from airlaunch.launcher import run_credentials
from airlaunch.launcher.backends.base import BackendState, LaunchError, Started, labels_for
from airlaunch.protocol import ENV_RUN_CREDENTIALS, RunIdentity, TaskState

log = logging.getLogger(__name__)

_PENDING = {"PROVISIONING", "PENDING", "ACTIVATING"}
_RUNNING = {"RUNNING"}
# Never forwarded to a task: on AWS they are the launcher's own role session.
_CREDENTIAL_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
# ECS tag values: letters, digits, spaces and + - = . _ : / @ (Airflow run ids may also hold '~').
_TAG_VALUE_BAD = re.compile(r"[^\w\s+\-=.:/@]")

# Fargate's valid task sizes: cpu units -> the memory sizes (MiB) allowed with it.
FARGATE_SIZES: dict[int, list[int]] = {
    256: [512, 1024, 2048],
    512: list(range(1024, 4096 + 1, 1024)),
    1024: list(range(2048, 8192 + 1, 1024)),
    2048: list(range(4096, 16384 + 1, 1024)),
    4096: list(range(8192, 30720 + 1, 1024)),
    8192: list(range(16384, 61440 + 1, 4096)),
    16384: list(range(32768, 122880 + 1, 8192)),
}


def fargate_size(cpu: float, memory_mib: int) -> tuple[int, int]:
    """The smallest valid Fargate (cpu units, memory MiB) at least as large as the request.

    Fargate accepts only fixed combinations (0.25 vCPU with 0.5, 1 or 2 GiB, ... 16 vCPU
    with 32-120 GiB), so both are rounded *up*: 0.5 vCPU and 256 MiB become 512 units and
    1024 MiB, and a memory request too large for the cpu moves to the next cpu size. The
    task pays for, and its one container may use, the rounded size.
    """
    units = math.ceil(cpu * 1024)
    for cpu_units, sizes in FARGATE_SIZES.items():
        fitting = [m for m in sizes if m >= memory_mib]
        if cpu_units >= units and fitting:
            return cpu_units, fitting[0]
    raise LaunchError(f"{cpu} vCPU with {memory_mib} MiB is larger than any Fargate task (16 vCPU, 120 GiB)")


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

    def __init__(self, settings: LauncherSettings, client: Any = None, sts: Any = None) -> None:
        self.settings = settings
        self.cluster = settings.ecs_cluster
        self.client = client or boto3.client("ecs", config=ADAPTIVE_RETRIES)
        self._sts = sts
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
        if self.settings.ecs_capacity_provider:
            params["capacityProviderStrategy"] = [
                {"capacityProvider": self.settings.ecs_capacity_provider, "weight": 1}
            ]
        else:
            params["launchType"] = "FARGATE"
        return params

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
