"""ECS task state change events parsed as strictly as a launch request (AWS's examples in tests/fixtures/aws)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from airlaunch.launcher.platform_events import EcsTaskStateChange, is_platform_event
from airlaunch.protocol import InvalidRequest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "aws"


def _fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text()))


@pytest.mark.parametrize("name", ["ecs-task-state-change-stopped.json", "ecs-task-state-change-running.json"])
def test_aws_examples_parse_into_the_task_they_name(name: str) -> None:
    event = _fixture(name)
    change = EcsTaskStateChange.parse(event)
    assert is_platform_event(event)
    assert change.task_arn == event["detail"]["taskArn"] == event["resources"][0]
    assert change.cluster_arn.endswith(":cluster/FargateCluster") and change.cluster_name == "FargateCluster"
    assert change.last_status == event["detail"]["lastStatus"] and change.event_id == event["id"]


SHORT_TASK_ARN = "arn:aws:ecs:us-west-2:111122223333:task/c13b4cb40f1f4fe4a2971f76ae5a47ad"


def _broken(change: dict[str, Any]) -> dict[str, Any]:
    event = copy.deepcopy(_fixture("ecs-task-state-change-stopped.json"))
    for path, value in change.items():
        *parents, last = path.split(".")
        target = event
        for part in parents:
            target = target[part]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return event


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"version": "1"}, "version"),
        ({"source": "aws.ec2"}, "detail-type"),
        ({"detail-type": "ECS Container Instance State Change"}, "detail-type"),
        ({"id": None}, "id"),
        ({"detail": "STOPPED"}, "detail"),
        ({"detail.taskArn": None}, "detail.taskArn"),
        (
            {"detail.taskArn": "arn:aws:ecs:us-west-2:111122223333:task/c13b4cb40f1f4fe4a2971f76ae5a47ad"},
            "detail.taskArn",
        ),
        ({"detail.taskArn": "arn:aws:lambda:us-west-2:111122223333:function:x"}, "detail.taskArn"),
        ({"detail.clusterArn": "FargateCluster"}, "detail.clusterArn"),
        ({"detail.clusterArn": "arn:aws:ecs:us-west-2:111122223333:cluster/Other"}, "detail.taskArn"),
        ({"detail.clusterArn": "arn:aws:ecs:eu-west-1:111122223333:cluster/FargateCluster"}, "detail.taskArn"),
        ({"resources": []}, "resources"),
        ({"detail.lastStatus": "DONE"}, "detail.lastStatus"),
        ({"detail.lastStatus": 3}, "detail.lastStatus"),
    ],
)
def test_a_malformed_event_is_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        EcsTaskStateChange.parse(_broken(change))
    assert refused.value.field == field


def test_a_launcher_call_is_not_a_platform_event() -> None:
    assert not is_platform_event({"action": "launch", "request": {}})
    assert not is_platform_event({"action": "task_stopped", "detail": {}})
