"""The few changes the emulator makes to moto's ECS, in-process, and nothing else.

moto's ECS keeps the books (clusters, task definitions, tasks, ARNs, tags, DescribeTasks'
rendering, which takes any attribute set on its objects); it runs nothing. The hooks:

* ``run_task``: the Fargate tasks moto creates (no container instance) are handed to the
  emulator's fleet, which gives them ECS's first state and starts their containers. A RunTask
  repeating an earlier ``clientToken`` gets that call's tasks back, as ECS's idempotency does
  (moto ignores the token; the server marks such a call, see :func:`reusing`).
* ``stop_task``: moto marks a task STOPPED at once; ECS only sets desiredStatus and stops the
  task when its container has exited. The fleet does that for its tasks.
* the state manager: moto advances a task's status each time it is described
  (``ecs::task``, RUNNING -> DEACTIVATING -> ...); the fleet owns status, so that transition is
  set to never progress while the emulator runs.
* ``_calculate_task_resource_requirements``: moto adds up container ``memory`` and fails on a
  Fargate task definition that sets memory only at task level (valid on AWS); such a task
  gets zero requirements (they only matter for EC2 placement).

The hooks are installed once per process; with no fleet installed they do what moto does.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from moto.ecs.models import EC2ContainerServiceBackend
from moto.moto_api import state_manager

if TYPE_CHECKING:
    from airlaunch.stack.ecs_emulator.fleet import Fleet

_fleet: Fleet | None = None
_local = threading.local()
_original: dict[str, Any] = {}


def install(fleet: Fleet) -> None:
    global _fleet
    if not _original:
        _original["run_task"] = EC2ContainerServiceBackend.run_task
        _original["stop_task"] = EC2ContainerServiceBackend.stop_task
        _original["requirements"] = EC2ContainerServiceBackend._calculate_task_resource_requirements
        EC2ContainerServiceBackend.run_task = _run_task  # type: ignore[method-assign]
        EC2ContainerServiceBackend.stop_task = _stop_task  # type: ignore[method-assign]
        EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(_requirements)  # type: ignore[method-assign]
    _fleet = fleet
    state_manager.set_transition("ecs::task", {"progression": "manual", "times": sys.maxsize})


def uninstall() -> None:
    global _fleet
    _fleet = None
    state_manager.unset_transition("ecs::task")


@contextlib.contextmanager
def reusing(task_arns: list[str]) -> Iterator[None]:
    """Within this block (one request's thread), RunTask answers with these tasks instead of new ones."""
    _local.reuse = task_arns
    try:
        yield
    finally:
        _local.reuse = None


@contextlib.contextmanager
def deferring_starts() -> Iterator[None]:
    """Tasks RunTask makes within this block start when it ends (after the answer, PROVISIONING, is rendered)."""
    _local.deferred = []
    try:
        yield
    finally:
        deferred, _local.deferred = _local.deferred, None
        if _fleet is not None:
            for record in deferred:
                _fleet.begin(record)


def _run_task(self: EC2ContainerServiceBackend, *args: Any, **kwargs: Any) -> list[Any]:
    fleet, reuse = _fleet, getattr(_local, "reuse", None)
    if fleet is not None and reuse:
        found = [fleet.find(arn) for arn in reuse]
        if all(task is not None for task in found):
            return found
    tasks: list[Any] = _original["run_task"](self, *args, **kwargs)
    if fleet is not None:
        deferred = getattr(_local, "deferred", None)
        for task in tasks:
            if task.container_instance_arn is None:  # moto's Fargate path
                record = fleet.adopt(self, task, start=deferred is None)
                if deferred is not None:
                    deferred.append(record)
    return tasks


def _stop_task(self: EC2ContainerServiceBackend, cluster_str: str, task_str: str, reason: str) -> Any:
    fleet = _fleet
    if fleet is not None:
        self._get_cluster(cluster_str)  # ClusterNotFoundException as moto raises it
        task = fleet.find(task_str, cluster_str)
        if task is not None and fleet.stop(task, reason):
            return task
    return _original["stop_task"](self, cluster_str, task_str, reason)


def _requirements(task_definition: Any) -> dict[str, Any]:
    try:
        return dict(_original["requirements"](task_definition))
    except TypeError:
        return {"CPU": 0, "MEMORY": 0, "PORTS": [], "PORTS_UDP": []}
