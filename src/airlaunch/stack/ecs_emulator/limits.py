"""ECS's and Fargate's published limits, as token buckets and a vCPU count, per account and Region.

Figures (read 2026-12; see docs/ecs-mode.md for the sources):

* ECS API request throttling ("Request throttling for the Amazon ECS API", ECS API Reference):
  actions are grouped into categories sharing one bucket; the table below is AWS's, burst
  (bucket size) and refill (tokens per second). An action in no category is not throttled
  (assumption: AWS publishes no figure for it).
* Fargate ("AWS Fargate throttling quotas", ECS Developer Guide): a task-launch bucket of 100
  tasks refilled at 20 a second, one for On-Demand and one for Spot, taking one token per task
  launched; and RunTask calls that launch Fargate tasks limited to 20 a second, burst and
  sustained. AWS does not say how a RunTask past the task-launch bucket is answered; the
  emulator answers it like every other throttled call, ThrottlingException "Rate exceeded"
  (assumption).
* Concurrent Fargate vCPUs ("Amazon ECS service quotas", AWS General Reference): "Fargate
  On-Demand vCPU resource count" and "Fargate Spot vCPU resource count", 6 each by default
  and raised on request. A RunTask that would pass it starts nothing and answers with
  ``failures[]`` "You've reached the limit on the number of vCPUs you can run concurrently"
  (tests/fixtures/aws/ecs-run-task-failures.json). A task counts from RunTask until STOPPED.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

# category -> (burst, refill per second, actions)
API_CATEGORIES: dict[str, tuple[float, float, tuple[str, ...]]] = {
    "cluster-modify": (
        20,
        1,
        ("CreateCluster", "DeleteCluster", "PutClusterCapacityProviders", "UpdateCluster", "UpdateClusterSettings"),
    ),
    "cluster-read": (50, 20, ("DescribeClusters", "ListClusters")),
    "task-definition-modify": (20, 1, ("DeregisterTaskDefinition", "RegisterTaskDefinition")),
    "task-definition-read": (50, 20, ("DescribeTaskDefinition", "ListTaskDefinitions", "ListTaskDefinitionFamilies")),
    "task-definition-deletion": (5, 1, ("DeleteTaskDefinitions",)),
    "capacity-provider-modify": (10, 1, ("CreateCapacityProvider", "DeleteCapacityProvider", "UpdateCapacityProvider")),
    "capacity-provider-read": (50, 20, ("DescribeCapacityProviders",)),
    "tag-modify": (20, 10, ("TagResource", "UntagResource")),
    "tag-read": (50, 20, ("ListTagsForResource",)),
    "setting-modify": (10, 1, ("DeleteAccountSetting", "PutAccountSetting", "PutAccountSettingDefault")),
    "setting-read": (50, 20, ("ListAccountSettings",)),
    "cluster-resource-modify": (
        100,
        40,
        (
            "DeleteAttributes",
            "DeregisterContainerInstance",
            "ExecuteCommand",
            "PutAttributes",
            "RunTask",
            "StartTask",
            "StopTask",
            "UpdateContainerAgent",
            "UpdateContainerInstancesState",
        ),
    ),
    "cluster-resource-read": (
        100,
        20,
        ("DescribeContainerInstances", "DescribeTasks", "ListAttributes", "ListContainerInstances", "ListTasks"),
    ),
    "agent-modify": (
        200,
        120,
        (
            "RegisterContainerInstance",
            "SubmitAttachmentStateChanges",
            "SubmitContainerStateChange",
            "SubmitTaskStateChange",
        ),
    ),
    "service-modify": (50, 5, ("CreateService", "DeleteService", "UpdateService")),
    "service-read": (100, 20, ("DescribeServices", "ListServices")),
    "service-deployment": (50, 20, ("DescribeServiceDeployments", "ListServiceDeployments")),
    "service-revision": (50, 20, ("DescribeServiceRevisions",)),
    "task-protection": (200, 80, ("UpdateTaskProtection", "GetTaskProtection")),
    "cluster-service-resource-read": (10, 1, ("ListServicesByNamespace",)),
}
CATEGORY_OF = {action: category for category, (_, _, actions) in API_CATEGORIES.items() for action in actions}

CAPACITY_UNAVAILABLE = (
    "Capacity is unavailable at this time. Please try again later or in a different availability zone"
)
VCPU_LIMIT = "You've reached the limit on the number of vCPUs you can run concurrently"
FAILURE_REASONS = {"capacity": CAPACITY_UNAVAILABLE, "vcpu-quota": VCPU_LIMIT}
POOLS = ("FARGATE", "FARGATE_SPOT")


@dataclass
class LimitSettings:
    """What the emulator enforces; every figure defaults to AWS's published one."""

    throttling: bool = True  # False: no ECS API or Fargate rate throttling at all
    api: dict[str, tuple[float, float]] = field(default_factory=dict)  # category -> (burst, refill), overrides
    fargate_launch: tuple[float, float] = (100, 20)  # tasks: burst, per second (each of On-Demand, Spot)
    fargate_run_task: tuple[float, float] = (20, 20)  # RunTask calls launching Fargate tasks
    vcpu_quota: float = 6  # concurrent Fargate On-Demand vCPUs; 0 = no quota
    spot_vcpu_quota: float = 6  # concurrent Fargate Spot vCPUs; 0 = no quota

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a JSON object of changes (the control API's ``limits``); ValueError names a bad key."""
        for key, value in changes.items():
            if key == "throttling":
                self.throttling = bool(value)
            elif key == "api":
                for category, pair in dict(value).items():
                    if category not in API_CATEGORIES:
                        raise ValueError(f"unknown API category {category!r}; known: {sorted(API_CATEGORIES)}")
                    self.api[category] = _pair(pair)
            elif key in ("fargate_launch", "fargate_run_task"):
                setattr(self, key, _pair(value))
            elif key in ("vcpu_quota", "spot_vcpu_quota"):
                setattr(self, key, float(value))
            else:
                raise ValueError(f"unknown limit {key!r}")


def _pair(value: Any) -> tuple[float, float]:
    burst, rate = (float(v) for v in value)
    return burst, rate


def parse_rate(text: str) -> tuple[float, float]:
    """``BURST/RATE`` (a flag's value) as numbers."""
    burst, _, rate = text.partition("/")
    return float(burst), float(rate or burst)


class TokenBucket:
    """AWS's token bucket: ``burst`` tokens at most, ``rate`` tokens added a second; a call takes some."""

    def __init__(self, burst: float, rate: float) -> None:
        self.burst, self.rate = burst, rate
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self, n: float = 1.0) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens + 1e-9 < n:
            return False
        self.tokens -= n
        return True

    def give(self, n: float) -> None:
        self.tokens = min(self.burst, self.tokens + n)


