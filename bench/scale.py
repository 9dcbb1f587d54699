"""Scale: fan-outs of short container tasks launched from the triggerer, and where their time goes.

For each size the benchmark runs ``bench_fan_out_triggerer`` (N mapped task_two tasks, then one
task reading every XCom) and reports

- the wall time from the trigger to the run's end, and every result checked in S3 and XCom;
- the run's phases: the scheduler expanding and deferring the mapped tasks (first to last task
  start), the triggerer launching them (first to last container start), the last container's
  run, and the end (last result to the run's success);
- each try's phases from its records in S3 (``airlaunch report``'s spans: Airflow, invoke,
  launch, create, boot, startup, code, upload, notify, finish), as p50/p95 over the tries;
- CPU-seconds by part of the machine: Airflow's four processes, LocalStack, the launcher, the
  Docker engine, the task containers (their own cgroup, from status.json) and the rest (the
  kernel, container shims, this benchmark), against what two cores could give in that time;
- completion latency (the result in S3 to the task's end in Airflow) and the stack's peak memory.

The same fan-out runs on the stack's ECS mode too (bench/scale_ecs.py), where ``observe`` adds what the
emulated account counted during each size's run.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import psutil

from airlaunch.airflow_rest import AirflowApiError
from airlaunch.cli.report import build
from airlaunch.protocol import Status
from airlaunch.stack import StackConfig
from bench.harness import (
    BenchAirflow,
    MemorySampler,
    RequestCounter,
    background_rates,
    cpu_seconds,
    listening_pid,
    load,
    parse_time,
    percentiles,
    run_dag,
)
from bench.measure import store
from bench.s3_traffic import S3Traffic, breakdown
from bench.s3_traffic import text as traffic_text

DAG_ID = "bench_fan_out_triggerer"
TASK_ID = "launch"
AIRFLOW_PARTS = ("scheduler", "triggerer", "api-server", "dag-processor")
ENGINE_NAMES = ("dockerd", "containerd")
REPORT_ARGS = SimpleNamespace(cpu=None, memory_mib=None, region=None, arch=None, spot=False)
# -- CPU by part of the machine ---------------------------------------------------------------


def _busy_seconds() -> float:
    """CPU-seconds the whole machine spent on anything (not idle, not waiting, not stolen)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "steal", 0.0) - getattr(t, "guest", 0.0)


def _engine_seconds() -> float:
    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ENGINE_NAMES:
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
    return total


def cpu_snapshot(airflow: BenchAirflow) -> dict[str, float]:
    """Cumulative CPU-seconds of each long-lived part (children included, reaped ones too)."""
    cfg = StackConfig()
    parts = {f"airflow {c}": cpu_seconds(airflow.pid(c)) for c in AIRFLOW_PARTS}
    for extra in airflow.processes[len(AIRFLOW_PARTS) :]:  # more triggerers (BenchAirflow(triggerers=2))
        parts[extra.name.replace("airflow-", "airflow ", 1)] = cpu_seconds(extra.process.pid)
    parts["localstack"] = cpu_seconds(listening_pid(cfg.localstack_port))
    parts["launcher"] = cpu_seconds(listening_pid(cfg.lambda_port))
    parts["docker engine"] = _engine_seconds()
    emulator = listening_pid(cfg.ecs_port)  # the ECS mode's emulated account (moto and the Fargate stand-in)
    if emulator is not None:
        parts["ecs emulator"] = cpu_seconds(emulator)
    parts["machine"] = _busy_seconds()
    return parts


def cpu_breakdown(before: dict[str, float], after: dict[str, float], containers: float) -> dict[str, float]:
    """CPU-seconds per part during the run; "other" is what the machine spent beyond the named parts."""
    used = {part: after[part] - before[part] for part in before if part in after}
    machine = used.pop("machine")
    used["task containers"] = containers
    used["other (kernel, shims, runc, this benchmark)"] = max(0.0, machine - sum(used.values()))
    used["machine"] = machine
    return {k: round(v, 1) for k, v in used.items()}


# -- the run's records ------------------------------------------------------------------------


def _json(body: bytes | None) -> Any:
    return json.loads(body) if body else None


def tries_by_index(statuses: list[Any]) -> dict[int, Any]:
    return {t.identity.map_index: t for t in statuses if t.identity.task_id == TASK_ID}


def verify(api: Any, tries: dict[int, Any], results: dict[int, Any], run_id: str, count: int) -> dict[str, Any]:
    """Every mapped task left a succeeded status.json and its result.json; the values reached XCom."""
    from_s3: list[float | None] = []
    for index in range(count):
        task_try, value = tries.get(index), results.get(index)
        ok = task_try is not None and task_try.state == "succeeded" and isinstance(value, dict)
        from_s3.append(value["sleep_seconds"] if ok and value else None)
    try:
        from_xcom = api.xcom(DAG_ID, run_id, "collect")  # collect read every mapped XCom, in map-index order
    except AirflowApiError:  # collect did not run (a mapped task failed)
        from_xcom = []
    return {
        "results_in_s3": sum(v is not None for v in from_s3),
        "results_in_xcom": sum(v is not None for v in from_xcom),
        "xcom_equals_s3": from_xcom == from_s3,
    }


def try_phases(reports: list[Any]) -> dict[str, dict[str, float]]:
    """p50, p95 and the sum of each phase over the tries, in the order a try goes through them."""
    seconds: dict[str, list[float]] = defaultdict(list)
    for report in reports:
        for span in report.spans:
            seconds[span.phase].append(span.seconds)
    return {
        phase: {**percentiles(values), "total": round(sum(values), 1)}
        for phase, values in seconds.items()  # insertion order: the first try's order of phases
    }


