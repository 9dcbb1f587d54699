"""EventBridge's scheduled rules (``rate(...)``) of moto's events backend, fired at their Lambda targets.

The template's ``ReaperSchedule`` (``rate(5 minutes)``, Input ``{"action": "reap"}``) is how the
launcher on AWS stops tasks long past their timeout and renews the sessions of long tasks; the
ECS mode keeps that rule working as EventBridge would: each enabled rule with a rate expression
sends a "Scheduled Event" (source ``aws.events``; its target's ``Input`` replaces it, as for the
reaper) through the same asynchronous Lambda delivery as the task state changes. ``speedup``
divides every period, so that a test need not wait five minutes (1: EventBridge's own period).
``cron(...)`` expressions are not emulated (the template has none).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from moto.events.models import events_backends

from airlaunch.stack.ecs_emulator.clock import Scheduler, iso_s, utcnow
from airlaunch.stack.ecs_emulator.events import EventDelivery

log = logging.getLogger(__name__)

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
CHECK_SECONDS = 1.0


def period_seconds(expression: str) -> float | None:
    """The period of ``rate(N unit)`` in seconds; None for anything else (cron)."""
    match = _RATE.match(expression.strip())
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")] if match else None


class Schedules:
    """Fires the account's due scheduled rules (every Region it has), checked once a second on the shared timer."""

    def __init__(self, scheduler: Scheduler, events: EventDelivery, account: str, speedup: float) -> None:
        self._scheduler, self._events = scheduler, events
        self._account = account
        self._speedup = max(speedup, 1e-6)
        self._last: dict[str, float] = {}  # rule ARN -> when it last fired (monotonic); first sight counts
        self.fired = 0
        scheduler.call_later(CHECK_SECONDS, self._check)

    def _check(self) -> None:
        try:
            self._fire_due(time.monotonic())
        finally:
            self._scheduler.call_later(CHECK_SECONDS, self._check)

    def _fire_due(self, now: float) -> None:
        for region, backend in list(events_backends[self._account].items()):
            bus = backend.event_buses.get("default")
            for rule in list(bus.rules.values()) if bus else []:
                period = period_seconds(rule.scheduled_expression or "") if rule.state == "ENABLED" else None
                if period is None:
                    continue
                last = self._last.setdefault(rule.arn, now)  # EventBridge fires a new rule one period after it
                if now - last >= period / self._speedup:
                    self._last[rule.arn] = now
                    event = self._event(region, rule.arn)
                    self.fired += self._events.publish_to(rule.name, list(rule.targets), event)

    def _event(self, region: str, rule_arn: str) -> dict[str, Any]:
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self._account,
            "time": iso_s(utcnow()),
            "region": region,
            "resources": [rule_arn],
            "detail": {},
        }
