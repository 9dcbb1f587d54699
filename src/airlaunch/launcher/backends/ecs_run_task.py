"""RunTask within the launch budget and Fargate's launch rate: one launch's calls, retries included.

A launch may take at most ``LauncherSettings.launch_budget_seconds``, which keeps every retry inside
one invocation well short of the function's timeout (60 s in infra/template.yaml); once it is spent
the error is ``retryable`` and Airflow's hook tries the whole launch again later, which finds this
try's task if one started. What is tried again: ECS throttling, answering 5xx or not at all, and a
placement failure whose reason may pass (no capacity or agent just now, the account's Fargate vCPU
quota). Pauses are exponential with full jitter (0.5 s doubling, at most 5 s), so that a fan-out's
launches spread out instead of coming back together. An error may hide a started task, so a retry
after one keeps the clientToken (ECS answers with that task); a placement failure started nothing, so
its retry carries a new token (the old one's answer would be the same failure).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from airlaunch.aws_errors import is_transient
from airlaunch.launcher.backends.base import LaunchError
from airlaunch.launcher.settings import LauncherSettings
from airlaunch.protocol import RunIdentity

log = logging.getLogger(__name__)

# RunTask failures[] that started nothing and may pass: no capacity or agent just now (RESOURCE:*,
# AGENT; "Capacity is unavailable at this time...", AWS Knowledge Center ecs-fargate-runtask-capacity),
# and the account's concurrent Fargate vCPU (formerly task count) quota, which frees up as tasks end
# ("You've reached the limit on the number of vCPUs you can run concurrently"; ECS service quotas).
_PASSING_FAILURES = re.compile(r"^(RESOURCE:|AGENT)|capacity is unavailable|reached the limit on the number of", re.I)

_clock, _sleep = time.monotonic, time.sleep  # module attributes, so that tests can run a budget on a fake clock


def client_error(exc: ClientError | BotoCoreError) -> str:
    """An AWS error as one line: ``Code: message``."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', exc)}"
    return str(exc)


def _may_pass(failure: dict[str, Any]) -> bool:
    return bool(_PASSING_FAILURES.search(str(failure.get("reason", ""))))


def client_token(identity: RunIdentity, start_attempt: str) -> str:
    """RunTask's idempotency token: the try's digest, so a retried launch gets its task back from ECS;
    a start after failed starts has a token of its own (the failed start's would return that task)."""
    return identity.digest if start_attempt == "1" else f"{identity.digest[:40]}-start-{start_attempt}"


def _pause(attempt: int, deadline: float) -> bool:
    """Sleep before retry ``attempt + 1`` (full jitter); False, without sleeping, once the budget is spent."""
    pause = random.uniform(0, min(5.0, 0.5 * 2**attempt))
    if _clock() + pause >= deadline:
        return False
    _sleep(pause)
    return True


class RunTaskPacer:
    """Spaces one execution environment's RunTask calls (retries included) ``interval`` seconds apart.

    Lambda runs each invocation of an execution environment alone, and at most the function's reserved
    concurrency of them at once, so environments that each keep concurrency / rate seconds between their
    calls stay together within ``rate`` calls a second: Fargate's sustained task launch rate, whatever the
    size of the fan-out. Nothing has to be shared between environments for that.
    """

    def __init__(self, settings: LauncherSettings) -> None:
        self.interval = max(1, settings.launcher_concurrency) / max(settings.ecs_run_task_rate, 0.001)
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = _clock()
            turn = max(now, self._next)
            self._next = turn + self.interval
        if turn > now:
            _sleep(turn - now)


def run_task(
    client: Any, params: dict[str, Any], what: str, budget_seconds: float, pacer: RunTaskPacer
) -> tuple[str, str | None]:
    """RunTask with ``params``, tried again within ``budget_seconds`` as the module says, every attempt
    waiting its turn (``pacer``); the task's ARN and its createdAt (ISO 8601, milliseconds)."""
    deadline = _clock() + budget_seconds
    for attempt in range(1, 1000):
        pacer.wait()
        try:
            response = client.run_task(**params)
        except (ClientError, BotoCoreError) as exc:
            transient = is_transient(exc)
            message = (
                f"ECS refused to run {what} (task definition {params['taskDefinition']!r}, "
                f"cluster {params['cluster']!r}): {client_error(exc)}"
            )
            if not transient or not _pause(attempt, deadline):
                raise LaunchError(message, retryable=transient) from exc
            log.warning("%s; trying again (attempt %d)", message, attempt + 1)
            continue
        failures = response.get("failures") or []
        if response.get("tasks") and not failures:
            task = response["tasks"][0]
            log.info("started ECS task %s (%s)", task["taskArn"], params["startedBy"])
            created = task.get("createdAt")
            return task["taskArn"], created.isoformat(timespec="milliseconds") if created else None
        reasons = "; ".join(f"{f.get('reason')} {f.get('detail') or ''} ({f.get('arn', '')})" for f in failures)
        passing = bool(failures) and all(_may_pass(f) for f in failures)
        message = f"ECS could not place {what}: {reasons or 'no task returned'}"
        if not passing or not _pause(attempt, deadline):
            raise LaunchError(message, passing)
        log.warning("%s; trying again (attempt %d)", message, attempt + 1)
        params = {**params, "clientToken": f"{params['clientToken'][:40]}-{time.time_ns()}"}
    raise AssertionError("unreachable")