class Limits:
    """Throttling decisions and RunTask placement failures, thread-safe; also the injected faults."""

    def __init__(self, settings: LimitSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._throttle_next: dict[str, int] = {}  # action -> calls still to throttle (control API)
        self._fail_next: list[str] = []  # reasons of the next RunTask calls to fail (control API)

    def configure(self, changes: dict[str, Any]) -> None:
        with self._lock:
            self.settings.update(changes)
            self._buckets.clear()  # new figures start full

    def _bucket(self, region: str, name: str, figures: tuple[float, float]) -> TokenBucket:
        bucket = self._buckets.get((region, name))
        if bucket is None or (bucket.burst, bucket.rate) != figures:
            bucket = self._buckets[(region, name)] = TokenBucket(*figures)
        return bucket

    def admit_call(self, region: str, action: str) -> bool:
        """False if this ECS API call is throttled: an injected throttle, or its category's bucket is empty."""
        with self._lock:
            if self._throttle_next.get(action, 0) > 0:
                self._throttle_next[action] -= 1
                return False
            category = CATEGORY_OF.get(action)
            if not self.settings.throttling or category is None:
                return True
            burst, rate, _ = API_CATEGORIES[category]
            figures = self.settings.api.get(category, (burst, rate))
            return self._bucket(region, category, figures).take()

    def admit_fargate_launch(self, region: str, pool: str, count: int) -> bool:
        """False if a RunTask launching ``count`` Fargate tasks passes Fargate's RunTask or task-launch rate."""
        with self._lock:
            if not self.settings.throttling:
                return True
            calls = self._bucket(region, "fargate-run-task", self.settings.fargate_run_task)
            if not calls.take():
                return False
            if not self._bucket(region, f"fargate-launch-{pool}", self.settings.fargate_launch).take(count):
                calls.give(1)
                return False
            return True

    def placement_failure(self, pool: str, vcpus_wanted: float, vcpus_in_use: float) -> str | None:
        """The ``failures[].reason`` of a RunTask that starts nothing, or None: an injected failure first,
        then the concurrent vCPU quota of the pool (On-Demand or Spot)."""
        with self._lock:
            if self._fail_next:
                return self._fail_next.pop(0)
            quota = self.settings.spot_vcpu_quota if pool == "FARGATE_SPOT" else self.settings.vcpu_quota
            if quota and vcpus_in_use + vcpus_wanted > quota + 1e-9:
                return VCPU_LIMIT
            return None

    def throttle_next(self, action: str, count: int) -> None:
        """The next ``count`` calls of ``action`` are throttled (replacing what was asked before; 0 clears)."""
        with self._lock:
            self._throttle_next[action] = count

    def fail_next_run_tasks(self, reason: str, count: int) -> None:
        """The next ``count`` RunTask calls fail for ``reason`` (replacing what was asked before; 0 clears)."""
        with self._lock:
            self._fail_next = [reason] * count

    def describe(self) -> dict[str, Any]:
        with self._lock:
            s = self.settings
            return {
                "throttling": s.throttling,
                "api": {c: list(s.api.get(c, (b, r))) for c, (b, r, _) in API_CATEGORIES.items()},
                "fargate_launch": list(s.fargate_launch),
                "fargate_run_task": list(s.fargate_run_task),
                "vcpu_quota": s.vcpu_quota,
                "spot_vcpu_quota": s.spot_vcpu_quota,
                "pending_faults": {"throttle": dict(self._throttle_next), "run_task_failures": list(self._fail_next)},
            }
