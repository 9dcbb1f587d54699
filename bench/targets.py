"""Issue 22's targets, each a ratio to a floor measured in the same run (bench/floors.py), as table rows.

A process's CPU during a run is its idle rate (measured before, nothing running) times the run's wall time,
plus the work the run made it do; a slower run would otherwise be charged its idle CPU twice. Each figure
below prints both, and the targets judge the work.
"""

from __future__ import annotations

from typing import Any

from bench.report import Row, sizes, verdict
from bench.triggerers import per_notification

ORCHESTRATION_LIMIT = 1.25  # orchestration CPU a task / Airflow's floor
STARTUP_LIMIT = 1.5  # the runtime's container CPU for an empty task / bare Python in the same image
S3_LIMIT = 2.0  # S3 requests a try / the floor
TOTAL_LIMIT = 1.3  # total CPU a task / (Airflow's floor + the container floor)
LATENCY_P50, LATENCY_P95 = 0.5, 1.0  # completion latency at the largest size, every run
MEMORY_LIMIT_MIB = 1536
LAUNCH_LIMIT = 0.2  # s over a bare docker run, p50, launched from the triggerer
# What a try needs of S3 at the least: the launcher writes params.yaml and the runtime reads it; the runtime
# writes result.json and status.json; the trigger reads each of them once.
S3_FLOOR = {"params PUT": 1, "params GET": 1, "result PUT": 1, "status PUT": 1, "status GET": 1, "result GET": 1}
MACHINE = "machine"


def work(total: float, idle_rate: float, seconds: float) -> float:
    """What a run made a process do: its CPU less its idle rate over the run's wall time (never below 0)."""
    return max(0.0, total - idle_rate * seconds)


def per_task(cpu: dict[str, float], rates: dict[str, float], seconds: float, count: int) -> dict[str, dict[str, float]]:
    """Each part's CPU-seconds a task: ``total`` (as measured) and ``work`` (idle rate x wall subtracted)."""
    return {
        part: {"total": used / count, "work": work(used, rates.get(part, 0.0), seconds) / count}
        for part, used in cpu.items()
    }


def summed(shares: dict[str, dict[str, float]], parts: list[str]) -> dict[str, float]:
    return {kind: sum(shares[p][kind] for p in parts if p in shares) for kind in ("total", "work")}


def airflow_parts(cpu: dict[str, float]) -> list[str]:
    return [part for part in cpu if part.startswith("airflow ")]


def ratio(ours: float, floor: float) -> float:
    return ours / floor if floor > 0 else float("inf")


def judged(label: str, ours: float, floor: float, limit: float, detail: str) -> Row:
    x = ratio(ours, floor)
    return (label, f"x{x:.2f}: {detail}", f"≤ {limit:g}x", verdict(x <= limit))


def s3_per_task(requests: dict[str, int], background: dict[str, float], seconds: float, count: int) -> dict[str, float]:
    """S3 requests of each operation a task, less what LocalStack served others at the idle rate meanwhile."""
    return {
        op.removeprefix("s3."): (n - background.get(op, 0.0) * seconds) / count
        for op, n in requests.items()
        if op.startswith("s3.")
    }


def _parts_text(shares: dict[str, dict[str, float]], parts: list[str]) -> str:
    return ", ".join(f"{p.removeprefix('airflow ')} {shares[p]['work']:.3f}" for p in parts if p in shares)


