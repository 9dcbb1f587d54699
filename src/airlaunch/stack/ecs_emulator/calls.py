"""A count of the ECS API calls the emulator answered: per action and outcome, in whole-second buckets.

The gateway records each ECS call once, when it answers it, with one of these outcomes:

* ``ok``: answered by moto (HTTP 2xx), or a RunTask repeating a ``clientToken`` (ECS's own answer again);
* ``throttled``: ThrottlingException, from ECS's API buckets, Fargate's RunTask or task-launch rate, or
  an injected throttle (control API);
* ``failures``: a RunTask that started nothing and answered ``failures[]`` (the vCPU quota, no capacity);
* ``error``: any other answer moto gave (4xx/5xx).

Each call lands in the bucket of the second it was answered in (epoch seconds, floored), so a reader
gets both totals and rates over 1-s windows (aligned to whole seconds) for any period since, e.g. a
benchmark's run. It also keeps, per second, the most Fargate vCPUs a RunTask found in use plus what it
asked for: the account's peak concurrent vCPUs, which only a RunTask can raise.

It is cheap by design: one lock, one dictionary increment per call; buckets older than ``keep_seconds``
(6 hours by default) are dropped as new seconds begin. Served as ``GET calls`` on the control API.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, defaultdict
from typing import Any

OUTCOMES = ("ok", "throttled", "failures", "error")


class CallCounter:
    """Thread-safe; ``record`` is the gateway's, ``describe`` the control API's."""

    def __init__(self, keep_seconds: float = 6 * 3600) -> None:
        self._lock = threading.Lock()
        self._keep = keep_seconds
        self._seconds: dict[int, Counter[tuple[str, str]]] = {}
        self._vcpus: dict[int, float] = {}
        self.started = time.time()

    def record(self, action: str, outcome: str, at: float | None = None) -> None:
        """One call of ``action`` answered with ``outcome`` (one of OUTCOMES) at ``at`` (now)."""
        second = math.floor(time.time() if at is None else at)
        with self._lock:
            bucket = self._seconds.get(second)
            if bucket is None:
                bucket = self._seconds[second] = Counter()
                self._forget(second)
            bucket[(action, outcome)] += 1

    def vcpus(self, in_use: float, at: float | None = None) -> None:
        """A RunTask found ``in_use`` vCPUs running with its own (admitted or not)."""
        second = math.floor(time.time() if at is None else at)
        with self._lock:
            self._vcpus[second] = max(self._vcpus.get(second, 0.0), in_use)

    def _forget(self, now: int) -> None:
        horizon = now - self._keep
        for second in [s for s in self._seconds if s < horizon]:
            del self._seconds[second]
        for second in [s for s in self._vcpus if s < horizon]:
            del self._vcpus[second]

    def describe(self, since: float = 0.0, until: float | None = None) -> dict[str, Any]:
        """The calls answered in [since, until) (whole seconds; until: now, inclusive):

        ``actions``: per action, a count per outcome, ``calls`` (all of them), ``peak_per_second`` (calls,
        whatever their outcome, in the busiest second) and ``peak_ok_per_second``; ``per_second``: per
        action, ``[second, calls, ok]`` for each second with calls; ``peak_vcpus``: the most Fargate
        vCPUs a RunTask found in use with its own, with the second it did.
        """
        first = math.floor(since)
        last = math.inf if until is None else math.ceil(until) - 1
        with self._lock:
            seconds = {s: Counter(b) for s, b in self._seconds.items() if first <= s <= last}
            vcpus = {s: v for s, v in self._vcpus.items() if first <= s <= last}
        actions: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(OUTCOMES, 0))
        per_second: dict[str, list[list[int]]] = defaultdict(list)
        for second in sorted(seconds):
            by_action: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            for (action, outcome), count in seconds[second].items():
                actions[action][outcome] = actions[action].get(outcome, 0) + count
                by_action[action][0] += count
                by_action[action][1] += count if outcome == "ok" else 0
            for action, (calls, ok) in by_action.items():
                per_second[action].append([second, calls, ok])
        summary = {}
        for action, outcomes in sorted(actions.items()):
            series = per_second[action]
            summary[action] = {
                **outcomes,
                "calls": sum(outcomes.values()),
                "peak_per_second": max(row[1] for row in series),
                "peak_ok_per_second": max(row[2] for row in series),
            }
        peak_second = max(vcpus, key=lambda s: vcpus[s], default=None)
        return {
            "since": first,
            "now": time.time(),
            "counting_since": self.started,
            "actions": summary,
            "per_second": dict(per_second),
            "peak_vcpus": None if peak_second is None else {"vcpus": vcpus[peak_second], "second": peak_second},
        }
