"""ECS events whose handling failed, taken back by the reaper and handled again.

EventBridge invokes the launcher asynchronously with each "ECS Task State Change" of a stopped
task. Two things can lose such an event, and the stack sends both to one SQS queue,
``<stack>-failed-events`` (airlaunch.aws_names.failed_events_queue):

* EventBridge cannot deliver it (the function throttled past the rule's retry policy, missing
  permissions): the rule target's dead-letter queue receives the event itself, with the
  attributes RULE_ARN, TARGET_ARN and ERROR_CODE (EventBridge User Guide, "Using dead-letter
  queues to process undelivered events": https://docs.aws.amazon.com/eventbridge/latest/userguide/rule-dlq.html).
* Lambda accepted it but the handler failed on every attempt (two retries by default): the
  function's on-failure destination receives an invocation record, the event under
  ``requestPayload``, ``requestContext.condition`` saying why (``RetriesExhausted``,
  ``EventAgeExceeded``) (Lambda Developer Guide, "Capturing records of Lambda asynchronous
  invocations": https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html).

Every reap (the ``reap`` call, every 5 minutes) calls :func:`redrive`: it receives up to ten
messages and hands each ECS task state change event, as it was first delivered, to the launcher's
handler again. A message is deleted once its event was handled, or refused for good (a
non-retryable answer); it stays when handling fails again, invisible for
:data:`RETRY_AFTER_SECONDS`, then the next reap tries again. Anything else in the queue (the
record of a failed reap: the next one runs in 5 minutes anyway) and events older than
:data:`MAX_EVENT_AGE_SECONDS` (by then Airflow's trigger has settled the try through its own
describe fallback, and starting a task again would be late) are deleted and logged, never handled.

The queue name follows from the stack name the launcher already has (AIRLAUNCH_ECS_FAMILY_PREFIX,
the stack on AWS), so the function needs no setting of its own; without such a queue (the local
Docker backend, a stack older than the queue) nothing is done.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from airlaunch.aws_names import failed_events_queue
from airlaunch.launcher.settings import LauncherSettings
from airlaunch.protocol import refusal_of

log = logging.getLogger(__name__)

MAX_MESSAGES = 10  # SQS's most per ReceiveMessage; a reap's budget within the function's 60 s
RETRY_AFTER_SECONDS = 900  # a message whose event failed again is invisible this long (the receive's visibility)
MAX_EVENT_AGE_SECONDS = 3600

Handle = Callable[[dict[str, Any]], dict[str, Any]]


# A few quick tries: the reap this runs in must not spend the function's 60 s on an unreachable queue.
_SQS_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=10)


@cache
def sqs_client() -> Any:
    """The launcher's SQS client (its execution role's credentials), made once per execution environment."""
    return boto3.client("sqs", config=_SQS_CONFIG)


def event_of(body: str) -> dict[str, Any] | None:
    """The event a message of the queue carries: a Lambda invocation record's ``requestPayload``, or the
    event EventBridge could not deliver; None for anything else."""
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if isinstance(message, dict) and "requestContext" in message and "requestPayload" in message:
        message = message["requestPayload"]
    return message if isinstance(message, dict) else None


def is_task_state_change(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.ecs" and event.get("detail-type") == "ECS Task State Change"


def age_seconds(event: dict[str, Any], sent_ms: str | None, now: float) -> float:
    """Seconds since the event happened (its ``time``), else since the message was sent."""
    try:
        happened = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        happened = int(sent_ms) / 1000 if sent_ms and sent_ms.isdigit() else now
    return now - happened


def redrive(
    sqs: Any,
    queue_url: str,
    handle: Handle,
    *,
    now: Callable[[], float] = time.time,
    max_messages: int = MAX_MESSAGES,
) -> dict[str, int]:
    """Handle the queue's failed events again (see the module's docstring); counts of what became of them.

    Guarantees: a message is deleted only after its event was handled (an ``ok`` answer, or a
    refusal that is not retryable), or when it is not an ECS task state change, or older than
    :data:`MAX_EVENT_AGE_SECONDS`; every other message stays in the queue.
    """
    received = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=max_messages,
        WaitTimeSeconds=0,
        VisibilityTimeout=RETRY_AFTER_SECONDS,
        MessageSystemAttributeNames=["SentTimestamp"],
    )
    counts = {"handled": 0, "dropped": 0, "failed_again": 0}
    for message in received.get("Messages", []):
        event = event_of(message.get("Body", ""))
        sent = message.get("Attributes", {}).get("SentTimestamp")
        if event is None or not is_task_state_change(event):
            log.warning("failed events: dropped a message that holds no ECS task state change: %.300s", message["Body"])
            counts["dropped"] += 1
        elif (age := age_seconds(event, sent, now())) > MAX_EVENT_AGE_SECONDS:
            log.warning("failed events: dropped event %s, %.0f s old", event.get("id"), age)
            counts["dropped"] += 1
        else:
            try:
                answer = handle(event)
                refusal = refusal_of(answer)
            except Exception:  # the handler raises what it wants retried
                log.exception(
                    "failed events: event %s failed again; retried in %d s", event.get("id"), RETRY_AFTER_SECONDS
                )
                counts["failed_again"] += 1
                continue
            if refusal is not None and refusal.retryable:
                log.warning("failed events: event %s failed again (%s)", event.get("id"), refusal.message)
                counts["failed_again"] += 1
                continue
            log.info("failed events: handled event %s again: %s", event.get("id"), json.dumps(answer)[:300])
            counts["handled"] += 1
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return counts


def redrive_for_stack(stack: str, handle: Handle, sqs: Any | None = None) -> dict[str, Any]:
    """:func:`redrive` on the stack's failed-events queue; what happened, for the reap's answer.

    Never raises: the reap it runs in must go on whatever SQS answers.
    """
    sqs = sqs if sqs is not None else sqs_client()
    name = failed_events_queue(stack)
    try:
        queue_url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return redrive(sqs, queue_url, handle)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            return {"queue": "none"}
        log.exception("failed events: reading queue %s failed", name)
        return {"error": f"{code}: {exc.response.get('Error', {}).get('Message', '')}"}
    except BotoCoreError as exc:
        log.exception("failed events: reading queue %s failed", name)
        return {"error": str(exc)}


def after_reap(settings: LauncherSettings, handle: Handle) -> dict[str, Any] | None:
    """What a reap adds to its answer: on ECS, the failed events handled again (:func:`redrive_for_stack`);
    None elsewhere.

    The stack is AIRLAUNCH_ECS_FAMILY_PREFIX, which the template sets to the stack's name.
    """
    if settings.backend != "ecs":
        return None
    return redrive_for_stack(settings.ecs_family_prefix, handle)
