"""Which AWS errors pass by themselves, and the retry policy that waits them out (tenacity).

A connection refused or reset, a timeout, throttling and 5xx answers are *transient*: the
same call can succeed a moment later (LocalStack restarting, Lambda throttled, S3 slowing
down). Everything else (access denied, a missing bucket, a refused request) is not, and is
raised at once. botocore's own retries count attempts; these count seconds from the first
failure, so an outage of a minute is ridden out whatever the attempts cost, and a first
attempt that waited long (a launch queued behind hundreds) does not eat the budget.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, wait_exponential
from tenacity.stop import stop_base

log = logging.getLogger(__name__)

_TRANSIENT_CODES = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
    "ServiceUnavailable",
    "ServiceException",
    "InternalError",
    "InternalFailure",
    "RequestTimeout",
    "RequestTimeoutException",
    "EC2ThrottledException",
}
_NETWORK = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError, HTTPClientError)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (*_NETWORK, ConnectionError, asyncio.TimeoutError, TimeoutError)):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return exc.response.get("Error", {}).get("Code") in _TRANSIENT_CODES or status >= 500 or status == 429
    return bool(getattr(exc, "retryable", False))  # e.g. a launch the platform may accept a moment later


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
