"""What the measurements stand on: the benchmark's own Airflow, Docker start times, process
CPU and memory, LocalStack's request count, and the machine's load."""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import psutil

from airlaunch.airflow_rest import TASK_ENDED_STATES, AirflowApiError, AirflowRest
from airlaunch.stack import AirflowServers, StackConfig

REPO = Path(__file__).resolve().parent.parent
BENCH_DAGS = REPO / "bench" / "dags"
STATE_DIR = REPO / ".stack-bench"
SHARED_STATE_DIR = REPO / ".stack"
AIRFLOW_PORT = int(os.environ.get("BENCH_AIRFLOW_PORT", "8180"))


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def percentiles(values: Iterable[float]) -> dict[str, float]:
    data = sorted(values)
    if not data:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "max": float("nan")}
    p95 = data[min(len(data) - 1, round(0.95 * (len(data) - 1)))]
    return {"n": len(data), "p50": statistics.median(data), "p95": p95, "max": data[-1]}


def parse_time(text: str) -> float:
    """An ISO timestamp (Airflow's, the runtime's, or Docker's with nanoseconds) as epoch seconds."""
    text = text.replace("Z", "+00:00")
    if "." in text:  # Python's fromisoformat takes at most 6 fractional digits
        head, rest = text.split(".", 1)
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    return datetime.fromisoformat(text).timestamp()


# -- the benchmark's Airflow --------------------------------------------------------------------


class BenchAirflow(AirflowServers):
    """Airflow's four processes in .stack-bench/, on port 8180, loading only bench/dags (with ``triggerers``
    triggerers: more than one is Airflow's HA mode). The repository is on its PYTHONPATH, so its processes
    import ``bench.floor_operator`` (the floor DAGs' operator and the trigger the triggerer runs)."""

    def __init__(self, parallelism: int, triggerers: int = 1) -> None:
        cfg = StackConfig(repo=REPO, state_dir=STATE_DIR, airflow_port=AIRFLOW_PORT, airflow_parallelism=parallelism)
        super().__init__(cfg, triggerers)
        self.triggerers = triggerers

    def env(self) -> dict[str, str]:
        env = super().env()
        return {
            **env,
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
            "AIRFLOW__CORE__DAGS_FOLDER": str(BENCH_DAGS),
            "AIRFLOW__CORE__MAX_MAP_LENGTH": "2048",
            "AIRFLOW__API__MAXIMUM_PAGE_LIMIT": "1000",
        }

    def marker(self) -> str:
        return f"{self.cfg.airflow_parallelism} {self.triggerers}"

    def running_marker(self) -> str | None:
        """The parallelism and triggerers of the Airflow running now, if it is ours and up."""
        marker = STATE_DIR / "bench-parallelism"
        return marker.read_text().strip() if self.healthy() and marker.exists() else None

    def ensure(self) -> float:
        """Up with this parallelism and triggerers (restarting if it runs with others); seconds it took, 0 if
        already up."""
        if self.running_marker() == self.marker():
            return 0.0
        self.down()
        start = time.monotonic()
        self.up()
        if fail_leftover_runs(self.api(), BENCH_DAG_IDS, "benchmark"):
            self.down()  # a fresh triggerer: see fail_leftover_runs
            self.up()
        (STATE_DIR / "bench-parallelism").write_text(self.marker())
        return time.monotonic() - start

    def api(self) -> AirflowRest:
        return AirflowRest.for_home(self.cfg.airflow_url, self.cfg.airflow_home)

    def pid(self, component: str) -> int | None:
        pid_file = STATE_DIR / f"airflow-{component}.pid"
        return int(pid_file.read_text().split()[0]) if pid_file.exists() else None


BENCH_DAG_IDS = (
    "bench_single",
    "bench_single_triggerer",
    "bench_fan_out",
    "bench_fan_out_triggerer",
    "bench_python",
    "bench_docker",
    "bench_floor_triggerer",
    "bench_floor_workers",
    "bench_noop_python",
)


