"""ECS task state change events, delivered as EventBridge delivers them to a Lambda target.

Each change of a task's ``lastStatus`` or ``desiredStatus`` becomes an event in EventBridge's
envelope ("AWS service event metadata", EventBridge Events Reference) around ECS's detail
("Amazon ECS task state change events", ECS Developer Guide): ISO-8601 string timestamps,
the shape of tests/fixtures/aws/ecs-task-state-change-*.json. The event is matched against
the enabled rules with an event pattern on the default bus of moto's events backend (the
rules CloudFormation or PutRule made), with moto's own pattern matcher; for each Lambda target
of a matching rule (its ``Input`` or ``InputTransformer`` applied, as moto does) an
asynchronous invocation is queued for the Lambda endpoint configured for that function.

Delivery is Lambda's asynchronous invocation, shortened for local use (assumption: AWS's
figures would make a test wait minutes):

* a function error (header ``X-Amz-Function-Error``, or a body ``{"errorType", "errorMessage"}``
  as the Runtime Interface Emulator answers) is retried ``retries`` times (Lambda's default:
  2) after ``retry_delays`` (Lambda: about 1 and 2 minutes; here 1 s and 2 s by default);
* an invocation that did not reach the function (no answer, HTTP 429 or 5xx: Lambda's or
  EventBridge's own retries) is retried with exponential backoff (1 s doubling, at most 30 s)
  until the event is ``max_event_age`` seconds old (EventBridge's default: 24 h; here 300 s);
* deliveries run on a small pool of threads fed by the shared timer, so the task runner only
  ever enqueues and a failing delivery never holds up another event.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from moto.events.models import events_backends
from moto.events.utils import EventTemplateParser

from airlaunch.stack.ecs_emulator.clock import Scheduler, iso_ms, iso_s

log = logging.getLogger(__name__)

DETAIL_TYPE = "ECS Task State Change"
SOURCE = "aws.ecs"


def envelope(account: str, region: str, detail: dict[str, Any], when: datetime) -> dict[str, Any]:
    """EventBridge's envelope around an ECS task's detail."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "account": account,
        "time": iso_s(when),
        "region": region,
        "resources": [detail["taskArn"]],
        "detail": detail,
    }


_TIMES = {
    "createdAt": "created_at",
    "connectivityAt": "connectivity_at",
    "pullStartedAt": "pull_started_at",
    "pullStoppedAt": "pull_stopped_at",
    "startedAt": "started_at",
    "stoppingAt": "stopping_at",
    "executionStoppedAt": "execution_stopped_at",
    "stoppedAt": "stopped_at",
}


def task_detail(task: Any, updated_at: datetime) -> dict[str, Any]:
    """ECS's ``detail`` of a task state change event, from moto's task as the emulator keeps it.

    Timestamps are ISO-8601 strings (DescribeTasks has them as epoch numbers); fields with no
    value yet are left out, as ECS leaves them out. The attachment type is ``eni``, as in ECS's
    events (DescribeTasks says ``ElasticNetworkInterface``).
    """
    c = task.containers[0]
    container = {
        "containerArn": c.container_arn,
        "lastStatus": c.last_status,
        "name": c.name,
        "image": c.image,
        "imageDigest": getattr(c, "image_digest", None),
        "runtimeId": getattr(c, "runtime_id", None),
        "taskArn": task.task_arn,
        "networkInterfaces": c.network_interfaces,
        "cpu": str(c.cpu or 0),
        "exitCode": c.exitCode,
        "reason": getattr(c, "reason", None),
    }
    detail = {
        "attachments": [
            {"id": a["id"], "type": "eni", "status": a["status"], "details": a["details"]} for a in task.attachments
        ],
        "availabilityZone": getattr(task, "availability_zone", None),
        "capacityProviderName": task.capacity_provider_name,
        "clusterArn": task.cluster_arn,
        "containers": [{k: v for k, v in container.items() if v is not None}],
        "launchType": task.launch_type,
        "cpu": getattr(task, "cpu", None),
        "memory": getattr(task, "memory", None),
        "desiredStatus": task.desired_status,
        "group": task.group,
        "lastStatus": task.status,
        "overrides": task.overrides or {"containerOverrides": []},
        "connectivity": getattr(task, "connectivity", None),
        "updatedAt": iso_ms(updated_at),
        "startedBy": task.started_by,
        "taskArn": task.task_arn,
        "taskDefinitionArn": task.task_definition_arn,
        "version": task.version,
        "platformVersion": task.platform_version,
        "stopCode": getattr(task, "stop_code", None),
        "stoppedReason": task.stopped_reason,
    }
    for key, attribute in _TIMES.items():
        value = getattr(task, attribute, None)
        detail[key] = iso_ms(value) if value is not None else None
    return {k: v for k, v in detail.items() if v is not None}


@dataclass
class Delivery:
    url: str
    function: str
    payload: bytes
    event_id: str
    born: float  # monotonic time of the event
    attempt: int = 0  # invocations made
    function_errors: int = 0


