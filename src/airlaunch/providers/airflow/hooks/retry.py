"""The retry policy that waits out the AWS errors which pass by themselves (tenacity).

Which errors those are (a connection refused or reset, a timeout, throttling, 5xx answers, a
launch the launcher calls retryable) is decided by airlaunch.aws_errors.is_transient, the
classifier the launcher's ECS backend uses too; everything else is raised at once. botocore's
own retries count attempts; these count seconds from the first failure, so an outage of a
minute is ridden out whatever the attempts cost, and a first attempt that waited long (a
launch queued behind hundreds) does not eat the budget.
"""

from __future__ import annotations

import logging
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, wait_exponential
from tenacity.stop import stop_base

from airlaunch.aws_errors import is_transient

__all__ = ["aretrying", "is_transient", "retrying"]

log = logging.getLogger(__name__)


class StopAfterOutage(stop_base):
    """Stop once the failures have lasted ``budget`` seconds, counted from the first one."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.first_failure: float | None = None

    def __call__(self, retry_state: RetryCallState) -> bool:
        now = retry_state.outcome_timestamp or 0.0
        if self.first_failure is None:
            self.first_failure = now
        return now - self.first_failure >= self.budget


def _policy(budget: float, cap: float, what: str) -> dict[str, Any]:
    def before_sleep(state: Any) -> None:
        log.warning("%s failed (%s); retrying in %.1f s", what, state.outcome.exception(), state.next_action.sleep)

    return {
        "stop": StopAfterOutage(budget),
        "wait": wait_exponential(multiplier=0.5, max=cap),
        "retry": retry_if_exception(is_transient),
        "before_sleep": before_sleep,
        "reraise": True,
    }


def retrying(budget: float, cap: float, what: str) -> Retrying:
    """``for attempt in retrying(...): with attempt: call()`` on a worker."""
    return Retrying(**_policy(budget, cap, what))


def aretrying(budget: float, cap: float, what: str) -> AsyncRetrying:
    """``async for attempt in aretrying(...): with attempt: await call()`` in the triggerer."""
    return AsyncRetrying(**_policy(budget, cap, what))