def run_phases(run: dict[str, Any], tis: list[dict[str, Any]], statuses: list[Status]) -> dict[str, float]:
    """The run's wall time cut where the work changes hands (each boundary on one named clock)."""
    mapped = [ti for ti in tis if ti["task_id"] == TASK_ID and ti.get("start_date")]
    starts = sorted(parse_time(ti["start_date"]) for ti in mapped)
    runtime_starts = sorted(parse_time(s.started_at) for s in statuses if s.started_at)
    ended = sorted(parse_time(s.ended_at) for s in statuses if s.ended_at)
    run_start, run_end = parse_time(run["start_date"]), parse_time(run["end_date"])
    return {
        "run start -> first task start (Airflow: items task, expansion)": starts[0] - run_start,
        "first -> last task start (scheduler defers the mapped tasks)": starts[-1] - starts[0],
        "first -> last container runtime start (triggerer launches)": runtime_starts[-1] - runtime_starts[0],
        "last runtime start -> last result (the last task runs)": ended[-1] - runtime_starts[-1],
        "last result -> run end (completion, collect task)": run_end - ended[-1],
        "run start -> run end": run_end - run_start,
    }


def capture_traffic() -> S3Traffic | None:
    """The S3 requests to the measured stack's LocalStack, by file and caller, if this process may capture them."""
    try:
        return S3Traffic(StackConfig().localstack_port).start()
    except (PermissionError, OSError) as exc:
        print(f"S3 requests by file: not counted ({exc})", flush=True)
        return None


def one_size(airflow: BenchAirflow, count: int, max_seconds: float) -> dict[str, Any]:
    api, results_store = airflow.api(), store()
    load_before, cpu_before, requests = load(), cpu_snapshot(airflow), RequestCounter()
    traffic = capture_traffic()
    with MemorySampler(airflow) as memory:
        started = time.monotonic()
        run_id, run = run_dag(api, DAG_ID, {"count": count, "max_seconds": max_seconds}, 600 + 3 * count)
        took = time.monotonic() - started
    cpu_after = cpu_snapshot(airflow)
    by_operation = requests.count()
    by_key = breakdown(traffic.stop(), count, f"/{DAG_ID}/") if traffic is not None else None
    if by_key is not None:
        print(traffic_text(by_key), flush=True)
    tis = api.task_instances(DAG_ID, run_id)
    reports, _ = build(results_store, DAG_ID, run_id, REPORT_ARGS)
    tries = tries_by_index([r.task_try for r in reports])
    values = {i: _json(results_store.read(t.layout.result_key)) for i, t in tries.items() if t.state == "succeeded"}
    statuses = [t.status for t in tries.values() if t.status]
    containers_cpu = sum(
        s.usage.resources.cpu_seconds or 0.0 for s in statuses if s.usage and s.usage.resources is not None
    )
    ti_end = {ti["map_index"]: parse_time(ti["end_date"]) for ti in tis if ti["task_id"] == TASK_ID and ti["end_date"]}
    latency = [ti_end[i] - parse_time(t.status.ended_at) for i, t in tries.items() if t.status and i in ti_end]
    peaks = [s.usage.resources.memory_peak_bytes or 0 for s in statuses if s.usage and s.usage.resources]
    states = [ti["state"] for ti in tis if ti["task_id"] == TASK_ID]
    return {
        "state": run["state"],
        "count": count,
        "failed_tasks": sum(state != "success" for state in states),
        "seconds": took,
        "run_phases": run_phases(run, tis, statuses),
        "try_phases": try_phases([r for r in reports if r.task_try.identity.task_id == TASK_ID]),
        "cpu_seconds": cpu_breakdown(cpu_before, cpu_after, containers_cpu),
        "cores": psutil.cpu_count(),
        "container_cpu_seconds_per_task": containers_cpu / max(1, len(statuses)),
        "container_peak_memory_mib_p50": statistics.median(peaks) / 2**20 if peaks else None,
        "s3_requests": dict(by_operation),
        "s3_requests_total": sum(by_operation.values()),
        "s3_requests_by_key": by_key,  # bench/s3_traffic.py: by caller, method and file (None without root)
        "completion_latency": percentiles(latency),
        "peak_memory_mib": memory.peak,
        "verified": {"tasks": len(tries), **verify(api, tries, values, run_id, count)},
        "load": [load_before, load()],
    }


def scale(
    airflow: BenchAirflow,
    sizes: list[int],
    max_seconds: float,
    keep: Callable[[dict[str, Any]], None],
    observe: Callable[[int, float, float], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Every size in turn, after a small warm-up fan-out (a triggerer's first triggers import and connect);
    ``keep`` saves what was measured after each size, should a later one fail or be interrupted;
    ``observe(count, start, end)`` (epoch seconds of the size's run) adds its figures as ``observed``."""
    api = airflow.api()
    background_before = background_rates()
    run_dag(api, DAG_ID, {"count": 2, "max_seconds": 0}, timeout=300)
    results: dict[str, Any] = {"dag_id": DAG_ID, "max_seconds": max_seconds}
    for count in sizes:
        began = time.time()
        results[str(count)] = one_size(airflow, count, max_seconds)
        if observe is not None:
            results[str(count)]["observed"] = observe(count, began, time.time())
        keep(results)
    # Others (the shared Airflow, tests) use the same LocalStack: subtract their rate.
    background_after = background_rates()
    rates = {
        op: (background_before.get(op, 0) + background_after.get(op, 0)) / 2
        for op in {*background_before, *background_after}
    }
    background = sum(rates.values())
    results["background_requests_per_second"] = background
    results["background_rates"] = rates
    for count in sizes:
        s = results[str(count)]
        s["s3_requests_per_task"] = (s["s3_requests_total"] - background * s["seconds"]) / count
    return results
