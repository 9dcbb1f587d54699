"""The results as a table with PASS/FAIL per target, a markdown section, and a chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# the worker's launch, step by step (bench_single's timings.json; Airflow's clock, then the launcher's)
LAUNCH_STEPS = {
    "task_start_to_requested": "TI start → launch requested (Airflow starts the task: DAG file parse, operator)",
    "requested_to_received": "launch requested → launcher received (connection, boto3 client, invoke)",
    "received_to_started": "launcher received → container StartedAt (launcher, Docker)",
}

Row = tuple[str, str, str, str]  # measurement, value, target, verdict
SCALE_TARGET_SECONDS = {500: 120.0}
PEAK_MEMORY_TARGET_MIB = 1536
LAUNCH_OVERHEAD_TARGET = 0.2  # s over a bare docker run, p50


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def rows(results: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    if "lambda_invoke" in results:
        r = results["lambda_invoke"]
        out.append(
            ("Lambda invoke, warm (ping)", f"p50 {r['p50'] * 1000:.1f} ms, p95 {r['p95'] * 1000:.1f} ms", "", "")
        )
    if "launch" in results:
        r = results["launch"]
        a, b = r["airlaunch"], r["bare_docker_run"]
        out.append(("Bare docker run → StartedAt", f"p50 {b['p50']:.3f} s, p95 {b['p95']:.3f} s", "", ""))
        if "lambda_launch" in r:
            lam = r["lambda_launch"]
            value = (
                f"p50 {lam['invoke_to_started']['p50']:.3f} s (response p50 {lam['invoke_to_response']['p50']:.3f} s), "
                f"p95 {lam['invoke_to_started']['p95']:.3f} s"
            )
            out.append(("Lambda launch invoke → StartedAt", value, "", ""))
        out.append(("TI start → container StartedAt", f"p50 {a['p50']:.3f} s, p95 {a['p95']:.3f} s", "", ""))
        for name, step in r.get("steps", {}).items():
            out.append((f"  {LAUNCH_STEPS[name]}", f"p50 {step['p50']:.3f} s, p95 {step['p95']:.3f} s", "", ""))
        ok = r["overhead_p50"] <= LAUNCH_OVERHEAD_TARGET
        value = f"+{r['overhead_p50']:.3f} s p50, +{r['overhead_p95']:.3f} s p95 (x{r['ratio_p50']:.1f})"
        out.append(("Launch overhead over bare docker run", value, f"≤ +{LAUNCH_OVERHEAD_TARGET} s", verdict(ok)))
    if "latency" in results:
        r = results["latency"]
        ok = r["p50"] <= 1 and r["p95"] <= 2
        out.append(
            (
                "Completion latency (ended_at → TI end)",
                f"p50 {r['p50']:.3f} s, p95 {r['p95']:.3f} s",
                "p50 ≤ 1 s, p95 ≤ 2 s",
                verdict(ok),
            )
        )
        if "pickup_bound" in r:
            b = r["pickup_bound"]
            label = "  tasks ending before the trigger starts (0 s)"
            out.append((label, f"p50 {b['p50']:.3f} s, p95 {b['p95']:.3f} s", "(triggerer pickup)", ""))
    if "slots" in results:
        r = results["slots"]
        n, p = r["count"], r["parallelism"]
        a = r["airlaunch"]
        ok = a["state"] == "success" and a["wall_seconds"] <= 20
        if "bare_floor_seconds" in r:
            label = f"{n} x 10 s bare containers started together (this machine's floor)"
            out.append((label, f"{r['bare_floor_seconds']:.1f} s", "", ""))
        out.append(
            (f"{n} x 10 s tasks at parallelism {p}: airlaunch", f"{a['wall_seconds']:.1f} s", "≤ 20 s", verdict(ok))
        )
        if "airlaunch_from_workers" in r:
            w = r["airlaunch_from_workers"]
            label = f"{n} x 10 s tasks at parallelism {p}: airlaunch launched from workers"
            out.append((label, f"{w['wall_seconds']:.1f} s", "(for comparison)", verdict(w["state"] == "success")))
        for way, label in (("python_docker_sdk", "PythonOperator + docker SDK"), ("docker_operator", "DockerOperator")):
            w = r[way]
            value = f"{w['wall_seconds']:.1f} s for {w['count']}"
            if w["extrapolated"]:
                value += f" → {w['wall_seconds_for_count']:.0f} s for {n} (extrapolated)"
            ok = w["state"] == "success" and w["wall_seconds_for_count"] >= n * 10 / p
            out.append((f"{n} x 10 s tasks at parallelism {p}: {label}", value, f"≥ {n * 10 / p:.0f} s", verdict(ok)))
    if "scale" in results:
        r = results["scale"]
        for size in sizes(r):
            s, v = r[size], r[size]["verified"]
            complete = s["state"] == "success" and v["results_in_s3"] == v["results_in_xcom"] == int(size)
            value = (
                f"{s['seconds']:.0f} s ({s['seconds'] / int(size):.2f} s a task); S3 {v['results_in_s3']}/{size}, "
                f"XCom {v['results_in_xcom']}/{size}{'' if v['xcom_equals_s3'] else ' (XCom differs from S3)'}; "
                f"{s['s3_requests_per_task']:.1f} S3 req/task"
            )
            limit = SCALE_TARGET_SECONDS.get(int(size))
            ok = complete and v["xcom_equals_s3"] and (limit is None or s["seconds"] <= limit)
            target = f"≤ {limit:.0f} s, every result" if limit else "every result"
            out.append((f"Scale: {size} mapped tasks from the triggerer", value, target, verdict(ok)))
        biggest = r[sizes(r)[-1]]
        latency = biggest["completion_latency"]
        out.append(
            (
                f"Completion latency at {biggest['count']} tasks (result in S3 → TI end)",
                f"p50 {latency['p50']:.2f} s, p95 {latency['p95']:.2f} s",
                "p95 ≤ 1 s",
                verdict(latency["p95"] <= 1),
            )
        )
        peak = biggest["peak_memory_mib"]
        parts = ", ".join(f"{k} {v:.0f}" for k, v in peak.items() if k != "total")
        out.append(
            (
                f"Stack peak memory at {biggest['count']} tasks (MiB)",
                f"{peak.get('total', 0):.0f} ({parts})",
                f"≤ {PEAK_MEMORY_TARGET_MIB}",
                verdict(peak.get("total", 0) <= PEAK_MEMORY_TARGET_MIB),
            )
        )
    if "footprint" in results:
        r = results["footprint"]
        if "airflow_cold_start_seconds" in r:
            out.append(
                ("Cold start: Airflow's 4 processes → healthy", f"{r['airflow_cold_start_seconds']:.1f} s", "", "")
            )
            out.append(("Cold start: LocalStack → healthy", f"{r['localstack_cold_start_seconds']:.1f} s", "", ""))
        idle = r.get("idle", {}).get("memory_mib", {})
        if idle:
            parts = ", ".join(f"{k} {v:.0f}" for k, v in idle.items() if k != "total")
            out.append(("Stack memory idle (MiB)", f"{idle['total']:.0f} ({parts})", "", ""))
    return out


def sizes(scale: dict[str, Any]) -> list[str]:
    return sorted((k for k in scale if k.isdigit()), key=int)


def scale_tables(scale: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Where the seconds of each fan-out go: the run's phases, each try's phases, CPU by part."""
    ns = sizes(scale)
    head = [f"{n} tasks" for n in ns]
    run = [[phase] + [f"{scale[n]['run_phases'][phase]:.1f}" for n in ns] for phase in scale[ns[-1]]["run_phases"]]
    tries = []
    for phase in scale[ns[-1]]["try_phases"]:
        cells = []
        for n in ns:
            p = scale[n]["try_phases"].get(phase)
            cells.append(f"{p['p50']:.2f} / {p['p95']:.2f}" if p else "")
        tries.append([phase, *cells])
    cpu = []
    for part in scale[ns[-1]]["cpu_seconds"]:
        cells = []
        for n in ns:
            s = scale[n]
            available = s["seconds"] * s["cores"]
            used = s["cpu_seconds"][part]
            cells.append(f"{used:.0f} ({100 * used / available:.0f}%)")
        cpu.append([part, *cells])
    cpu.append(["available (wall x cores)", *[f"{scale[n]['seconds'] * scale[n]['cores']:.0f}" for n in ns]])
    return [
        ("The run's phases (s)", ["phase", *head], run),
        ("Each try's phases, p50 / p95 (s)", ["phase", *head], tries),
        ("CPU-seconds by part of the machine (share of what the cores could give)", ["part", *head], cpu),
    ]


