"""The result cache (``make bench PARTS=cache``): the reference pipeline's time and cost with it off and on.

On an embedded stack of its own (``.stack-bench-cache``: LocalStack on 5066, the launcher on 9500, emulator
instances from 20000, the launcher container ``airlaunch-launcher-bench-cache``) whose launcher serves a copy
of the catalog, and the benchmark's Airflow started again with the reference pipeline's DAGs folder, pointing
at it. ``airlaunch_reference`` runs in three ways, task two asked for exactly one second (so that it
returns the same value each time), after one run that is not measured (Airflow's first run of a DAG pays
for parsing and warming up):

1. cache off: the catalog as it is;
2. cache on, first run: the reference tasks cacheable (all but task two: it sleeps a random time, a cached
   value would freeze it), the cache empty, so every task runs and its result is cached;
3. cache on, run again: what did not change is served from the cache. The report's params hold the run
   id, so it runs each time; task three's inputs are task two's value, the same again, so it is served.

Runs 1 and 3 alternate, three times each (``repeats``), and each is reported by its run of median wall
time. A run's time is Airflow's, the DAG run's start to its end ("tasks": the Airflow durations of the
launched tasks, added up); its cost is ``airlaunch report``'s estimate (Fargate for what ran, the launcher's
invocation and S3 requests for what was served), with the count of containers started and tries served.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from argparse import Namespace
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import boto3
import yaml

from airlaunch.cli.report import build
from airlaunch.cli.store import ResultStore
from airlaunch.cost import money, run_cost
from airlaunch.protocol import cache_root
from airlaunch.stack import Stack, StackConfig
from bench.harness import REPO, BenchAirflow, run_dag
from bench.report import Row, markdown_table, verdict

DAG = "airlaunch_reference"
CONF = {"min_seconds": 1, "max_seconds": 1}
CACHED = ("diagnostic", "task_one", "task_three", "report_notebook")  # all but task_two
RUN_AGAIN = {"do_task_two", "report"}  # what the third run must start containers for, and nothing else
STATE_DIR = REPO / ".stack-bench-cache"
CATALOG = STATE_DIR / "catalog" / "catalog.yaml"
ENV = {
    "AIRLAUNCH_LOCALSTACK_PORT": "5066",
    "AIRLAUNCH_LAMBDA_PORT": "9500",
    "AIRLAUNCH_RIE_PORT_BASE": "20000",
    "AIRLAUNCH_LAUNCHER_CONTAINER": "airlaunch-launcher-bench-cache",
    "AIRLAUNCH_STACK_CATALOG": str(CATALOG),
}
BEGIN, END = "<!-- bench-cache:begin -->", "<!-- bench-cache:end -->"


class ReferenceAirflow(BenchAirflow):
    """The benchmark's Airflow, loading the reference pipeline's DAGs folder instead of bench/dags."""

    def env(self) -> dict[str, str]:
        return {**super().env(), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "airflow" / "dags")}


def _catalog(cache: bool) -> None:
    catalog = yaml.safe_load((REPO / "tasks" / "catalog.yaml").read_text())
    for name in CACHED if cache else ():
        catalog["tasks"][name]["cache"] = True
    CATALOG.parent.mkdir(parents=True, exist_ok=True)
    tmp = CATALOG.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(catalog, sort_keys=False))
    tmp.replace(CATALOG)


@contextlib.contextmanager
def _own_stack() -> Iterator[StackConfig]:
    """The part's stack, this process pointed at it; stopped and the environment given back after."""
    saved = {key: os.environ.get(key) for key in ENV}
    os.environ.update(ENV)
    cfg = StackConfig(repo=REPO, state_dir=STATE_DIR)
    client = cfg.client_env()
    saved |= {key: os.environ.get(key) for key in client if key not in saved}
    os.environ.update(client)
    stack = Stack(cfg)
    try:
        stack.up(backend="docker")
        if not stack.launcher.serves(cfg.catalog):
            stack.restart("launcher")
        yield cfg
    finally:
        stack.down()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _clear(s3: Any, bucket: str) -> None:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{cache_root('runs')}/")
    for key in [o["Key"] for page in pages for o in page.get("Contents", [])]:
        s3.delete_object(Bucket=bucket, Key=key)


