"""The reaper takes back the ECS events whose handling failed (airlaunch.launcher.failed_events).

The messages are what AWS puts in the queue, in the shapes it documents: a Lambda invocation
record of an asynchronous invocation that failed every attempt (Lambda Developer Guide,
"Capturing records of Lambda asynchronous invocations", its example record), and the bare event
EventBridge could not deliver (EventBridge User Guide, "Using dead-letter queues"). The event is
AWS's documented task state change (tests/fixtures/aws), timed now.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from airlaunch.launcher import failed_events
from airlaunch.protocol import EventReply
from tests.aws_shapes import stopped_event

ARN = "arn:aws:ecs:us-east-1:123456789012:task/dev/c13b4cb40f1f4fe4a2971f76ae5a47ad"
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:dev-launcher:$LATEST"


def _event(task_arn: str = ARN, age: timedelta = timedelta(minutes=4)) -> dict[str, Any]:
    event = stopped_event(task_arn)
    event["time"] = (datetime.now(UTC) - age).strftime("%Y-%m-%dT%H:%M:%SZ")
    return event


def _record(payload: Any) -> str:
    """Lambda's invocation record for an event that failed all its attempts."""
    return json.dumps({
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(),
        "requestContext": {"requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e", "functionArn": FUNCTION,
                           "condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": payload,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "RequestId: e4b46cbf Process exited before completing request"},
    })  # fmt: skip


@pytest.fixture
def queue() -> Iterator[tuple[Any, str]]:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        yield sqs, sqs.create_queue(QueueName="dev-failed-events")["QueueUrl"]


def _left(sqs: Any, url: str) -> int:
    attributes = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=attributes)["Attributes"]
    return sum(int(counts[name]) for name in attributes)


def test_a_failed_event_is_handled_again_and_then_deleted(queue: tuple[Any, str]) -> None:
    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody=_record(_event()))  # Lambda's retries were exhausted
    undelivered = _event(ARN.replace("c13b", "d24c"))
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(undelivered))  # EventBridge could not deliver it
    handled: list[dict[str, Any]] = []
    counts = failed_events.redrive_for_stack("dev", lambda event: handled.append(event) or {"ok": True}, sqs)
    assert counts == {"handled": 2, "dropped": 0, "failed_again": 0}
    assert sorted(event["detail"]["taskArn"] for event in handled) == sorted([ARN, undelivered["detail"]["taskArn"]])
    assert all(event["detail-type"] == "ECS Task State Change" for event in handled)  # the event, as first sent
    assert _left(sqs, url) == 0


def test_an_event_that_fails_again_stays_for_a_later_reap(queue: tuple[Any, str]) -> None:
    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody=_record(_event()))
    sqs.send_message(QueueUrl=url, MessageBody=_record(_event(ARN.replace("c13b", "e35d"))))

    def handle(event: dict[str, Any]) -> dict[str, Any]:
        if event["detail"]["taskArn"] == ARN:
            raise RuntimeError("ECS throttled the describe")  # the handler raises what should be retried
        return {"ok": False, "error": {"type": "LaunchError", "message": "no capacity", "retryable": True}}

    assert failed_events.redrive(sqs, url, handle) == {"handled": 0, "dropped": 0, "failed_again": 2}
    assert _left(sqs, url) == 2
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == [], "invisible until RETRY_AFTER_SECONDS"


def test_a_refused_event_a_failed_reap_and_an_old_event_are_not_kept(queue: tuple[Any, str]) -> None:
    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody=_record(_event()))  # refused for good: not retryable
    sqs.send_message(QueueUrl=url, MessageBody=_record({"action": "reap"}))  # the next reap runs in 5 minutes
    sqs.send_message(QueueUrl=url, MessageBody=_record(_event(ARN.replace("c13b", "f46e"), age=timedelta(hours=2))))
    sqs.send_message(QueueUrl=url, MessageBody="not json")
    handled: list[dict[str, Any]] = []

    def refuse(event: dict[str, Any]) -> dict[str, Any]:
        handled.append(event)
        return {"ok": False, "error": {"type": "InvalidRequest", "message": "not this cluster's task"}}

    assert failed_events.redrive(sqs, url, refuse) == {"handled": 1, "dropped": 3, "failed_again": 0}
    assert [event["detail"]["taskArn"] for event in handled] == [ARN], "the old event was never handled again"
    assert _left(sqs, url) == 0


def test_without_the_queue_nothing_is_done() -> None:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        assert failed_events.redrive_for_stack("dev", lambda event: pytest.fail("no event"), sqs) == {"queue": "none"}


def test_the_reaper_hands_failed_events_to_the_handler_again(
    queue: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """{"action": "reap"} reaps, then takes each failed event back through the handler, as if first delivered."""
    from airlaunch.launcher import handler as launcher_handler
    from airlaunch.launcher.settings import LauncherSettings

    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody=_record(_event()))
    seen: list[str] = []

    class Launcher:
        settings = LauncherSettings(backend="ecs", ecs_family_prefix="dev", ecs_cluster="dev")

        def reap(self) -> list[str]:
            seen.append("reap")
            return []

        def task_stopped(self, change: Any) -> EventReply:
            seen.append(f"task stopped: {change.task_arn}")
            return EventReply(recorded=change.task_arn)

    monkeypatch.setattr(launcher_handler, "get_launcher", Launcher)
    monkeypatch.setattr(failed_events, "sqs_client", lambda: sqs)
    answer = launcher_handler.handler({"action": "reap"})
    assert answer == {"ok": True, "reaped": [], "failed_events": {"handled": 1, "dropped": 0, "failed_again": 0}}
    assert seen == ["reap", f"task stopped: {ARN}"] and _left(sqs, url) == 0
    local = LauncherSettings(backend="docker")
    assert failed_events.after_reap(local, lambda event: pytest.fail("no queue locally")) is None
