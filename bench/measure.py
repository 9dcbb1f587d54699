"""The measurements. Each returns a JSON-ready dict; bench/run.py decides what runs, in what order."""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

import boto3
import docker
from botocore.config import Config

from airlaunch.cli.store import ResultStore
from airlaunch.stack import LocalStack, StackConfig
from bench.harness import (
    STATE_DIR,
    BenchAirflow,
    DockerStarts,
    load,
    parse_time,
    percentiles,
    run_dag,
    stack_memory,
)
from bench.report import LAUNCH_STEPS

IMAGE = "airlaunch/reference-tasks:latest"
CFG = StackConfig()


def s3_client() -> Any:
    """The S3 of the stack the benchmark measures now (its ports as the environment gives them)."""
    cfg = StackConfig()
    return boto3.client(
        "s3",
        endpoint_url=cfg.localstack_url,
        region_name=cfg.region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def store() -> ResultStore:
    """The benchmark's results as `airlaunch report` reads them (every try, its files and status)."""
    return ResultStore(s3_client(), StackConfig().bucket, os.environ.get("AIRLAUNCH_KEY_PREFIX", "runs"))


def read_status(s3: Any, bucket: str, prefix: str) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=bucket, Key=prefix + "status.json")["Body"].read())


# -- launch overhead and completion latency ---------------------------------------------------


def _lambda_client() -> Any:
    """boto3's lambda client for the local launcher, as Airflow uses it (no retries)."""
    return boto3.client(
        "lambda",
        endpoint_url=CFG.lambda_url,
        region_name=CFG.region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 0}, read_timeout=130),
    )


def lambda_invoke(samples: int) -> dict[str, Any]:
    """boto3 invoke → response of a warm launcher Lambda, for an action it answers at once."""
    client = _lambda_client()
    payload = json.dumps({"action": "ping"}).encode()  # answered without touching Docker
    for _ in range(3):  # warm every emulator of the pool
        client.invoke(FunctionName="function", Payload=payload)["Payload"].read()
    took = []
    for _ in range(samples):
        start = time.perf_counter()
        client.invoke(FunctionName="function", Payload=payload)["Payload"].read()
        took.append(time.perf_counter() - start)
    return {"seconds": took, **percentiles(took), "load": load()}


def lambda_launch(samples: int, starts: DockerStarts) -> dict[str, Any]:
    """boto3 invoke of `launch` (task_two, 0 s) → response, and → the container's StartedAt: the
    launcher's share of the launch overhead, without Airflow."""
    client = _lambda_client()
    response_took, started_took = [], []
    for i in range(samples):
        identity = {"dag_id": "bench_lambda", "run_id": f"bench_{time.time_ns()}", "task_id": "launch"}
        request = {"task": "task_two", "identity": {**identity, "map_index": i, "try_number": 1}, "params": {}}
        payload = json.dumps({"action": "launch", "request": {**request, "params": {"max_seconds": 0}}}).encode()
        start = time.time()
        answer = json.loads(client.invoke(FunctionName="function", Payload=payload)["Payload"].read())
        response_took.append(time.time() - start)
        started_took.append(starts.wait_for(answer["handle"]["task_ref"]).at - start)
        time.sleep(0.5)
    return {
        "invoke_to_response": {"seconds": response_took, **percentiles(response_took)},
        "invoke_to_started": {"seconds": started_took, **percentiles(started_took)},
        "load": load(),
    }


def bare_docker_run(samples: int, starts: DockerStarts) -> dict[str, Any]:
    """`docker run -d --rm` of the same image: command issued → State.StartedAt."""
    took = []
    for _ in range(samples):
        command = ["docker", "run", "-d", "--rm", "--network", "host", "--entrypoint", "python", IMAGE]
        start = time.time()
        out = subprocess.run([*command, "-c", "import time; time.sleep(1)"], capture_output=True, text=True, check=True)
        took.append(starts.wait_for(out.stdout.strip()).at - start)
        time.sleep(0.5)
    return {"seconds": took, **percentiles(took), "load": load()}


