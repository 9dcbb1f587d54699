"""The retry budget counts the outage, from the first failure, not the first attempt's wait."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import EndpointConnectionError

from airlaunch.providers.airflow.hooks.retry import retrying

REFUSED = EndpointConnectionError(endpoint_url="http://127.0.0.1:9")


def test_a_slow_first_attempt_does_not_use_up_the_budget() -> None:
    calls: list[float] = []

    def call() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            time.sleep(0.6)  # e.g. a launch queued behind hundreds, then the launcher restarted
            raise REFUSED
        if len(calls) < 3:
            raise REFUSED
        return "launched"

    for attempt in retrying(0.5, 0.05, "test"):
        with attempt:
            result = call()
    assert result == "launched"
    assert len(calls) == 3


def test_an_outage_longer_than_the_budget_raises_the_last_error() -> None:
    started = time.monotonic()
    with pytest.raises(EndpointConnectionError):
        for attempt in retrying(0.3, 0.05, "test"):
            with attempt:
                raise REFUSED
    assert 0.3 <= time.monotonic() - started < 2


def test_a_permanent_error_is_raised_at_once() -> None:
    attempts = 0
    with pytest.raises(ValueError):
        for attempt in retrying(30, 0.05, "test"):
            with attempt:
                attempts += 1
                raise ValueError("access denied")
    assert attempts == 1
