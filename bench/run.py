"""`make bench`: launch overhead, completion latency, slot efficiency, scale and footprint.

Runs against the shared LocalStack and launcher Lambda (started if down, and then stopped at the
end) and an Airflow of its own (.stack-bench/, port 8180, DAGs from bench/dags), which it stops too. Prints a table
with PASS/FAIL per target, saves JSON and a chart under bench/results/, and writes the table
into docs/benchmarks.md between its markers.

Environment: BENCH_PARTS (or PARTS) comma-separated from footprint,launch,latency,scale,floors,slots,cache,
scale-ecs (default all; cache, bench/cache.py: the reference pipeline with the result cache off and on, on a stack
of its own; floors, bench/floors.py and bench/targets.py: Airflow's, the container's and S3's floors beside our
fan-outs of the same run, issue 22's targets as ratios to them, with BENCH_IDLE_SECONDS (30),
BENCH_FLOOR_WORKERS_SCALE (BENCH_SCALE), BENCH_CONTAINER_FLOOR_N (50), BENCH_LATENCY_RUNS (3) and
BENCH_SQS_SIZE (200, at most the largest size)); BENCH_SAMPLES (20) launch/latency samples; BENCH_SLOTS_N (32) and
BENCH_SLOTS_BLOCKING_N (same) tasks for the slot test; BENCH_SCALE (50,200,500) fan-out sizes;
BENCH_SCALE_ECS (500) fan-out sizes on the ECS mode (scale-ecs, bench/scale_ecs.py: on a stack of its
own, .stack-bench-ecs, run last) and BENCH_ECS_VCPU_QUOTA (256) the emulated account's vCPU quota for it;
BENCH_SCALE_MAX_SECONDS (1) task sleep; BENCH_PARALLELISM (the stack's default, 2: the stack as it ships) for
everything but the slot test (always 2); BENCH_DOCS=0 leaves docs/benchmarks.md alone; BENCH_KEEP_AIRFLOW=1 leaves
it up.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from airlaunch.stack import Stack, StackConfig
from airlaunch.stack.config import DEFAULT_AIRFLOW_PARALLELISM
from bench import cache, floors, measure, report, scale, scale_ecs, targets
from bench.harness import REPO, BenchAirflow, load

SCALE_ROW_PREFIXES = ("Scale:", "Completion latency at", "Stack peak memory at")
PARTS = ("footprint", "launch", "latency", "scale", "floors", "slots", "cache", "scale-ecs")
RESULTS = REPO / "bench" / "results"
DOCS = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
SCALE_BEGIN, SCALE_END = "<!-- bench-scale:begin -->", "<!-- bench-scale:end -->"
ECS_BEGIN, ECS_END = "<!-- bench-ecs:begin -->", "<!-- bench-ecs:end -->"
FLOORS_BEGIN, FLOORS_END = "<!-- bench-floors:begin -->", "<!-- bench-floors:end -->"


@dataclass(frozen=True)
class Settings:
    parts: list[str]
    samples: int
    slots_n: int
    slots_blocking_n: int
    scale: list[int]
    scale_ecs: list[int]
    scale_max_seconds: float
    parallelism: int


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def write_block(begin: str, end: str, body: str) -> None:
    """Replace what stands between the markers in docs/benchmarks.md (appended when they are missing)."""
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if begin not in text:
        text += f"\n{begin}\n{end}\n"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    DOCS.write_text(f"{head}{begin}\n{body}\n{end}{tail}")


def measured_line(results: dict[str, Any]) -> str:
    return (
        f"Measured {results['finished']} on {results['machine']}, settings {json.dumps(results['settings'])}; "
        f"load average (1, 5, 15 min) at start {results['load_start']}, at end {results['load_end']}."
    )


def write_docs(table: list[report.Row], floor_rows: list[report.Row], results: dict[str, Any]) -> None:
    """The scale parts and the floors have blocks of their own, so each block is rewritten only by a run that
    measured it."""
    if floor_rows:
        write_block(FLOORS_BEGIN, FLOORS_END, f"{measured_line(results)}\n\n{report.markdown_table(floor_rows)}")
    ecs_rows = [row for row in table if row[0].startswith(scale_ecs.PREFIX)]
    scale_rows = [row for row in table if row[0].startswith(SCALE_ROW_PREFIXES)]
    other_rows = [row for row in table if row not in scale_rows and row not in ecs_rows and row not in floor_rows]
    if "scale_ecs" in results:
        grids = "\n\n".join(report.grid_markdown(*grid) for grid in report.scale_tables(results["scale_ecs"]))
        body = f"{measured_line(results)}\n\n{report.markdown_table(ecs_rows)}\n\n{grids}"
        write_block(ECS_BEGIN, ECS_END, body)
    if "scale" in results:
        grids = "\n\n".join(report.grid_markdown(*grid) for grid in report.scale_tables(results["scale"]))
        body = f"{measured_line(results)}\n\n{report.markdown_table(scale_rows)}\n\n{grids}"
        write_block(SCALE_BEGIN, SCALE_END, body)
    if other_rows:
        write_block(BEGIN, END, f"{measured_line(results)}\n\n{report.markdown_table(other_rows)}")


def main() -> int:
    parts = env_list("BENCH_PARTS", os.environ.get("PARTS") or ",".join(PARTS))
    unknown = set(parts) - set(PARTS)
    if unknown:
        print(f"error: unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}", file=sys.stderr)
        return 2
    settings = Settings(
        parts=parts,
        samples=int(os.environ.get("BENCH_SAMPLES", "20")),
        slots_n=int(os.environ.get("BENCH_SLOTS_N", "32")),
        slots_blocking_n=int(os.environ.get("BENCH_SLOTS_BLOCKING_N") or os.environ.get("BENCH_SLOTS_N", "32")),
        scale=[int(s) for s in env_list("BENCH_SCALE", "50,200,500")],
        scale_ecs=[int(s) for s in env_list("BENCH_SCALE_ECS", "500")],
        scale_max_seconds=float(os.environ.get("BENCH_SCALE_MAX_SECONDS", "1")),
        parallelism=int(os.environ.get("BENCH_PARALLELISM") or DEFAULT_AIRFLOW_PARALLELISM),
    )
    os.environ.update(StackConfig(repo=REPO).client_env())
    shared = Stack(StackConfig(repo=REPO))
    # the shared LocalStack and Lambda (with the Docker backend): started only if down, and then stopped at the
    # end; the ECS part has a stack of its own
    started = shared.up(backend="docker") if set(parts) - {"scale-ecs", "cache"} else []
    ecs_stack = scale_ecs.EcsStack()
    results: dict[str, Any] = {
        "settings": asdict(settings),
        "machine": f"{platform.node()} ({os.cpu_count()} cores)",
        "load_start": load(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")

    def say(message: str) -> None:  # also keeps what was measured so far, should a later part fail
        (RESULTS / f"results-{stamp}.json").write_text(json.dumps(results, indent=2))
        print(message, flush=True)

    airflow = BenchAirflow(settings.parallelism)
    try:
        if "footprint" in parts:
            say("==> footprint: Airflow and LocalStack from cold, then idle memory")
            airflow, results["footprint"] = measure.cold_start(settings.parallelism)
            results["footprint"]["idle"] = measure.idle_memory(airflow)
        if {"launch", "latency", "scale", "floors"} & set(parts):
            airflow = BenchAirflow(settings.parallelism)
            airflow.ensure()
        if {"launch", "latency"} & set(parts):
            say(f"==> launch overhead and completion latency ({settings.samples} samples)")
            results["lambda_invoke"] = measure.lambda_invoke(100)
            sampled = measure.launch_and_latency(airflow, settings.samples)
            results.update({k: v for k, v in sampled.items() if k in parts or k not in ("launch", "latency")})

        def keep(done: dict[str, Any]) -> None:
            results["scale"] = done
            say(f"    fan-out of {max(int(k) for k in done if k.isdigit())} measured")

        if "scale" in parts:
            say(f"==> scale: fan-outs of {settings.scale}")
            results["scale"] = scale.scale(airflow, settings.scale, settings.scale_max_seconds, keep)
        if "floors" in parts:
            say(f"==> floors: Airflow's, the container's and S3's, beside our fan-outs of {settings.scale}")

            def our_fan_outs() -> dict[str, Any]:
                return scale.scale(airflow, settings.scale, settings.scale_max_seconds, keep)

            floors.measure(
                airflow, results, settings.scale, settings.scale_max_seconds, settings.samples, our_fan_outs, say
            )
        if "slots" in parts:
            say(f"==> slot efficiency: {settings.slots_n} x 10 s tasks at parallelism 2")
            airflow = BenchAirflow(2)
            airflow.ensure()
            results["slots"] = measure.slots(airflow, settings.slots_n, settings.slots_blocking_n)
        if "cache" in parts:
            say("==> the reference pipeline with the result cache off and on (a stack of its own)")
            airflow.down()  # it points at the shared stack
            results["cache"] = cache.measure(settings.parallelism)
        if "scale-ecs" in parts:
            say(f"==> scale on the ECS mode (a stack of its own in {scale_ecs.STATE_DIR.name}): {settings.scale_ecs}")
            airflow.down()  # it points at the shared stack: started again, pointing at the part's
            ecs_stack.enter()
            airflow = BenchAirflow(settings.parallelism)
            airflow.ensure()

            def keep_ecs(done: dict[str, Any]) -> None:
                results["scale_ecs"] = done
                say(f"    ECS fan-out of {max(int(k) for k in done if k.isdigit())} measured")

            results["scale_ecs"] = scale_ecs.scale_ecs(
                airflow, settings.scale_ecs, settings.scale_max_seconds, keep_ecs
            )
    finally:
        keep_up = os.environ.get("BENCH_KEEP_AIRFLOW") == "1"
        if not keep_up:
            airflow.down()
        ecs_stack.leave(keep_up)
        if started and not keep_up:  # left running, a later `make test` would join a stack started with the
            shared.down(only=started)  # bench's settings
    results["load_end"] = load()
    results["finished"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

    for name in (f"results-{stamp}.json", "latest.json"):
        (RESULTS / name).write_text(json.dumps(results, indent=2))
    report.chart(results, RESULTS / "latest.png")
    floor_rows = targets.floor_rows(results["floors"], results.get("scale")) if "floors" in results else []
    table = report.rows(results) + scale_ecs.rows(results) + floor_rows
    print(report.text_table(table))
    for key in ("scale", "scale_ecs"):
        for grid in report.scale_tables(results[key]) if key in results else []:
            print(f"\n{report.grid_text(*grid)}")
    cache.publish(results, report.text_table, write_block, os.environ.get("BENCH_DOCS", "1") != "0")
    print(f"\nload average at start {results['load_start']}, at end {results['load_end']}")
    print(f"saved {RESULTS / 'latest.json'}, {RESULTS / 'latest.png'}")
    if os.environ.get("BENCH_DOCS", "1") != "0":
        write_docs(table, floor_rows, results)
        print(f"wrote the table to {DOCS.relative_to(REPO)}")
    return 1 if any(row[3] == "FAIL" for row in table + cache.rows(results)) else 0


if __name__ == "__main__":
    sys.exit(main())