def grid_markdown(title: str, head: list[str], body: list[list[str]]) -> str:
    lines = [f"**{title}**", "", f"| {' | '.join(head)} |", "|" + "---|" * len(head)]
    return "\n".join(lines + [f"| {' | '.join(row)} |" for row in body])


def grid_text(title: str, head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = [title, "  ".join(c.ljust(widths[i]) for i, c in enumerate(head))]
    lines += ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in body]
    return "\n".join(lines)


def text_table(table: list[Row]) -> str:
    head: Row = ("Measurement", "Result", "Target", "")
    widths = [max(len(r[i]) for r in [head, *table]) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in [head, *table]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(table: list[Row]) -> str:
    lines = ["| Measurement | Result | Target | |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(cell.replace('|', '/') for cell in r)} |" for r in table]
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ax = axes[0][0]
    if "launch" in results:
        r = results["launch"]
        ax.boxplot([r["bare_docker_run"]["seconds"], r["airlaunch"]["seconds"]])
        ax.set_xticks([1, 2], ["bare docker run", "airlaunch (TI start)"])
        ax.set_ylabel("s until container StartedAt")
    ax.set_title("Launch")
    ax = axes[0][1]
    if "latency" in results:
        ax.hist(results["latency"]["seconds"], bins=20)
        ax.axvline(1, color="red", linestyle="--")
        ax.set_xlabel("s from status.json ended_at to TI end_date")
    ax.set_title("Completion latency")
    ax = axes[1][0]
    if "slots" in results:
        r = results["slots"]
        labels = {
            "airlaunch": "airlaunch",
            "airlaunch_from_workers": "airlaunch\n(worker launch)",
            "python_docker_sdk": "Python +\ndocker SDK",
            "docker_operator": "DockerOperator",
        }
        ways = [w for w in labels if w in r]
        ax.bar([labels[w] for w in ways], [r[w]["wall_seconds_for_count"] for w in ways])
        ax.axhline(10, color="green", linestyle="--", label="ideal 10 s")
        ax.axhline(20, color="red", linestyle=":", label="target 20 s")
        ax.set_ylabel("wall s")
        ax.legend()
        ax.set_title(f"{r['count']} x 10 s tasks at parallelism {r['parallelism']}")
    ax = axes[1][1]
    if "scale" in results:
        r = results["scale"]
        ns = sizes(r)
        x = [int(n) for n in ns]
        ax.plot(x, [r[n]["seconds"] for n in ns], marker="o", label="wall s")
        for part in ("task containers", "airflow scheduler", "airflow triggerer", "localstack", "docker engine"):
            ax.plot(
                x, [r[n]["cpu_seconds"][part] / r[n]["cores"] for n in ns], marker=".", label=f"{part} CPU s / core"
            )
        ax.axhline(120, color="red", linestyle=":", label="target at 500: 120 s")
        ax.set_xlabel("mapped tasks")
        ax.legend(fontsize=7)
        ax.set_title("Scale (launched from the triggerer)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