def single_runs(
    api: Any, s3: Any, starts: DockerStarts, count: int, conf: dict[str, Any], dag_id: str = "bench_single"
) -> tuple[list[float], list[float], list[str], dict[str, list[float]]]:
    """Launch overhead and completion latency of `count` runs of a one-task DAG (bench_single, or
    bench_single_triggerer), run one after another; and the launch's steps from each try's timings.json
    (Airflow's clock, then the launcher's)."""
    run_ids = [api.trigger(dag_id, conf) for _ in range(count)]  # max_active_runs=1 runs them in turn
    overhead, latency, states = [], [], []
    steps: dict[str, list[float]] = {name: [] for name in LAUNCH_STEPS}  # report.py labels them
    for run_id in run_ids:
        run = api.wait_for_run(dag_id, run_id, timeout=120 + 10 * count)
        states.append(run["state"])
        ti = api.task_instances(dag_id, run_id)[0]
        where = api.xcom(dag_id, run_id, "launch", "airlaunch")
        status = read_status(s3, where["bucket"], where["prefix"])
        started, ti_start = starts.wait_for(where["task_ref"]).at, parse_time(ti["start_date"])
        overhead.append(started - ti_start)
        latency.append(parse_time(ti["end_date"]) - parse_time(status["ended_at"]))
        timings = json.loads(s3.get_object(Bucket=where["bucket"], Key=where["prefix"] + "timings.json")["Body"].read())
        requested, received = (
            parse_time(timings["airflow"]["launch_requested_at"]),
            parse_time(timings["launcher"]["received_at"]),
        )
        steps["task_start_to_requested"].append(requested - ti_start)
        steps["requested_to_received"].append(received - requested)
        steps["received_to_started"].append(started - received)
    return overhead, latency, states, steps


def launch_and_latency(airflow: BenchAirflow, samples: int) -> dict[str, Any]:
    """`samples` runs of one airlaunch task (task_two, sleeping 3-4 s), one after another.

    launch overhead: TI start_date → the container's State.StartedAt.
    completion latency: status.json's ended_at → TI end_date (marked success by the trigger).
    The task sleeps 3 s so that it ends while the trigger watches it: a task that ends
    before the triggerer has picked its trigger up (1-2 s after the deferral) measures that
    pickup instead (`pickup_bound` below, a few 0 s tasks).
    """
    api, s3 = airflow.api(), s3_client()
    starts = DockerStarts()
    try:
        bare = bare_docker_run(samples, starts)
        via_lambda = lambda_launch(samples, starts)
        load_before = load()
        api.wait_for_dag("bench_single")
        api.unpause("bench_single")
        warm_up = api.trigger("bench_single", {})  # the first task after a start parses and connects: not counted
        api.wait_for_run("bench_single", warm_up, timeout=180)
        # 3-4 s, not exactly 3 s: Airflow's loops (scheduler, triggerer, trigger runner) all tick once a
        # second, so tasks of a fixed length can end at about the same point of the runner's loop every
        # time, and a run's p50 then depends on that phase (0.29 s in one run, 0.90 s in another);
        # spread over a second, the samples cover the whole loop.
        overhead, latency, states, steps = single_runs(api, s3, starts, samples, {"min_seconds": 3, "max_seconds": 4})
        _, pickup_bound, pickup_states, _ = single_runs(api, s3, starts, 5, {"min_seconds": 0, "max_seconds": 0})
        states += pickup_states
        inexact = sum(not s.exact for s in starts.started.values())
        lag = percentiles(starts.event_lag)["p50"]
    finally:
        starts.close()
    airlaunch = percentiles(overhead)
    return {
        "launch": {
            "airlaunch": {"seconds": overhead, **airlaunch},
            "bare_docker_run": bare,
            "lambda_launch": via_lambda,
            "steps": {name: percentiles(values) for name, values in steps.items()},
            "overhead_p50": airlaunch["p50"] - bare["p50"],
            "overhead_p95": airlaunch["p95"] - bare["p95"],
            "ratio_p50": airlaunch["p50"] / bare["p50"],
            "start_event_minus_startedat_p50": lag,
            "containers_without_startedat": inexact,
        },
        "latency": {"seconds": latency, **percentiles(latency), "pickup_bound": percentiles(pickup_bound)},
        "run_states": states,
        "load": [load_before, load()],
    }


# -- slot efficiency --------------------------------------------------------------------------


def warm_up(api: Any) -> None:
    """A small fan-out first: a triggerer's first triggers import and connect, which is not what we measure."""
    for dag_id in ("bench_fan_out", "bench_fan_out_triggerer"):
        run_dag(api, dag_id, {"count": 2, "max_seconds": 0}, timeout=300)


def mapped_span(tis: list[dict[str, Any]], task_id: str) -> float:
    mapped = [ti for ti in tis if ti["task_id"] == task_id]
    first = min(parse_time(ti["start_date"]) for ti in mapped)
    return max(parse_time(ti["end_date"]) for ti in mapped) - first


