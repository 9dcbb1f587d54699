"""Which AWS errors pass by themselves, and the retry policy that waits them out (tenacity).

A connection refused or reset, a timeout, throttling and 5xx answers are *transient*: the
same call can succeed a moment later (LocalStack restarting, Lambda throttled, S3 slowing
down). Everything else (access denied, a missing bucket, a refused request) is not, and is
raised at once. botocore's own retries count attempts; these count seconds, so an outage of
a minute is ridden out whatever the attempts cost.
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
from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_after_delay, wait_exponential

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


def _policy(budget: float, cap: float, what: str) -> dict[str, Any]:
    def before_sleep(state: Any) -> None:
        log.warning("%s failed (%s); retrying in %.1f s", what, state.outcome.exception(), state.next_action.sleep)

    return {
        "stop": stop_after_delay(budget),
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
