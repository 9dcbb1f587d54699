"""AWS's documented inputs (tests/fixtures/aws, each file naming its source), fitted to a test's own task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "aws"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def stopped_event(task_arn: str, **detail: Any) -> dict[str, Any]:
    """AWS's documented STOPPED task state change event, about this task, as EventBridge delivers it."""
    event: dict[str, Any] = fixture("ecs-task-state-change-stopped.json")
    cluster_arn = task_arn.replace(":task/", ":cluster/").rsplit("/", 1)[0]
    event["resources"] = [task_arn]
    event["detail"].update(taskArn=task_arn, clusterArn=cluster_arn, **detail)
    for container in event["detail"]["containers"]:
        container["taskArn"] = task_arn
    return event
