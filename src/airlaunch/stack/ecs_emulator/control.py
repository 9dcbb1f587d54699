"""The emulator's own small HTTP API, for tests and fault drills: JSON in, JSON out.

Served on the emulator's port under ``/_airlaunch/ecs/``, apart from every AWS API:

| request | body | does |
|---|---|---|
| ``GET health`` | | ``{"ok": true, ...}`` once serving |
| ``GET tasks`` | | the tasks it runs, with status and container |
| ``GET limits`` / ``POST limits`` | changes, as LimitSettings.update takes them | what is enforced / change it |
| ``POST spot-interruption`` | ``{"task": ARN, "graceSeconds": N?}`` | interrupt a task as Fargate Spot does |
| ``POST fail-run-task`` | ``{"count": N, "reason": "capacity" or "vcpu-quota"}`` | the next N RunTasks start nothing |
| ``POST throttle`` | ``{"action": "RunTask", "count": N}`` | the next N calls of an ECS action are throttled |
| ``POST stop-all`` | ``{"reason": "..."?}`` | StopTask every task still running |
| ``GET calls?since=T&until=T`` | | ECS calls answered then (epoch s), by action, outcome and second (calls.py) |

A count replaces the one asked before; 0 clears it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from airlaunch.stack.ecs_emulator.calls import CallCounter
from airlaunch.stack.ecs_emulator.fleet import Fleet
from airlaunch.stack.ecs_emulator.limits import FAILURE_REASONS, Limits

PREFIX = "/_airlaunch/ecs/"
StartResponse = Callable[..., Any]


class BadRequest(Exception):
    pass


class ControlApi:
    def __init__(
        self, fleet: Fleet, limits: Limits, info: Callable[[], dict[str, Any]], calls: CallCounter | None = None
    ) -> None:
        self._fleet = fleet
        self._limits = limits
        self._info = info
        self._calls = calls or CallCounter()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        route = environ.get("PATH_INFO", "")[len(PREFIX) :].strip("/")
        try:
            body = self._body(environ) if method == "POST" else dict(parse_qsl(environ.get("QUERY_STRING", "")))
            handler = self._routes().get((method, route))
            if handler is None:
                return _answer(start_response, "404 Not Found", {"error": f"no {method} {PREFIX}{route}"})
            return _answer(start_response, "200 OK", handler(body))
        except (BadRequest, ValueError, KeyError, TypeError) as exc:
            return _answer(start_response, "400 Bad Request", {"error": str(exc)})

    def _routes(self) -> dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            ("GET", "health"): lambda _: {"ok": True, **self._info()},
            ("GET", "tasks"): lambda _: {"tasks": self._fleet.describe()},
            ("GET", "limits"): lambda _: self._limits.describe(),
            ("GET", "calls"): self._describe_calls,
            ("POST", "limits"): self._set_limits,
            ("POST", "spot-interruption"): self._spot,
            ("POST", "fail-run-task"): self._fail_run_task,
            ("POST", "throttle"): self._throttle,
            ("POST", "stop-all"): lambda b: {"stopping": self._fleet.stop_all(str(b.get("reason") or "stop-all"))},
        }

    @staticmethod
    def _body(environ: dict[str, Any]) -> dict[str, Any]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        body = json.loads(raw or b"{}")
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return body

    def _set_limits(self, body: dict[str, Any]) -> dict[str, Any]:
        self._limits.configure(body)
        return self._limits.describe()

    def _describe_calls(self, query: dict[str, Any]) -> dict[str, Any]:
        until = query.get("until")
        return self._calls.describe(float(query.get("since") or 0), None if until is None else float(until))

    def _spot(self, body: dict[str, Any]) -> dict[str, Any]:
        task = str(body["task"])
        grace = body.get("graceSeconds")
        if not self._fleet.interrupt(task, None if grace is None else float(grace)):
            raise BadRequest(f"task {task} is not one of this emulator's running tasks")
        return {"interrupted": task}

    def _fail_run_task(self, body: dict[str, Any]) -> dict[str, Any]:
        reason = str(body.get("reason", "capacity"))
        if reason not in FAILURE_REASONS:
            raise BadRequest(f"reason must be one of {sorted(FAILURE_REASONS)}")
        count = int(body.get("count", 1))
        self._limits.fail_next_run_tasks(FAILURE_REASONS[reason], count)
        return {"failing": count, "reason": FAILURE_REASONS[reason]}

    def _throttle(self, body: dict[str, Any]) -> dict[str, Any]:
        action, count = str(body["action"]), int(body.get("count", 1))
        self._limits.throttle_next(action, count)
        return {"throttling": action, "count": count}


def _answer(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body, default=str).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