def floor_rows(floors: dict[str, Any], scale: dict[str, Any] | None) -> list[Row]:
    """The floors, our figures beside them, and each target's ratio with PASS/FAIL."""
    rates = floors["idle"]["rates"]
    out: list[Row] = [
        ("Floor: idle CPU rate (CPU-s a second)", ", ".join(f"{k} {v:.3f}" for k, v in rates.items()), "", "")
    ]
    airflow_floor: dict[str, dict[str, float]] = {}
    for way, label in (("triggerer", "from the triggerer"), ("workers", "deferred from workers")):
        for size, run in sorted(floors["airflow"].get(way, {}).items(), key=lambda kv: int(kv[0])):
            shares = per_task(run["cpu_seconds"], rates, run["seconds"], run["count"])
            parts = airflow_parts(run["cpu_seconds"])
            air, machine = summed(shares, parts), shares[MACHINE]
            if way == "triggerer":
                airflow_floor[size] = {"airflow": air["work"], MACHINE: machine["work"], "seconds": run["seconds"]}
            value = (
                f"{run['seconds']:.1f} s, {run['failed_tasks']} failed; CPU-s a task, Airflow's processes: work "
                f"{air['work']:.3f} ({_parts_text(shares, parts)}), with idle {air['total']:.3f}; "
                f"machine work {machine['work']:.3f}"
            )
            out.append((f"Floor: Airflow, {size} mapped tasks ended by a trigger, {label}", value, "", ""))
    containers: dict[str, dict[str, float]] = {}
    for key, label in (("bare", "Floor: bare `python -c` in the task image"), ("runtime", "Ours: runtime, empty task")):
        if key in floors:
            run = floors[key]
            machine = per_task(run["cpu_seconds"], rates, run["seconds"], run["count"])[MACHINE]
            own, life = run["container_cpu_seconds"], run["container_seconds"]
            containers[key] = {
                "cpu": own["mean"],
                MACHINE: machine["work"],
                "seconds_per": run["seconds"] / run["count"],
            }
            value = (
                f"container CPU-s mean {own['mean']:.3f} (p50 {own['p50']:.3f}); container lived p50 "
                f"{life['p50']:.2f} s, p95 {life['p95']:.2f} s; {run['count']} in {run['seconds']:.1f} s; "
                f"machine work {machine['work']:.3f}"
            )
            out.append((f"{label} ({run['count']}, {run['concurrency']} at once)", value, "", ""))
    floor_total = sum(S3_FLOOR.values())
    out.append(("Floor: S3 requests a try", f"{floor_total} ({', '.join(S3_FLOOR)})", "", ""))
    if "bare" in containers and "runtime" in containers:
        bare, ours = containers["bare"]["cpu"], containers["runtime"]["cpu"]
        detail = f"empty task {ours:.3f} CPU-s a container, bare Python {bare:.3f}"
        out.append(judged("Target: runtime start-up (container CPU)", ours, bare, STARTUP_LIMIT, detail))
    if scale:
        out += _scale_targets(floors, scale, airflow_floor, containers, floor_total)
    out += _launch_rows(floors)
    out += _sqs_rows(floors, scale)
    return out


def _scale_targets(
    floors: dict[str, Any],
    scale: dict[str, Any],
    airflow_floor: dict[str, dict[str, float]],
    containers: dict[str, dict[str, float]],
    s3_floor: int,
) -> list[Row]:
    rates, out = floors["idle"]["rates"], []
    background = scale.get("background_rates", {})
    for size in sizes(scale):
        s = scale[size]
        shares = per_task(s["cpu_seconds"], rates, s["seconds"], s["count"])
        parts = [*airflow_parts(s["cpu_seconds"]), "launcher"]
        ours = summed(shares, parts)
        floor = airflow_floor.get(size)
        if floor:
            detail = (
                f"ours {ours['work']:.3f} CPU-s a task ({_parts_text(shares, parts)}; with idle {ours['total']:.3f}), "
                f"Airflow's floor {floor['airflow']:.3f}"
            )
            out.append(
                judged(
                    f"Target: orchestration CPU a task at {size}",
                    ours["work"],
                    floor["airflow"],
                    ORCHESTRATION_LIMIT,
                    detail,
                )
            )
        s3 = s3_per_task(s["s3_requests"], background, s["seconds"], s["count"])
        top = ", ".join(f"{op} {n:.1f}" for op, n in sorted(s3.items(), key=lambda kv: -kv[1]) if n >= 0.05)
        detail = f"{sum(s3.values()):.1f} a try ({top}), floor {s3_floor}"
        out.append(judged(f"Target: S3 requests a try at {size}", sum(s3.values()), s3_floor, S3_LIMIT, detail))
        if floor and "bare" in containers:
            bare = containers["bare"]
            both = floor[MACHINE] + bare[MACHINE]
            machine = shares[MACHINE]["work"]
            detail = (
                f"ours {machine:.3f} machine CPU-s a task (task containers {shares['task containers']['work']:.3f}), "
                f"floors {floor[MACHINE]:.3f} + {bare[MACHINE]:.3f}; wall ours {s['seconds']:.0f} s, Airflow's floor "
                f"{floor['seconds']:.0f} s, container floor {bare['seconds_per'] * int(size):.0f} s (its rate x {size})"
            )
            out.append(judged(f"Target: total CPU a task at {size}", machine, both, TOTAL_LIMIT, detail))
    biggest = scale[sizes(scale)[-1]]
    runs = floors.get("latency_runs") or [biggest["completion_latency"]]
    ok = all(r["p50"] <= LATENCY_P50 and r["p95"] <= LATENCY_P95 for r in runs)
    value = "; ".join(f"run {i} p50 {r['p50']:.2f} s, p95 {r['p95']:.2f} s" for i, r in enumerate(runs, 1))
    target = f"p50 ≤ {LATENCY_P50} s, p95 ≤ {LATENCY_P95} s, every run"
    out.append((f"Target: completion latency at {biggest['count']}, {len(runs)} runs", value, target, verdict(ok)))
    peak = biggest["peak_memory_mib"].get("total", 0.0)
    out.append(
        (
            f"Target: stack peak memory at {biggest['count']} (MiB)",
            f"{peak:.0f}",
            f"≤ {MEMORY_LIMIT_MIB}",
            verdict(peak <= MEMORY_LIMIT_MIB),
        )
    )
    return out


