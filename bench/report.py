"""The results as a table with PASS/FAIL per target, a markdown section, and a chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

Row = tuple[str, str, str, str]  # measurement, value, target, verdict


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
        ok = r["overhead_p50"] <= 0.5
        value = f"+{r['overhead_p50']:.3f} s p50, +{r['overhead_p95']:.3f} s p95 (x{r['ratio_p50']:.1f})"
        out.append(("Launch overhead over bare docker run", value, "≤ +0.5 s", verdict(ok)))
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
        for size in sorted((k for k in r if k.isdigit()), key=int):
            s, v = r[size], r[size]["verified"]
            cpu = s["cpu_seconds"]
            value = (
                f"{s['seconds']:.0f} s; CPU scheduler {cpu['scheduler']:.0f} s (+executor "
                f"{s['scheduler_with_executor_cpu_seconds']:.0f} s), triggerer {cpu['triggerer']:.0f} s; "
                f"{s['s3_requests_per_task']:.1f} S3 req/task; latency p50 {s['completion_latency']['p50']:.2f} s "
                f"p95 {s['completion_latency']['p95']:.2f} s; "
                f"peak stack {s['peak_memory_mib'].get('total', 0):.0f} MiB; "
                f"S3 {v['results_in_s3']}/{size}, XCom {v['results_in_xcom']}/{size}"
            )
            complete = s["state"] == "success" and v["results_in_s3"] == v["results_in_xcom"] == int(size)
            ok = complete and v["xcom_equals_s3"]
            target, mark = ("all results in S3 and XCom", verdict(ok)) if size == "500" else ("", "" if ok else "FAIL")
            out.append((f"Scale: {size} mapped tasks (P={r['parallelism']})", value, target, mark))
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
        loaded = r.get("under_load_mib")
        if loaded:
            parts = ", ".join(f"{k} {v:.0f}" for k, v in loaded.items() if k != "total")
            out.append(("Stack memory under load, peak (MiB)", f"{loaded['total']:.0f} ({parts})", "", ""))
    return out


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
        sizes = sorted((k for k in r if k.isdigit()), key=int)
        ax.plot([int(s) for s in sizes], [r[s]["seconds"] for s in sizes], marker="o", label="total s")
        ax.plot(
            [int(s) for s in sizes],
            [r[s]["cpu_seconds"]["triggerer"] for s in sizes],
            marker="s",
            label="triggerer CPU s",
        )
        ax.plot(
            [int(s) for s in sizes],
            [r[s]["cpu_seconds"]["scheduler"] for s in sizes],
            marker="^",
            label="scheduler CPU s",
        )
        ax.set_xlabel("mapped tasks")
        ax.legend()
        ax.set_title(f"Scale (parallelism {r['parallelism']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