def _measured(airflow: BenchAirflow, s3: Any, cfg: StackConfig) -> dict[str, Any]:
    api = airflow.api()
    run_id, run = run_dag(api, DAG, CONF, timeout=600)
    reports, _ = build(ResultStore(s3, cfg.bucket, "runs"), DAG, run_id, Namespace(
        region=None, arch=None, spot=False, cpu=None, memory_mib=None))  # fmt: skip
    started = datetime.fromisoformat(run["start_date"]).timestamp()
    ended = datetime.fromisoformat(run["end_date"]).timestamp()
    served = [r.task_try.identity.task_id for r in reports if r.task_try.status and r.task_try.status.cached_from]
    launched = {r.task_try.identity.task_id for r in reports}
    durations = [ti.get("duration") or 0.0 for ti in api.task_instances(DAG, run_id) if ti["task_id"] in launched]
    return {
        "run_id": run_id,
        "state": run["state"],
        "seconds": round(ended - started, 2),
        "task_seconds": round(sum(durations), 2),  # Airflow's durations of the launched tasks, added up
        "cost": float(run_cost(r.cost for r in reports if r.cost)),
        "containers": sorted(launched - set(served)),
        "served": sorted(served),
    }


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median wall time, with the wall times of them all."""
    ordered = sorted(runs, key=lambda run: run["seconds"])
    return {**ordered[len(ordered) // 2], "all_seconds": [run["seconds"] for run in runs]}


def _settled(s3: Any, bucket: str, count: int, timeout: float = 60) -> None:
    """The launcher caches a try as it records its container's end, a moment after Airflow ends the task."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = s3.list_objects_v2(Bucket=bucket, Prefix=f"{cache_root('runs')}/").get("KeyCount", 0)
        if found >= count:
            return
        time.sleep(0.5)


def measure(parallelism: int, repeats: int = 3) -> dict[str, Any]:
    """The runs (see the module's docstring): off and again alternate, ``repeats`` times each, so that the
    machine's load drifts over both alike; each is the run of median wall time."""
    _catalog(cache=False)
    with _own_stack() as cfg:
        s3 = boto3.client("s3", endpoint_url=cfg.localstack_url, region_name=cfg.region)
        _clear(s3, cfg.bucket)
        airflow = ReferenceAirflow(parallelism)
        airflow.down()  # whatever Airflow of the benchmark's runs points at another stack
        airflow.up()
        try:
            run_dag(airflow.api(), DAG, CONF, timeout=600)  # the warm-up: not measured
            _catalog(cache=True)  # the launcher reads the catalog again when it changes
            first = _measured(airflow, s3, cfg)
            _settled(s3, cfg.bucket, len(set(first["containers"]) - {"do_task_two"}))
            off, again = [], []
            for _ in range(repeats):
                _catalog(cache=False)
                off.append(_measured(airflow, s3, cfg))
                _catalog(cache=True)
                again.append(_measured(airflow, s3, cfg))
        finally:
            airflow.down()
    shutil.rmtree(CATALOG.parent, ignore_errors=True)
    return {"off": _median(off), "on_first": first, "on_again": _median(again), "repeats": repeats}


def rows(results: dict[str, Any]) -> list[Row]:
    if "cache" not in results:
        return []
    r = results["cache"]

    def cells(run: dict[str, Any]) -> str:
        served = f", {len(run['served'])} served from the cache" if run["served"] else ""
        spread = f" (of {', '.join(f'{t:.1f}' for t in run['all_seconds'])})" if "all_seconds" in run else ""
        times = f"{run['seconds']:.1f} s{spread}, tasks {run['task_seconds']:.1f} s"
        return f"{times}, {money(run['cost'])}, {len(run['containers'])} containers{served}"

    again = r["on_again"]
    runs = [r[name] for name in ("off", "on_first", "on_again")]
    ok = set(again["containers"]) == RUN_AGAIN and all(run["state"] == "success" for run in runs)
    return [
        ("Reference pipeline, cache off", cells(r["off"]), "", ""),
        ("Reference pipeline, cache on, first run", cells(r["on_first"]), "", ""),
        ("Reference pipeline, cache on, run again", cells(again), "containers only for what changed", verdict(ok)),
    ]


def publish(results: dict[str, Any], text_table: Any, write_block: Any, docs: bool) -> None:
    """Print the part's rows, and write them into docs/benchmarks.md between its own markers."""
    table = rows(results)
    if not table:
        return
    print(f"\n{text_table(table)}")
    if docs:
        again = results["cache"]["on_again"]
        body = (
            f"Measured {results.get('finished', '')} on {results.get('machine', '')}, load average (1, 5, 15 min) "
            f"at start {results.get('load_start')}, at end {results.get('load_end')}. Run again with the cache on, "
            f"containers ran for {', '.join(again['containers'])}; served from the cache: {', '.join(again['served'])}."
        )
        write_block(BEGIN, END, f"{body}\n\n{markdown_table(table)}")