def fail_leftover_runs(api: AirflowRest, dag_ids: Iterable[str], who: str) -> bool:
    """Mark failed the runs an interrupted benchmark or suite left running (they would load the next one);
    True if there were any. Restart the triggerer after: with SQLite, the ids of their deleted triggers
    are given to the next new triggers, and a triggerer that saw the old ones re-creates the new ones
    every two seconds without running them."""
    failed = False
    for dag_id in dag_ids:
        try:
            run_ids = api.unfinished_runs(dag_id)
        except AirflowApiError:  # not parsed yet, or not in this Airflow
            continue
        for run_id in run_ids:
            print(f"==> {dag_id} {run_id}: left running by an earlier {who}; marking it failed", flush=True)
            api.set_run_state(dag_id, run_id, "failed")
            failed = True
    return failed


def run_dag(api: AirflowRest, dag_id: str, conf: dict[str, Any], timeout: float) -> tuple[str, dict[str, Any]]:
    api.wait_for_dag(dag_id)
    api.unpause(dag_id)
    run_id = api.trigger(dag_id, conf)
    return run_id, watch_run(api, dag_id, run_id, timeout)


def last_task(api: AirflowRest, dag_id: str) -> str | None:
    """The DAG's one task with nothing downstream, if it has exactly one and it is not mapped."""
    leaves = [task for task in api.tasks(dag_id) if not task["downstream_task_ids"]]
    return leaves[0]["task_id"] if len(leaves) == 1 and not leaves[0].get("is_mapped") else None


def watch_run(api: AirflowRest, dag_id: str, run_id: str, timeout: float) -> dict[str, Any]:
    """The run once it ended, watched once a second through its last task instance, then its own state.

    The watch runs through every measured run and its cost is the API server's: a GET of a run costs it
    0.07 CPU-s here once its database holds a few thousand task instances (0.01 when it is new), a GET of
    one task instance 0.007, whatever the run's size; so runs are watched by their last task, and the
    run's own record is read only once that ended (``wait_for_run``, a scheduler loop later)."""
    deadline = time.monotonic() + timeout
    task_id = last_task(api, dag_id)
    while task_id is not None and time.monotonic() < deadline:
        if api.task_instance(dag_id, run_id, task_id)["state"] in TASK_ENDED_STATES:
            break
        time.sleep(1)
    return api.wait_for_run(dag_id, run_id, timeout=max(1.0, deadline - time.monotonic()))


# -- processes: CPU and memory ------------------------------------------------------------------


def tree(pid: int | None) -> list[psutil.Process]:
    if pid is None:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pid: int | None, with_children: bool = True) -> float:
    """CPU time of a process (and its descendants, live and reaped)."""
    total = 0.0
    for proc in tree(pid) if with_children else tree(pid)[:1]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system + (t.children_user + t.children_system if with_children else 0)
        except psutil.NoSuchProcess:
            pass
    return total


def pss_mib(pid: int | None) -> float:
    """Proportional set size of a process tree (shared pages split fairly), MiB."""
    total = 0
    for proc in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_full_info().pss
    return total / 2**20


def listening_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:port (the shared LocalStack; its pid file may be gone)."""
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return conn.pid
    return None


def container_mib(client: docker.DockerClient, name: str) -> float:
    """Memory of a container as `docker stats` shows it (usage minus page cache), MiB."""
    stats = client.containers.get(name).stats(stream=False)["memory_stats"]
    cache = stats.get("stats", {}).get("total_inactive_file", stats.get("stats", {}).get("cache", 0))
    return (stats.get("usage", 0) - cache) / 2**20


def stack_memory(airflow: BenchAirflow, client: docker.DockerClient) -> dict[str, float]:
    """PSS of LocalStack, of the ECS mode's emulator (when it runs) and of each Airflow process tree, the Lambda
    container's memory (MiB)."""
    cfg = StackConfig()
    memory = {
        "localstack": pss_mib(listening_pid(cfg.localstack_port)),
        "lambda": container_mib(client, cfg.launcher_container),
    }
    emulator = listening_pid(cfg.ecs_port)  # the ECS mode's emulated account
    if emulator is not None:
        memory["ecs emulator"] = pss_mib(emulator)
    for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
        memory[f"airflow {component}"] = pss_mib(airflow.pid(component))
    memory["total"] = sum(memory.values())
    return {k: round(v, 1) for k, v in memory.items()}


