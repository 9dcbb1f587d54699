"""The floors (``make bench PARTS=floors``): what Airflow, a container and S3 cost at the least, measured in
the same run as our own figures, so each target is a ratio to a floor of that run (bench/targets.py).

- ``idle_rates``: each long-lived process's CPU-seconds a second while nothing runs but the benchmark's
  watch of a run (and the machine's), so a run's CPU can be split into idle rate x wall time and the work
  it did.
- ``airflow_floor``: ``bench_floor_triggerer`` or ``bench_floor_workers`` (bench/floor_operator.py): the
  fan-out's shape with a trigger that ends each task at once, no container: wall time, CPU by process.
- ``bare_containers``: the task image started straight from the Docker SDK, as many at once as the
  launcher's execution environments, running a bare ``python -c`` that only reads its own cgroup's CPU.
- ``runtime_containers``: our runtime with an empty task (the catalog's ``noop``: ``true``, no Python of
  its own), launched through the launcher at the same concurrency: CPU from each try's status.json.
- ``single_launches`` and ``noop_worker_start``: a task launched from the triggerer one at a time (its
  launch overhead over a bare ``docker run``), and Airflow's own worker start (a no-op PythonOperator).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import time
from collections.abc import Callable
from typing import Any

import docker

from airlaunch.stack import StackConfig
from bench import scale, triggerers
from bench.harness import BenchAirflow, DockerStarts, load, parse_time, percentiles, run_dag
from bench.measure import IMAGE, _lambda_client, bare_docker_run, s3_client, single_runs, store
from bench.scale import cpu_snapshot

# A bare Python that reads its own container's CPU (cgroup v1 or v2) as it ends, and nothing else.
BARE_PYTHON = (
    "c='/sys/fs/cgroup/'\n"
    "try: print(int(open(c+'cpuacct/cpuacct.usage').read())/1e9)\n"
    "except OSError: print(int(open(c+'cpu.stat').readline().split()[1])/1e6)"
)
TASK_CPU, TASK_MEMORY_MIB, TASK_CPU_SHARES = 0.5, 256, 256  # the catalog's defaults, the launcher's shares


def used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {part: round(after[part] - before[part], 3) for part in before if part in after}


def idle_rates(airflow: BenchAirflow, seconds: float, watch: Callable[[], object]) -> dict[str, Any]:
    """CPU-seconds a second of each part while nothing runs but the benchmark's own watch: ``watch`` is called
    once a second, as ``harness.watch_run`` watches every measured run, so the API server's cost of being
    watched (a task instance GET, about 0.007 CPU-s here) counts as idle, not as a run's work."""
    before, started = cpu_snapshot(airflow), time.monotonic()
    while time.monotonic() - started < seconds:
        watch()
        time.sleep(1)
    took = time.monotonic() - started
    return {"seconds": took, "rates": {k: v / took for k, v in used(before, cpu_snapshot(airflow)).items()}}


def airflow_floor(airflow: BenchAirflow, dag_id: str, count: int) -> dict[str, Any]:
    """One run of a floor DAG with ``count`` mapped tasks: its wall time and the CPU each part spent."""
    api = airflow.api()
    before, started = cpu_snapshot(airflow), time.monotonic()
    run_id, run = run_dag(api, dag_id, {"count": count}, 300 + 3 * count)
    took = time.monotonic() - started
    cpu = used(before, cpu_snapshot(airflow))
    states = [ti["state"] for ti in api.task_instances(dag_id, run_id) if ti["task_id"] == "launch"]
    return {
        "count": count,
        "state": run["state"],
        "failed_tasks": sum(state != "success" for state in states),
        "seconds": took,
        "cpu_seconds": cpu,
        "load": load(),
    }