def phases(dag_id: str, run_id: str, tis: list[dict[str, Any]]) -> dict[str, float]:
    """Where an airlaunch fan-out's wall time goes: launching, the containers' runs, the end."""
    statuses = [t.status for t in store().run_tries(dag_id, run_id) if t.identity.task_id == "launch" and t.status]
    mapped = [ti for ti in tis if ti["task_id"] == "launch"]
    first_start = min(parse_time(ti["start_date"]) for ti in mapped)
    return {
        "first_ti_start_to_last_runtime_start": max(parse_time(s.started_at) for s in statuses) - first_start,
        "runtime_seconds_max": max(parse_time(s.ended_at) - parse_time(s.started_at) for s in statuses),
        "last_ended_at_to_last_ti_end": max(parse_time(ti["end_date"]) for ti in mapped)
        - max(parse_time(s.ended_at) for s in statuses),
    }


def bare_floor(count: int, threads: int = 4) -> float:
    """`count` ten-second containers started together straight from the docker SDK, no Airflow,
    no Lambda, no S3: each imports boto3 and makes a client (what the task runtime does first),
    then sleeps 10 s. On a small machine their start-up competes for CPU: this is the floor."""
    import concurrent.futures

    client = docker.from_env()
    code = "import boto3, time; boto3.client('s3', region_name='us-east-1'); time.sleep(10)"

    def start(_: int) -> Any:
        return client.containers.run(IMAGE, entrypoint=["python", "-c", code], network_mode="host", detach=True)

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        containers = list(pool.map(start, range(count)))
    for container in containers:
        container.wait()
    took = time.monotonic() - started
    for container in containers:
        container.remove()
    return took


def slots(airflow: BenchAirflow, count: int, blocking_count: int) -> dict[str, Any]:
    """`count` ten-second container tasks at parallelism 2 through airlaunch (launched from the triggerer,
    then from workers), then the blocking ways."""
    api = airflow.api()
    parallelism = airflow.cfg.airflow_parallelism
    ten_seconds = {"count": count, "min_seconds": 10, "max_seconds": 10}
    ways = {
        "airlaunch": ("bench_fan_out_triggerer", "launch", ten_seconds, count),
        "airlaunch_from_workers": ("bench_fan_out", "launch", ten_seconds, count),
        "python_docker_sdk": ("bench_python", "run", {"count": blocking_count}, blocking_count),
        "docker_operator": ("bench_docker", "run", {"count": blocking_count}, blocking_count),
    }
    results: dict[str, Any] = {"parallelism": parallelism, "count": count, "ideal_seconds": 10.0}
    results["bare_floor_seconds"] = bare_floor(count)
    warm_up(api)
    for way, (dag_id, task_id, conf, n) in ways.items():
        load_before = load()
        run_id, run = run_dag(api, dag_id, conf, timeout=300 + 15 * n)
        tis = api.task_instances(dag_id, run_id)
        wall = mapped_span(tis, task_id)
        results[way] = {
            **(phases(dag_id, run_id, tis) if way.startswith("airlaunch") else {}),
            "count": n,
            "state": run["state"],
            "wall_seconds": wall,
            "run_seconds": parse_time(run["end_date"]) - parse_time(run["start_date"]),
            # what the wall time would be for `count` tasks: the blocking ways scale linearly in n/parallelism
            "wall_seconds_for_count": wall * count / n,
            "extrapolated": n != count,
            "load": [load_before, load()],
        }
    return results


# -- footprint --------------------------------------------------------------------------------


def cold_start(parallelism: int) -> tuple[BenchAirflow, dict[str, Any]]:
    """Airflow from stopped to healthy (as `make demo` does after LocalStack and the Lambda), and a
    LocalStack of our own from cold on another port (the shared one stays up)."""
    airflow = BenchAirflow(parallelism)
    airflow.down()
    load_before = load()
    start = time.monotonic()
    airflow.up()
    (STATE_DIR / "bench-parallelism").write_text(airflow.marker())
    airflow_seconds = time.monotonic() - start
    own = LocalStack(
        StackConfig(state_dir=STATE_DIR, localstack_port=int(os.environ.get("BENCH_LOCALSTACK_PORT", "4599")))
    )
    start = time.monotonic()
    own.up()
    localstack_seconds = time.monotonic() - start
    own.stop()
    return airflow, {
        "airflow_cold_start_seconds": airflow_seconds,
        "localstack_cold_start_seconds": localstack_seconds,
        "load": [load_before, load()],
    }


def idle_memory(airflow: BenchAirflow, settle_seconds: float = 20) -> dict[str, Any]:
    time.sleep(settle_seconds)
    return {"memory_mib": stack_memory(airflow, docker.from_env()), "load": load()}