def _launch_rows(floors: dict[str, Any]) -> list[Row]:
    single = floors.get("single")
    if not single:
        return []
    bare, out = single["bare_docker_run"]["p50"], []
    for way in ("triggerer", "workers"):
        if way not in single:
            continue
        took = single[way]["ti_start_to_started"]
        steps = ", ".join(f"{name} p50 {step['p50']:.3f} s" for name, step in single[way]["steps"].items())
        value = (
            f"+{took['p50'] - bare:.3f} s p50 (TI start → StartedAt p50 {took['p50']:.3f} s, bare {bare:.3f} s; "
            f"{steps})"
        )
        if way == "triggerer":
            ok = took["p50"] - bare <= LAUNCH_LIMIT
            out.append(
                (
                    "Target: launch overhead over bare docker run, from the triggerer",
                    value,
                    f"≤ +{LAUNCH_LIMIT} s",
                    verdict(ok),
                )
            )
        else:
            noop = floors.get("noop_worker", {}).get("ti_start_to_end")
            beside = f"Airflow's no-op PythonOperator: TI start → end p50 {noop['p50']:.3f} s" if noop else ""
            out.append(("Launch overhead over bare docker run, from a worker", value, beside, ""))
    return out


def _sqs_text(cost: dict[str, float]) -> str:
    return (
        f"{cost['receives']:.2f} ReceiveMessage, {cost['hand_backs']:.2f} hand-backs, "
        f"{cost['deletes']:.2f} deletes a notification"
    )


def _sqs_rows(floors: dict[str, Any], scale: dict[str, Any] | None = None) -> list[Row]:
    """SQS calls a notification: one triggerer in each scale fan-out, then the SQS part's runs with one and two."""
    runs = []
    for size in sizes(scale) if scale else []:
        s = scale[size] if scale else {}
        cost = per_notification(
            s["s3_requests"], scale.get("background_rates", {}) if scale else {}, s["seconds"], s["count"]
        )
        runs.append((f"1 triggerer, the scale fan-out of {size}", cost, s))
    for n, run in sorted(floors.get("sqs", {}).items()):
        runs.append((f"{n} triggerer{'s' if n != '1' else ''}, the SQS part's fan-out", run["per_notification"], run))
    return [
        (
            f"SQS: calls a status notification costs, {label}",
            f"{_sqs_text(cost)} ({run['count']} tasks, {run['seconds']:.0f} s, {run['failed_tasks']} failed)",
            "",
            "",
        )
        for label, cost, run in runs
    ]
