"""A task the emulator runs: moto's task object, what the emulator knows of it, and ECS's first fields.

moto's ``Task`` is the single record of a task's state: DescribeTasks renders whatever
attributes it carries (``stop_code`` as ``stopCode``, ``stopping_at`` as ``stoppingAt``...), and
the events are rendered from it too (events.task_detail), so the API and the events cannot
disagree. :func:`ecs_fields` sets what ECS reports of a new Fargate task and moto does not,
or reports differently (moto's container ARN names the task definition; its health is
HEALTHY where ECS says UNKNOWN without a health check).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airlaunch.stack.ecs_emulator.clock import Handle, utcnow
from airlaunch.stack.ecs_emulator.containers import task_cpu_memory, task_vcpus

FARGATE_PLATFORM = "1.4.0"  # what LATEST means for Linux Fargate tasks


@dataclass(eq=False)
class TaskRecord:
    task: Any  # moto.ecs.models.Task
    backend: Any  # its EC2ContainerServiceBackend
    definition: Any  # its TaskDefinition
    pool: str  # FARGATE or FARGATE_SPOT
    vcpus: float  # what it counts against the pool's vCPU quota until STOPPED
    stop_timeout: float  # SIGTERM to SIGKILL
    container_id: str | None = None
    started: bool = False  # its container was started (lastStatus RUNNING was reached)
    exited: bool = False  # its container exited, or it ended without one
    kill: Handle | None = None  # the pending SIGKILL of a stop
    updated_at: datetime = field(default_factory=utcnow)

    @property
    def arn(self) -> str:
        return str(self.task.task_arn)

    @property
    def region(self) -> str:
        return str(self.backend.region_name)

    @property
    def account(self) -> str:
        return str(self.backend.account_id)


def new_record(backend: Any, task: Any, default_stop_timeout: float) -> TaskRecord:
    """The record of a Fargate task moto's RunTask just made, its ECS fields set (lastStatus PROVISIONING)."""
    definition = backend.describe_task_definition(task.task_definition_arn)
    ecs_fields(backend, task, definition)
    stop_timeout = definition.container_definitions[0].get("stopTimeout")
    return TaskRecord(
        task=task,
        backend=backend,
        definition=definition,
        pool="FARGATE_SPOT" if task.capacity_provider_name == "FARGATE_SPOT" else "FARGATE",
        vcpus=task_vcpus(task.overrides, definition),
        stop_timeout=float(stop_timeout) if stop_timeout is not None else default_stop_timeout,
    )


def ecs_fields(backend: Any, task: Any, definition: Any) -> None:
    cpu, memory = task_cpu_memory(task.overrides, definition)
    task.status = "PROVISIONING"
    task.created_at = utcnow()
    task.launch_type = task.launch_type or "FARGATE"
    task.cpu, task.memory = (str(cpu) if cpu else None), (str(memory) if memory else None)
    if task.platform_version in (None, "", "LATEST"):
        task.platform_version = FARGATE_PLATFORM
    task.platform_family = "Linux"
    task.availability_zone = _zone(backend, task)
    task.started_by = task.started_by or None
    task.stopped_reason = None
    task.stop_code = None
    task.version = 0
    for attachment in task.attachments:
        attachment["status"] = "PRECREATED"
    container = task.containers[0]
    partition = task.task_arn.split(":")[1]
    container.container_arn = (
        f"arn:{partition}:ecs:{backend.region_name}:{backend.account_id}:container/"
        f"{task.cluster_name}/{task.id}/{uuid.uuid4()}"
    )
    container.task_arn = task.task_arn
    container.exitCode = None
    container.last_status = "PENDING"
    container.health_status = "UNKNOWN"
    container.cpu = str(container.cpu or 0)
    container.network_interfaces = [
        {"attachmentId": a["id"], "privateIpv4Address": attachment_detail(a, "privateIPv4Address")}
        for a in task.attachments
    ]


def attachment_detail(attachment: dict[str, Any], name: str) -> str | None:
    return next((d["value"] for d in attachment.get("details", []) if d.get("name") == name), None)


def _zone(backend: Any, task: Any) -> str:
    """The Availability Zone of the task's subnet in moto's EC2 (the Region's first zone if unknown)."""
    subnet = next((attachment_detail(a, "subnetId") for a in task.attachments), None)
    try:
        from moto.ec2.models import ec2_backends

        return str(ec2_backends[backend.account_id][backend.region_name].get_subnet(str(subnet)).availability_zone)
    except Exception:  # no subnet, or one moto does not know: keep a plausible zone
        return f"{backend.region_name}a"


def docker_name(record: TaskRecord) -> str:
    """A recognisable container name: ``ecs-emu-<family>-<revision>-<task id>``."""
    name = f"ecs-emu-{record.definition.family}-{record.definition.revision}-{record.task.id}"
    return "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in name)[:120]
