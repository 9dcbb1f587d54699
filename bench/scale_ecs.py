"""Scale on the stack's ECS mode (``make bench PARTS=scale-ecs``): the same fan-out, every task an ECS task.

For this part an embedded stack of its own runs in its ECS mode (``EcsStack``: ``.stack-bench-ecs``,
LocalStack on 4966, the launcher on 9400, the emulated account on 4967, emulator instances from 19600,
the launcher container ``airlaunch-launcher-bench-ecs``): the launcher's ECS backend against the emulated
account, whose Fargate tasks run as Docker containers with ECS's lifecycle and AWS's published rates
(docs/ecs-mode.md). Its own, because the ECS mode is the launcher's backend: switching the shared stack
would pull it from under whoever uses it. The benchmark's Airflow is started again pointing at it.
bench/scale.py measures the fan-out as on Docker (wall time, every result in S3 and
XCom, phases, CPU by part with the emulator as a part of its own), and the emulator's call counter
(``GET /_airlaunch/ecs/calls``, counted on the emulator's side as it answers) adds, for each size's run:

- the ECS API calls per task, per action (RunTask, DescribeTasks, ListTasks, StopTask...), and the
  answers that were throttled or started nothing (``failures[]``: the vCPU quota, no capacity);
- the peak RunTask rate: the calls in the busiest 1-s window (whole seconds), all of them and those
  admitted, against Fargate's RunTask rate (20 a second) and task launch rate (100 burst, 20 a second);
- the peak Fargate vCPUs in use (a task counts from RunTask until STOPPED) against the account's quota.

The account's concurrent vCPU quota for the part: ``BENCH_ECS_VCPU_QUOTA`` (default 256, room for 500
tasks of 0.5 vCPU at once, as an account raised for such a fan-out would have; 0 leaves the account's
own, ``AIRLAUNCH_ECS_VCPU_QUOTA``, 64 by default, for the launcher's retries to ride), set through the
control API for the part and put back after.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable
from typing import Any

from airlaunch.stack import Stack, StackConfig
from bench import scale
from bench.harness import REPO, BenchAirflow
from bench.report import Row, sizes, verdict

PREFIX = "ECS mode:"
RUN_TASK_RATE = 20  # Fargate: RunTask calls launching Fargate tasks, a second (burst and sustained)
DEFAULT_VCPU_QUOTA = 256.0
STATE_DIR = REPO / ".stack-bench-ecs"
# the part's stack: ports and names of its own (the shared stack's, the fault suite's and the compose
# stack's are 4566/9000/4567/19100, 4766/9200/4767/19400 and 4866/9300)
ENV = {
    "AIRLAUNCH_LOCALSTACK_PORT": "4966",
    "AIRLAUNCH_LAMBDA_PORT": "9400",
    "AIRLAUNCH_ECS_PORT": "4967",
    "AIRLAUNCH_RIE_PORT_BASE": "19600",
    "AIRLAUNCH_LAUNCHER_CONTAINER": "airlaunch-launcher-bench-ecs",
    "BENCH_LOCALSTACK_LOG": str(STATE_DIR / "localstack.log"),
}


class EcsStack:
    """The ECS part's own embedded stack (LocalStack, the emulated account, the launcher) in its ECS mode.

    ``enter()`` points this process at it (ports, launcher container, AWS endpoints, the LocalStack log the
    request counter reads) and brings it up; ``leave()`` stops what it started and gives the environment back.
    Its state folder is its config's (``StackConfig(state_dir=...)``), never the process's environment, which
    the benchmark's Airflow and the shared stack read too.
    """

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}
        self._started: list[str] = []
        self.stack: Stack | None = None

    def enter(self) -> None:
        self._saved = {key: os.environ.get(key) for key in ENV}
        os.environ.update(ENV)
        cfg = StackConfig(repo=REPO, state_dir=STATE_DIR)
        client = cfg.client_env()  # AWS_ENDPOINT_URL and the rest, for this process's clients
        self._saved |= {key: os.environ.get(key) for key in client if key not in self._saved}
        os.environ.update(client)
        self.stack = Stack(cfg)
        self._started = self.stack.up(backend="ecs")

    def leave(self, keep: bool = False) -> None:
        if self.stack is not None and not keep:
            self.stack.down()
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def control(route: str, body: dict[str, Any] | None = None) -> Any:
    """The emulated account's control API (the shared stack's, on AIRLAUNCH_ECS_PORT)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{StackConfig().ecs_url}/_airlaunch/ecs/{route}", data=data,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def observe(quota: float) -> Callable[[int, float, float], dict[str, Any]]:
    """What the emulated account answered during one size's run, per task and at its peak."""

    def figures(count: int, start: float, end: float) -> dict[str, Any]:
        calls = control(f"calls?since={start:.3f}&until={end:.3f}")
        actions: dict[str, dict[str, int]] = calls["actions"]
        run_task = actions.get("RunTask", {})
        return {
            "actions": actions,
            "per_task": {action: counts["calls"] / count for action, counts in actions.items()},
            "throttled": {action: counts["throttled"] for action, counts in actions.items() if counts["throttled"]},
            "failures": {action: counts["failures"] for action, counts in actions.items() if counts["failures"]},
            "peak_run_task_per_second": run_task.get("peak_per_second", 0),
            "peak_run_task_ok_per_second": run_task.get("peak_ok_per_second", 0),
            "run_task_per_second": calls["per_second"].get("RunTask", []),
            "peak_vcpus": calls["peak_vcpus"],
            "vcpu_quota": quota,
        }

    return figures