class MemorySampler:
    """Samples stack_memory every few seconds in a thread; keeps the peak of each part."""

    def __init__(self, airflow: BenchAirflow, interval: float = 5.0) -> None:
        self.airflow, self.interval = airflow, interval
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = docker.from_env()
        while not self._stop.is_set():
            for key, value in stack_memory(self.airflow, client).items():
                self.peak[key] = max(self.peak.get(key, 0.0), value)
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- Docker: when each container started ------------------------------------------------------


@dataclass
class Started:
    at: float  # epoch seconds: State.StartedAt, or the start event's time if the container was gone
    exact: bool  # True when State.StartedAt was read


class DockerStarts:
    """Subscribes to Docker's container start and die events; records each container's State.StartedAt,
    and when it died (the die event's time).

    Task containers remove themselves when they exit, so their StartedAt is read by inspecting
    them as soon as the start event arrives (they live at least a second); if one is already
    gone, the event's own timestamp (taken by dockerd right after it sets StartedAt) stands in.
    """

    def __init__(self) -> None:
        self.client = docker.from_env()
        self.started: dict[str, Started] = {}
        self.died: dict[str, float] = {}  # epoch seconds of each container's die event
        self.event_lag: list[float] = []  # event time minus StartedAt, to show they agree
        self._events = self.client.events(decode=True, filters={"type": "container", "event": ["start", "die"]})
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def lifetimes(self, container_ids: Iterable[str]) -> list[float]:
        """StartedAt to the die event, seconds, of each of these containers that has died."""
        return [self.died[c] - self.started[c].at for c in container_ids if c in self.died and c in self.started]

    def _run(self) -> None:
        for event in self._events:
            container_id, event_at = event["id"], event["timeNano"] / 1e9
            if event.get("status", event.get("Action")) == "die":
                self.died[container_id] = event_at
                continue
            try:
                at = parse_time(self.client.api.inspect_container(container_id)["State"]["StartedAt"])
                self.started[container_id] = Started(at, True)
                self.event_lag.append(event_at - at)
            except docker.errors.NotFound:
                self.started[container_id] = Started(event_at, False)

    def wait_for(self, container_id: str, timeout: float = 10) -> Started:
        deadline = time.monotonic() + timeout
        while container_id not in self.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no start event for container {container_id[:12]}")
            time.sleep(0.05)
        return self.started[container_id]

    def close(self) -> None:
        self._events.close()


# -- LocalStack: requests ----------------------------------------------------------------------


def localstack_log() -> Path:
    """The log of the LocalStack the benchmark measures: the shared one's, or the one BENCH_LOCALSTACK_LOG names
    (the ECS part's own stack)."""
    return Path(os.environ.get("BENCH_LOCALSTACK_LOG") or SHARED_STATE_DIR / "localstack.log")


REQUEST_MARK = "localstack.request.aws"


class RequestCounter:
    """Counts the requests LocalStack logs (one `localstack.request.aws` line each) from now on."""

    def __init__(self) -> None:
        self.log = localstack_log()
        self.offset = self.log.stat().st_size

    def count(self) -> Counter[str]:
        with self.log.open("rb") as log:
            log.seek(self.offset)
            lines = log.read().decode(errors="replace").splitlines()
        # e.g. "... localstack.request.aws     : AWS s3.GetObject => 200"
        return Counter(line.split(": AWS ", 1)[1].split(" =>")[0] for line in lines if REQUEST_MARK in line)


def background_rates(seconds: float = 10) -> dict[str, float]:
    """Requests per second of each operation LocalStack serves while the benchmark runs nothing (others on the
    shared stack, the triggerers' idle long polls)."""
    counter = RequestCounter()
    time.sleep(seconds)
    return {operation: n / seconds for operation, n in counter.count().items()}


def background_request_rate(seconds: float = 10) -> float:
    """Requests per second LocalStack serves for others (the shared stack) while we do nothing."""
    return sum(background_rates(seconds).values())