class EventDelivery:
    """Match events against moto's rules and invoke the Lambda endpoints asynchronously."""

    def __init__(
        self,
        scheduler: Scheduler,
        lambda_endpoints: dict[str, str],
        retries: int = 2,
        retry_delays: tuple[float, ...] = (1.0, 2.0),
        max_event_age: float = 300.0,
        workers: int = 4,
        timeout: float = 60.0,
    ) -> None:
        self._scheduler = scheduler
        self._endpoints = dict(lambda_endpoints)  # function name -> URL; "" for any function
        self._retries = retries
        self._delays = retry_delays or (1.0,)
        self._max_age = max_event_age
        self._timeout = timeout
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._closing = False
        self.delivered = 0
        self.dropped = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"ecs-emulator-lambda-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        """Stop delivering: what is still queued is dropped (the emulator is going away)."""
        self._closing = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=2)

    # -- matching ------------------------------------------------------------------------------
    def publish(self, event: dict[str, Any]) -> int:
        """Queue one invocation per Lambda target of each matching rule; returns how many were queued."""
        try:
            bus = events_backends[event["account"]][event["region"]].event_buses.get("default")
        except KeyError:
            return 0
        queued = 0
        for rule in list(bus.rules.values()) if bus else []:
            if rule.state != "ENABLED" or rule.scheduled_expression or not rule.event_pattern.get_pattern():
                continue
            if not rule.event_pattern.matches_event(event):  # type: ignore[arg-type]
                continue
            for target in list(rule.targets):
                queued += self._queue_target(rule.name, target, event)
        return queued

    def publish_to(self, rule: str, targets: list[dict[str, Any]], event: dict[str, Any]) -> int:
        """Queue one invocation per Lambda target of a rule that fired by itself (a schedule)."""
        return sum(self._queue_target(rule, target, event) for target in targets)

    def _queue_target(self, rule: str, target: dict[str, Any], event: dict[str, Any]) -> int:
        arn = str(target.get("Arn", ""))
        parts = arn.split(":")
        if len(parts) < 7 or parts[2] != "lambda" or parts[5] != "function":
            return 0  # moto's own targets (SQS, logs...) are moto's business; this emulator invokes Lambdas
        function = parts[6]
        url = self._endpoints.get(function) or self._endpoints.get("")
        if not url:
            log.warning("rule %s matched, but no --lambda-endpoint for function %s: event %s not delivered",
                        rule, function, event["id"])  # fmt: skip
            self.dropped += 1
            return 0
        if "Input" in target:
            body: Any = json.loads(target["Input"])
        elif "InputTransformer" in target:
            transformer = target["InputTransformer"]
            body = EventTemplateParser.parse(
                input_template=transformer.get("InputTemplate"),
                input_paths_map=transformer.get("InputPathsMap", {}),
                event={**event, "ingestion-time": event["time"]},  # type: ignore[typeddict-item]
            )
        else:
            body = event
        payload = json.dumps(body).encode()
        self._queue.put(Delivery(url, function, payload, event["id"], time.monotonic()))
        return 1

    # -- delivery -------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            delivery = self._queue.get()
            if delivery is None or self._closing:
                return
            try:
                self._attempt(delivery)
            except Exception:  # a bug here must not end the worker (the other events still go out)
                log.exception("delivery of event %s failed unexpectedly", delivery.event_id)

    def _attempt(self, d: Delivery) -> None:
        d.attempt += 1
        outcome, detail = self._invoke(d)
        if outcome == "ok":
            self.delivered += 1
            return
        if outcome == "function-error":
            d.function_errors += 1
            if d.function_errors > self._retries:
                log.warning("event %s: function %s failed %d times (%s); dropped as Lambda does",
                            d.event_id, d.function, d.function_errors, detail)  # fmt: skip
                self.dropped += 1
                return
            delay = self._delays[min(d.function_errors - 1, len(self._delays) - 1)]
        else:
            delay = min(30.0, 2.0 ** (d.attempt - 1))
            if time.monotonic() + delay - d.born > self._max_age:
                log.warning("event %s: %s unreachable past the event's maximum age (%s); dropped",
                            d.event_id, d.url, detail)  # fmt: skip
                self.dropped += 1
                return
        log.info("event %s to %s: %s; retrying in %.1f s", d.event_id, d.function, detail, delay)
        if not self._closing:
            self._scheduler.call_later(delay, self._queue.put, d)

    def _invoke(self, d: Delivery) -> tuple[str, str]:
        request = urllib.request.Request(
            d.url,
            data=d.payload,
            method="POST",
            headers={"Content-Type": "application/json", "X-Amz-Invocation-Type": "Event"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                body = response.read()
                function_error = response.headers.get("X-Amz-Function-Error")
        except urllib.error.HTTPError as exc:
            return "unreachable", f"HTTP {exc.code}"
        except OSError as exc:
            return "unreachable", str(exc)
        if function_error or _is_error_body(body):
            return "function-error", body[:300].decode("utf-8", "replace")
        return "ok", ""


def _is_error_body(body: bytes) -> bool:
    try:
        answer = json.loads(body or b"null")
    except ValueError:
        return False
    return isinstance(answer, dict) and "errorType" in answer and "errorMessage" in answer