def scale_ecs(
    airflow: BenchAirflow, counts: list[int], max_seconds: float, keep: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """The fan-outs on the ECS mode (the shared stack must run it), the account's quota set for the part."""
    wanted = float(os.environ.get("BENCH_ECS_VCPU_QUOTA") or DEFAULT_VCPU_QUOTA)
    before = float(control("limits")["vcpu_quota"])
    quota = wanted or before
    control("limits", {"vcpu_quota": quota})
    try:
        results = scale.scale(airflow, counts, max_seconds, keep, observe(quota))
    finally:
        control("limits", {"vcpu_quota": before})
    results["vcpu_quota"], results["account_vcpu_quota"] = quota, before
    return results


def rows(results: dict[str, Any]) -> list[Row]:
    """The ECS part's rows, each labelled PREFIX (run.py writes them into a block of their own)."""
    if "scale_ecs" not in results:
        return []
    r = results["scale_ecs"]
    out: list[Row] = []
    for size in sizes(r):
        s, v, seen = r[size], r[size]["verified"], r[size].get("observed") or {}
        complete = s["state"] == "success" and v["results_in_s3"] == v["results_in_xcom"] == int(size)
        ok = complete and v["xcom_equals_s3"] and not s.get("failed_tasks")
        value = (
            f"{s['seconds']:.0f} s ({s['seconds'] / int(size):.2f} s a task); S3 {v['results_in_s3']}/{size}, "
            f"XCom {v['results_in_xcom']}/{size}{'' if v['xcom_equals_s3'] else ' (XCom differs from S3)'}; "
            f"failed tasks {s.get('failed_tasks', '?')}; {s.get('s3_requests_per_task', 0):.1f} S3 req/task"
        )
        out.append(
            (f"{PREFIX} {size} mapped tasks from the triggerer", value, "every result, no failed task", verdict(ok))
        )
        if seen:
            out += _call_rows(size, seen, r.get("account_vcpu_quota", 0))
    biggest = r[sizes(r)[-1]]
    latency, memory = biggest["completion_latency"], biggest["peak_memory_mib"]
    parts = ", ".join(f"{k} {v:.0f}" for k, v in memory.items() if k != "total")
    at = biggest["count"]
    latency_value = f"p50 {latency['p50']:.2f} s, p95 {latency['p95']:.2f} s"
    out.append((f"{PREFIX} completion latency at {at} (result in S3 → TI end)", latency_value, "", ""))
    out.append((f"{PREFIX} stack peak memory at {at} (MiB)", f"{memory.get('total', 0):.0f} ({parts})", "", ""))
    return out


def _call_rows(size: str, seen: dict[str, Any], account_quota: float) -> list[Row]:
    """What the emulated account counted during one size's run, against AWS's limits."""
    peak, admitted = seen["peak_run_task_per_second"], seen["peak_run_task_ok_per_second"]
    total = seen["actions"].get("RunTask", {}).get("calls", 0)
    rate = f"{peak} calls/s ({admitted} admitted); {total} RunTask calls in all"
    per_task = ", ".join(f"{a} {n:.2f}" for a, n in sorted(seen["per_task"].items(), key=lambda kv: -kv[1]))
    refused = {f"{a} throttled": n for a, n in seen["throttled"].items()}
    refused |= {f"{a} failures[]": n for a, n in seen["failures"].items()}
    vcpus = (seen.get("peak_vcpus") or {}).get("vcpus", 0)
    quota = f"{vcpus:g} (the part's quota {seen['vcpu_quota']:g}; the account's own {account_quota:g})"
    return [
        (
            f"{PREFIX} peak RunTask rate at {size} (1-s windows)",
            rate,
            f"≤ {RUN_TASK_RATE}/s (Fargate)",
            verdict(peak <= RUN_TASK_RATE),
        ),
        (f"{PREFIX} ECS API calls per task at {size}", per_task, "", ""),
        (
            f"{PREFIX} throttled or refused ECS calls at {size}",
            ", ".join(f"{k} {n}" for k, n in refused.items()) or "none",
            "none",
            verdict(not refused),
        ),
        (f"{PREFIX} peak Fargate vCPUs in use at {size}", quota, "", ""),
    ]