def bare_containers(airflow: BenchAirflow, count: int, concurrency: int) -> dict[str, Any]:
    """``count`` containers of the task image, ``concurrency`` starts at a time, each a bare Python reading its
    cgroup's CPU at its end; with the task's CPU and memory limits and the launcher's CPU shares."""
    client, starts = docker.from_env(), DockerStarts()
    nano_cpus, memory = int(TASK_CPU * 1e9), f"{TASK_MEMORY_MIB}m"

    def start(_: int) -> Any:
        return client.containers.run(
            IMAGE, entrypoint=["python", "-c", BARE_PYTHON], network_mode="host", detach=True,
            nano_cpus=nano_cpus, mem_limit=memory, cpu_shares=TASK_CPU_SHARES, labels={"airlaunch.bench": "floor"},
        )  # fmt: skip

    before, began = cpu_snapshot(airflow), time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            containers = list(pool.map(start, range(count)))
        for container in containers:
            container.wait()
        took = time.monotonic() - began
        cpu = used(before, cpu_snapshot(airflow))
        own = [float(c.logs(stderr=False).decode().strip().splitlines()[-1]) for c in containers]
        time.sleep(1)  # the last die events
        lifetimes = starts.lifetimes(c.id for c in containers)
    finally:
        starts.close()
    for container in containers:
        container.remove()
    return {
        "count": count,
        "concurrency": concurrency,
        "seconds": took,
        "cpu_seconds": cpu,
        "container_cpu_seconds": {**percentiles(own), "mean": sum(own) / len(own)},
        "container_seconds": percentiles(lifetimes),
        "load": load(),
    }


def runtime_containers(airflow: BenchAirflow, count: int, concurrency: int) -> dict[str, Any]:
    """``count`` tries of the catalog's ``noop`` (the runtime with an empty task) launched through the launcher,
    ``concurrency`` launches at a time: each try's container CPU from its status.json, its lifetime from Docker."""
    lambda_client, starts, results = _lambda_client(), DockerStarts(), store()
    dag_id, run_id = "bench_floor_runtime", f"bench_{time.time_ns()}"

    def launch(index: int) -> str:
        identity = {"dag_id": dag_id, "run_id": run_id, "task_id": "noop", "map_index": index, "try_number": 1}
        payload = json.dumps({"action": "launch", "request": {"task": "noop", "identity": identity, "params": {}}})
        answer = json.loads(lambda_client.invoke(FunctionName="function", Payload=payload.encode())["Payload"].read())
        return str(answer["handle"]["task_ref"])

    before, began = cpu_snapshot(airflow), time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            refs = list(pool.map(launch, range(count)))
        deadline = time.monotonic() + 120 + count
        while len(tries := [t for t in results.tries(dag_id, run_id) if t.status]) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(tries)} of {count} noop tries wrote status.json")
            time.sleep(2)
        while len(starts.died.keys() & set(refs)) < count and time.monotonic() < deadline:
            time.sleep(0.2)  # status.json is written before the container ends
        took = time.monotonic() - began
        cpu = used(before, cpu_snapshot(airflow))
        lifetimes = starts.lifetimes(refs)
    finally:
        starts.close()
    usages = [t.status.usage for t in tries if t.status]
    own = [u.resources.cpu_seconds or 0.0 for u in usages if u and u.resources]
    return {
        "count": count,
        "concurrency": concurrency,
        "succeeded": sum(t.state == "succeeded" for t in tries),
        "seconds": took,
        "cpu_seconds": cpu,
        "container_cpu_seconds": {**percentiles(own), "mean": sum(own) / max(1, len(own))},
        "container_seconds": percentiles(lifetimes),
        "load": load(),
    }


def single_launches(airflow: BenchAirflow, samples: int) -> dict[str, Any]:
    """A bare ``docker run``, then ``samples`` single tasks launched from workers and from the triggerer, one at a
    time (a warm-up each first): TI start → container StartedAt, and the launch's steps."""
    api, s3, starts = airflow.api(), s3_client(), DockerStarts()
    conf = {"min_seconds": 3, "max_seconds": 4}  # ends while its trigger watches (see measure.launch_and_latency)
    out: dict[str, Any] = {}
    try:
        out["bare_docker_run"] = bare_docker_run(samples, starts)
        for way, dag_id in (("workers", "bench_single"), ("triggerer", "bench_single_triggerer")):
            api.wait_for_dag(dag_id)
            api.unpause(dag_id)
            api.wait_for_run(dag_id, api.trigger(dag_id, {}), timeout=180)  # warm-up, not counted
            overhead, latency, states, steps = single_runs(api, s3, starts, samples, conf, dag_id)
            out[way] = {
                "ti_start_to_started": {"seconds": overhead, **percentiles(overhead)},
                "steps": {name: percentiles(values) for name, values in steps.items()},
                "completion_latency": percentiles(latency),
                "states": states,
            }
    finally:
        starts.close()
    return out


