"""Events a container platform sends the launcher, parsed before anything acts on them.

On AWS an EventBridge rule sends every ECS "Task State Change" event of the stack's cluster
to the launcher (infra/template.yaml, ``TaskStoppedRule``). The function cannot tell that
invocation from any other: whoever may ``lambda:InvokeFunction`` it (the Airflow role, by
design) can send a payload shaped like such an event. So an event is trusted for one thing
only, the task it names: the launcher reads that task back from ECS (DescribeTasks in its
own cluster) and acts on what ECS says, never on the event's status, overrides, command,
environment, role or tags. A forged event can at most make the launcher look at a task.

The shape checked is EventBridge's envelope ("AWS service event metadata", EventBridge
Events Reference) around ECS's detail ("Amazon ECS task state change events", ECS Developer
Guide); tests/fixtures/aws holds AWS's examples. Task and cluster ARNs must have ECS's long
ARN format (``task/<cluster>/<id>``), the only one for tasks since 2021.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from airlaunch.protocol import InvalidRequest

ECS_SOURCE = "aws.ecs"
TASK_STATE_CHANGE = "ECS Task State Change"
_PARTITION_REGION_ACCOUNT = r"arn:aws[a-z-]*:ecs:[a-z0-9-]{1,32}:\d{12}"
# A task id is 32 hex digits on AWS; moto (ECS mode's emulated account) writes a dashed UUID.
TASK_ARN = re.compile(rf"^{_PARTITION_REGION_ACCOUNT}:task/([A-Za-z0-9_-]{{1,255}})/([a-f0-9]{{32}}|[a-f0-9-]{{36}})$")
CLUSTER_ARN = re.compile(rf"^{_PARTITION_REGION_ACCOUNT}:cluster/([A-Za-z0-9_-]{{1,255}})$")
_LAST_STATUSES = {
    "PROVISIONING",
    "PENDING",
    "ACTIVATING",
    "RUNNING",
    "DEACTIVATING",
    "STOPPING",
    "DEPROVISIONING",
    "STOPPED",
    "DELETED",
}


def is_platform_event(event: dict[str, Any]) -> bool:
    """An EventBridge delivery (it has a ``source`` and a ``detail-type``), not a launcher call."""
    return "source" in event or "detail-type" in event


def _text(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{where}.{key}" if where else key, "is required and must be a non-empty string")
    return value


@dataclass(frozen=True)
class EcsTaskStateChange:
    """The task an ECS task state change event names, and nothing else of it worth trusting."""

    event_id: str
    task_arn: str
    cluster_arn: str
    last_status: str  # what the event claims; the launcher asks ECS

    @property
    def cluster_name(self) -> str:
        return self.cluster_arn.rsplit("/", 1)[1]

    @classmethod
    def parse(cls, event: dict[str, Any]) -> EcsTaskStateChange:
        """The event as EventBridge delivers it; InvalidRequest naming the first field that is off."""
        if event.get("version") != "0":
            raise InvalidRequest("version", "an EventBridge event has version '0'")
        if event.get("source") != ECS_SOURCE or event.get("detail-type") != TASK_STATE_CHANGE:
            raise InvalidRequest(
                "detail-type",
                f"the launcher takes only {TASK_STATE_CHANGE!r} events from {ECS_SOURCE!r}, "
                f"not {event.get('detail-type')!r} from {event.get('source')!r}",
            )
        event_id = _text(event, "id", "")
        detail = event.get("detail")
        if not isinstance(detail, dict):
            raise InvalidRequest("detail", "is required and must be an object")
        task_arn = _text(detail, "taskArn", "detail")
        cluster_arn = _text(detail, "clusterArn", "detail")
        task = TASK_ARN.match(task_arn)
        if task is None:
            raise InvalidRequest("detail.taskArn", f"{task_arn!r} is not an ECS task ARN (arn:aws:ecs:...:task/...)")
        cluster = CLUSTER_ARN.match(cluster_arn)
        if cluster is None:
            raise InvalidRequest("detail.clusterArn", f"{cluster_arn!r} is not an ECS cluster ARN")
        if task.group(1) != cluster.group(1) or task_arn.split(":")[:5] != cluster_arn.split(":")[:5]:
            raise InvalidRequest("detail.taskArn", f"{task_arn} is not a task of cluster {cluster_arn}")
        resources = event.get("resources")
        if not isinstance(resources, list) or task_arn not in resources:
            raise InvalidRequest("resources", "must list the task the event is about")
        last_status = _text(detail, "lastStatus", "detail")
        if last_status not in _LAST_STATUSES:
            raise InvalidRequest("detail.lastStatus", f"{last_status!r} is not an ECS task status")
        return cls(event_id=event_id, task_arn=task_arn, cluster_arn=cluster_arn, last_status=last_status)
