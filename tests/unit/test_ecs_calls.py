"""The ECS emulator's call counter: what the gateway answered, per action, outcome and second, on the control API."""

from __future__ import annotations

import json
from typing import Any, cast

from werkzeug.test import Client

from airlaunch.stack.ecs_emulator.calls import CallCounter
from airlaunch.stack.ecs_emulator.control import ControlApi
from airlaunch.stack.ecs_emulator.fleet import Fleet
from airlaunch.stack.ecs_emulator.limits import Limits, LimitSettings
from airlaunch.stack.ecs_emulator.server import Gateway
from airlaunch.stack.ecs_emulator.settings import Settings


def test_totals_rates_and_peak_vcpus_over_a_period() -> None:
    calls = CallCounter()
    for at in (100.1, 100.5, 100.9, 101.2):
        calls.record("RunTask", "ok", at=at)
    calls.record("RunTask", "throttled", at=100.7)
    calls.record("RunTask", "failures", at=102.0)
    calls.record("DescribeTasks", "ok", at=99.0)
    calls.vcpus(3.5, at=100.2)
    calls.vcpus(2.0, at=101.0)

    seen = calls.describe(since=100)
    run_task = seen["actions"]["RunTask"]
    assert (run_task["ok"], run_task["throttled"], run_task["failures"], run_task["calls"]) == (4, 1, 1, 6)
    assert (run_task["peak_per_second"], run_task["peak_ok_per_second"]) == (4, 3)
    assert seen["per_second"]["RunTask"] == [[100, 4, 3], [101, 1, 1], [102, 1, 0]]
    assert "DescribeTasks" not in seen["actions"]  # before the period
    assert seen["peak_vcpus"] == {"vcpus": 3.5, "second": 100}
    assert calls.describe(since=101, until=101.5)["actions"]["RunTask"]["calls"] == 1


def test_buckets_older_than_the_horizon_are_forgotten() -> None:
    calls = CallCounter(keep_seconds=10)
    calls.record("ListTasks", "ok", at=1000)
    calls.record("ListTasks", "ok", at=1020)
    assert calls.describe()["actions"]["ListTasks"]["calls"] == 1


class _Fleet:
    def describe(self) -> list[dict[str, Any]]:
        return []


def _ecs_call(client: Client, action: str) -> int:
    headers = {
        "X-Amz-Target": f"AmazonEC2ContainerServiceV20141113.{action}",
        "Content-Type": "application/x-amz-json-1.1",
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/ecs/aws4_request, "
        "SignedHeaders=host, Signature=0",
    }
    return client.post("/", data=b"{}", headers=headers).status_code


def test_the_gateway_counts_each_ecs_call_as_answered_and_serves_the_count() -> None:
    calls = CallCounter()
    limits = Limits(LimitSettings(api={"cluster-read": (1, 0.001)}))
    fleet = cast(Fleet, _Fleet())
    control = ControlApi(fleet, limits, lambda: {}, calls)
    client = Client(Gateway(Settings(), limits, fleet, control, calls))

    assert _ecs_call(client, "ListClusters") == 200
    assert _ecs_call(client, "ListClusters") == 400  # ThrottlingException: the bucket held one call
    assert _ecs_call(client, "DescribeTasks") == 400  # moto: no such cluster

    answer = client.get("/_airlaunch/ecs/calls?since=0")
    counted = json.loads(answer.data)["actions"]
    listed = {key: counted["ListClusters"][key] for key in ("ok", "throttled", "failures", "error", "calls")}
    assert listed == {"ok": 1, "throttled": 1, "failures": 0, "error": 0, "calls": 2}
    assert counted["DescribeTasks"]["error"] == 1