def noop_worker_start(airflow: BenchAirflow, samples: int) -> dict[str, Any]:
    """Airflow's own worker start: ``samples`` runs of a no-op PythonOperator, one at a time (a warm-up first),
    its task instance's start to its end."""
    api, dag_id = airflow.api(), "bench_noop_python"
    api.wait_for_dag(dag_id)
    api.unpause(dag_id)
    api.wait_for_run(dag_id, api.trigger(dag_id, {}), timeout=180)
    run_ids = [api.trigger(dag_id, {}) for _ in range(samples)]  # max_active_runs=1 runs them in turn
    took = []
    for run_id in run_ids:
        api.wait_for_run(dag_id, run_id, timeout=120 + 10 * samples)
        ti = api.task_instances(dag_id, run_id)[0]
        took.append(parse_time(ti["end_date"]) - parse_time(ti["start_date"]))
    return {"ti_start_to_end": {"seconds": took, **percentiles(took)}}


def launcher_concurrency() -> int:
    return StackConfig().lambda_concurrency


def measure(
    airflow: BenchAirflow,
    results: dict[str, Any],
    scale_sizes: list[int],
    max_seconds: float,
    samples: int,
    run_scale: Callable[[], dict[str, Any]],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Every floor, our fan-outs (``run_scale``, unless this run measured them already), the completion latency
    of further runs at the largest size, single launches and SQS with one and two triggerers. Each step is kept
    in ``results["floors"]`` as it ends (``say`` saves them), should a later one fail."""
    out: dict[str, Any] = results.setdefault("floors", {})
    api = airflow.api()
    for dag_id in ("bench_floor_triggerer", "bench_floor_workers"):  # first triggers and task processes import
        run_id, _ = run_dag(api, dag_id, {"count": 2}, timeout=300)
    seconds = float(os.environ.get("BENCH_IDLE_SECONDS", "30"))
    out["idle"] = idle_rates(airflow, seconds, lambda: api.task_instance("bench_floor_workers", run_id, "collect"))
    say(f"    idle rates over {out['idle']['seconds']:.0f} s measured")
    worker_sizes = [
        int(s) for s in os.environ.get("BENCH_FLOOR_WORKERS_SCALE", ",".join(map(str, scale_sizes))).split(",") if s
    ]
    out["airflow"] = {"triggerer": {}, "workers": {}}
    for way, dag_id, counts in (
        ("triggerer", "bench_floor_triggerer", scale_sizes),
        ("workers", "bench_floor_workers", worker_sizes),
    ):
        for count in counts:
            out["airflow"][way][str(count)] = airflow_floor(airflow, dag_id, count)
            say(f"    Airflow's floor, {way}, {count} tasks: {out['airflow'][way][str(count)]['seconds']:.1f} s")
    containers = int(os.environ.get("BENCH_CONTAINER_FLOOR_N", "50"))
    out["bare"] = bare_containers(airflow, containers, launcher_concurrency())
    say(f"    bare containers: {out['bare']['seconds']:.1f} s for {containers}")
    out["runtime"] = runtime_containers(airflow, containers, launcher_concurrency())
    say(f"    runtime with an empty task: {out['runtime']['seconds']:.1f} s for {containers}")
    if "scale" not in results:
        results["scale"] = run_scale()
    largest = max(scale_sizes)
    out["latency_runs"] = [results["scale"][str(largest)]["completion_latency"]]
    for n in range(2, int(os.environ.get("BENCH_LATENCY_RUNS", "3")) + 1):
        again = scale.one_size(airflow, largest, max_seconds)
        out.setdefault("latency_repeats", []).append(again)
        out["latency_runs"].append(again["completion_latency"])
        say(f"    run {n} at {largest}: {again['seconds']:.0f} s")
    out["single"] = single_launches(airflow, samples)
    out["noop_worker"] = noop_worker_start(airflow, samples)
    say("    single launches and the no-op worker start measured")
    sqs_size = int(os.environ.get("BENCH_SQS_SIZE") or min(200, largest))
    out["sqs"] = triggerers.one_and_two(airflow.cfg.airflow_parallelism, sqs_size, max_seconds)
    return out
