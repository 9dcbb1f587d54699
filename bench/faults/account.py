"""The fault suite's view of the ECS mode's emulated AWS account, from the outside as an operator has it.

Two doors, both on the emulator's port (``StackConfig.ecs_url``): ECS's own API (boto3, as the console
or the CLI would call it: the tasks of a run, their stop codes, StopTask, a new task definition
revision) and the emulator's control API (``/_airlaunch/ecs/``: the faults AWS makes that no API call
can, such as a Spot interruption, no capacity, a full vCPU quota or throttling, and the count of
the calls it answered). Nothing here reaches into the launcher: what a row judges is what Airflow,
S3 and ECS show.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import defaultdict
from typing import Any

import boto3

from airlaunch.launcher.backends.ecs import ecs_tags
from airlaunch.stack import StackConfig
from airlaunch.stack.ecs_account import STACK_NAME

# ECS's own tasks of a catalog task: the deployed template names families <stack>-<catalog task>
DIAGNOSTIC_FAMILY = f"{STACK_NAME}-diagnostic"
_REVISION_KEYS = ("family", "taskRoleArn", "executionRoleArn", "networkMode", "containerDefinitions",
                  "requiresCompatibilities", "cpu", "memory", "runtimePlatform")  # fmt: skip


class EcsAccount:
    def __init__(self, cfg: StackConfig) -> None:
        self.url = cfg.ecs_url
        self.cluster = STACK_NAME
        self.ecs = boto3.client(
            "ecs", endpoint_url=self.url, region_name=cfg.region, aws_access_key_id="test", aws_secret_access_key="test"
        )

    # -- the control API ----------------------------------------------------------------------------
    def control(self, route: str, body: dict[str, Any] | None = None) -> Any:
        """A control API request: POST with a body, else GET (``route`` may carry a query string)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}/_airlaunch/ecs/{route}", data=data,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def container_label(self) -> str:
        """The label ("key=value") every task container of the running emulator carries."""
        return str(self.control("health")["container_label"])

    def run_task_calls(self, since: float) -> dict[str, int]:
        """RunTask calls answered since ``since``, by outcome (ok, throttled, failures, error)."""
        counted = self.control(f"calls?since={since:.0f}")["actions"].get("RunTask") or {}
        return {k: int(v) for k, v in counted.items() if k in ("ok", "throttled", "failures", "error")}

    # -- ECS's API ----------------------------------------------------------------------------------
    def tasks_of_run(self, run_id: str) -> list[dict[str, Any]]:
        """Every ECS task of the run (any try, started again ones too), as DescribeTasks shows it, with tags."""
        arns = [
            arn
            for status in ("RUNNING", "STOPPED")
            for page in self.ecs.get_paginator("list_tasks").paginate(cluster=self.cluster, desiredStatus=status)
            for arn in page["taskArns"]
        ]
        wanted = ecs_tags({"run_id": run_id})[0]["value"]
        found = []
        for first in range(0, len(arns), 100):
            described = self.ecs.describe_tasks(cluster=self.cluster, tasks=arns[first : first + 100], include=["TAGS"])
            found += [t for t in described["tasks"] if tags(t).get("airlaunch.run_id") == wanted]
        return sorted(found, key=lambda t: t.get("createdAt") or 0)

    def settled_tasks(self, run_id: str, timeout: float = 30) -> list[dict[str, Any]]:
        """The run's tasks once every one is STOPPED (or as they are after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            tasks = self.tasks_of_run(run_id)
            if all(t["lastStatus"] == "STOPPED" for t in tasks) or time.monotonic() > deadline:
                return tasks
            time.sleep(0.5)

    def image_of(self, family: str) -> str:
        """The image the family's latest revision runs."""
        latest = self.ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
        return str(latest["containerDefinitions"][0]["image"])

    def register_image(self, family: str, image: str) -> None:
        """A new revision of ``family`` like its latest, running ``image`` (RunTask of the family takes it)."""
        latest = self.ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
        revision = {key: latest[key] for key in _REVISION_KEYS if latest.get(key)}
        revision["containerDefinitions"] = [{**revision["containerDefinitions"][0], "image": image}]
        self.ecs.register_task_definition(**revision)


def tags(task: dict[str, Any]) -> dict[str, str]:
    return {str(tag["key"]): str(tag["value"]) for tag in task.get("tags") or []}


def tasks_by_try(tasks: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """ECS tasks per try: (map index, try number, task-instance id) from their tags."""
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for task in tasks:
        t = tags(task)
        key = (t.get("airlaunch.map_index", ""), t.get("airlaunch.try_number", ""), t.get("airlaunch.ti_id", ""))
        grouped[key].append(task)
    return grouped
