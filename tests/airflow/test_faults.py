"""The fast faults of `make faults` (bench/faults, docs/faults.md) as tests: real Airflow processes under the
stack's supervisor, real containers, the faults injected from the outside (docker kill, SIGKILL, REST calls).

Each test asserts the goals of the fault suite that can fail for it: the task ends as it should with the
cause in words, nothing is left running, no result is lost or taken from another run, and nothing starts
twice. The launcher's part of these (its status.json for a killed or OOM-killed container, a stop before the
launch, a re-created run's own prefix) is proven without Docker in tests/unit/test_launcher_logic.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from datetime import datetime
from typing import Any

import pytest

from airlaunch.airflow_rest import AirflowRest
from airlaunch.protocol import Handle
from airlaunch.providers.airflow.settings import AirflowSettings
from airlaunch.providers.airflow.triggers import log_follower
from airlaunch.providers.airflow.triggers.launched_task import LaunchedTaskTrigger
from airlaunch.stack import Stack, StackConfig
from airlaunch.stack.supervisor import pid_of
from tests.conftest import LauncherClient

pytestmark = [pytest.mark.stack, pytest.mark.airflow]

DAG = "airlaunch_diagnostic"
TASK = "diagnostic"


# -- helpers -------------------------------------------------------------------------------------------


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _wait_for(condition: Any, what: str, timeout: float = 120, pause: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(pause)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _containers(run_id: str, running_only: bool = True) -> list[str]:
    command = ["docker", "ps", "-q", "--no-trunc", "--filter", f"label=airlaunch.run_id={run_id}"]
    command += ["--filter", f"label=airlaunch.scope={StackConfig().docker_scope}"]
    out = subprocess.run(command + ([] if running_only else ["-a"]), capture_output=True, text=True, check=True)
    return out.stdout.split()


def _started(run_id: str, since: float) -> list[str]:
    """Every container Docker started for the run since ``since`` (also those already removed)."""
    command = ["docker", "events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}", "--format"]
    command += ["{{.ID}}", "--filter", "type=container", "--filter", "event=start"]
    command += ["--filter", f"label=airlaunch.run_id={run_id}"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()


def _ti(api: AirflowRest, dag_id: str, run_id: str, task_id: str = TASK, map_index: int = -1) -> dict[str, Any]:
    return api.task_instance(dag_id, run_id, task_id, map_index)


def _ended(api: AirflowRest, dag_id: str, run_id: str, task_id: str = TASK, timeout: float = 180) -> dict[str, Any]:
    ended: dict[str, Any] = _wait_for(
        lambda: (ti := _ti(api, dag_id, run_id, task_id))["state"] in ("success", "failed") and ti,
        f"{dag_id}/{run_id} to end",
        timeout,
    )
    return ended


def _statuses(s3: Any, dag_id: str, run_id: str, task_id: str = TASK) -> dict[str, dict[str, Any] | None]:
    """Every try of the task the run left in S3 (prefix -> its status.json, None if it has none)."""
    bucket, root = StackConfig().bucket, f"runs/{dag_id}/{run_id}/{task_id}/"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=root).get("Contents", [])]
    tries = {key[: key.index("/", len(root) + 3) + 1] for key in keys}
    statuses: dict[str, dict[str, Any] | None] = {}
    for prefix in tries:
        key = prefix + "status.json"
        statuses[prefix] = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()) if key in keys else None
    return statuses


def _watched_sleeper(api: AirflowRest, seconds: int) -> tuple[str, str]:
    """A sleeping diagnostic container whose trigger shows its output; (run id, container id)."""
    api.wait_for_dag(DAG)
    api.unpause(DAG)
    run_id = api.trigger(DAG, {"action": "sleep", "seconds": seconds})
    container = _wait_for(lambda: _containers(run_id), "the container to start")[0]
    _wait_for(lambda: "[container] sleeping" in api.log(DAG, run_id, TASK), "the trigger to show its output")
    return run_id, container


def _log(api: AirflowRest, dag_id: str, run_id: str, task_id: str = TASK, map_index: int = -1) -> str:
    return api.log(dag_id, run_id, task_id, 1, map_index)


# -- the container's faults -----------------------------------------------------------------------------


def test_a_killed_container_fails_its_task_within_seconds_saying_so(airflow_api: AirflowRest, s3: Any) -> None:
    run_id, container = _watched_sleeper(airflow_api, 300)

    killed = time.time()
    subprocess.run(["docker", "kill", container], check=True, capture_output=True)

    ti = _ended(airflow_api, DAG, run_id)
    (status,) = _statuses(s3, DAG, run_id).values()
    assert ti["state"] == "failed" and status is not None
    assert (status["reason"], status["exit_code"], status["written_by"]) == ("killed", 137, "launcher")
    assert _epoch(status["ended_at"]) - killed < 2.0  # the launcher's event watcher recorded it at once
    # ended in the triggerer, not by a worker resumed to raise (that took 3-9 s on 2 cores)
    assert _epoch(ti["end_date"]) - killed < 5.0, ti["end_date"]
    assert "killed by signal 9 (SIGKILL) (exit code 137)" in _log(airflow_api, DAG, run_id)
    _wait_for(lambda: not _containers(run_id, running_only=False), "the container to be removed", 10)


def test_an_oom_killed_task_says_out_of_memory_at_its_limit(airflow_api: AirflowRest, s3: Any) -> None:
    airflow_api.wait_for_dag(DAG)
    airflow_api.unpause(DAG)
    run_id = airflow_api.trigger(DAG, {"action": "allocate", "mib": 1024})  # the catalog gives it 256 MiB

    ti = _ended(airflow_api, DAG, run_id)
    (status,) = _statuses(s3, DAG, run_id).values()
    assert ti["state"] == "failed" and status is not None
    assert (status["reason"], status["exit_code"]) == ("oom", 137)
    assert "out of memory: the kernel killed the task at its 256 MiB memory limit" in _log(airflow_api, DAG, run_id)


# -- cancellation -----------------------------------------------------------------------------------------


def test_a_task_marked_failed_as_it_starts_leaves_no_container_running(airflow_api: AirflowRest, s3: Any) -> None:
    """Marked failed before its launch was answered: the worker learns of it only at its next heartbeat,
    after the launch, and no trigger ever watches the container; it must be stopped all the same."""
    airflow_api.wait_for_dag(DAG)
    airflow_api.unpause(DAG)
    since = time.time()
    run_id = airflow_api.trigger(DAG, {"action": "sleep", "seconds": 300})
    _wait_for(lambda: _ti(airflow_api, DAG, run_id)["state"] == "running", "the task to run", pause=0.05)

    airflow_api.set_task_state(DAG, run_id, TASK, "failed")
    marked = time.monotonic()

    time.sleep(8)  # long enough for the worker to have launched, if it launches at all
    _wait_for(lambda: not _containers(run_id), "no container of the run running", timeout=12)
    print(f"\nnothing of the run runs {time.monotonic() - marked:.1f} s after the mark")
    for prefix, status in _statuses(s3, DAG, run_id).items():
        assert status is not None, f"{prefix} has no status.json"
        assert status["reason"] == "stopped" and "stopped by airlaunch" in status["error"], status
    assert len(_started(run_id, since)) <= 1
    assert _ti(airflow_api, DAG, run_id)["state"] == "failed"


# -- the stack's faults -------------------------------------------------------------------------------------


def test_localstack_down_10_s_during_a_run_is_ridden_out(airflow_api: AirflowRest, stack: Stack) -> None:
    since = time.time()
    run_id, container = _watched_sleeper(airflow_api, 20)

    supervisor = pid_of(stack.cfg)
    assert supervisor is not None and stack.localstack.process.pid is not None
    os.kill(supervisor, signal.SIGSTOP)  # nothing restarts LocalStack meanwhile
    try:
        os.killpg(stack.localstack.process.pid, signal.SIGKILL)
        time.sleep(10)
    finally:
        os.kill(supervisor, signal.SIGCONT)
    _wait_for(lambda: stack.localstack.alive() and stack.localstack.healthy(), "LocalStack to be back", 120)

    run = airflow_api.wait_for_run(DAG, run_id, timeout=180)
    assert run["state"] == "success"
    assert airflow_api.xcom(DAG, run_id, TASK) == {"slept": 20.0}
    assert airflow_api.xcom(DAG, run_id, TASK, "airlaunch")["task_ref"] == container
    assert _started(run_id, since) == [container]
    assert "S3 or the launcher is unreachable" in _log(airflow_api, DAG, run_id)  # the trigger said so


def test_a_launch_while_the_launcher_is_down_is_retried_until_it_is_back(
    airflow_api: AirflowRest, stack: Stack
) -> None:
    airflow_api.wait_for_dag(DAG)
    airflow_api.unpause(DAG)
    since = time.time()
    supervisor = pid_of(stack.cfg)
    assert supervisor is not None
    os.kill(supervisor, signal.SIGSTOP)  # nothing restarts the launcher meanwhile
    try:
        subprocess.run(["docker", "kill", stack.cfg.launcher_container], check=True, capture_output=True)
        run_id = airflow_api.trigger(DAG, {"action": "echo", "message": "launched late"})
        _wait_for(lambda: _ti(airflow_api, DAG, run_id)["state"] == "running", "the task to run")
        time.sleep(10)
    finally:
        os.kill(supervisor, signal.SIGCONT)

    run = airflow_api.wait_for_run(DAG, run_id, timeout=180)
    assert run["state"] == "success"
    assert airflow_api.xcom(DAG, run_id, TASK)["echo"] == "launched late"
    assert len(_started(run_id, since)) == 1
    assert "launcher launch failed" in _log(airflow_api, DAG, run_id)  # the retries are in the task log


def test_a_triggerer_killed_right_after_it_launched_a_task_resumes_it_without_a_second_container(
    airflow_api: AirflowRest, stack: Stack
) -> None:
    dag_id = "airlaunch_fan_out"  # start_from_trigger: the triggerer launches, and relaunches after a restart
    airflow_api.wait_for_dag(dag_id)
    airflow_api.unpause(dag_id)
    since = time.time()
    run_id = airflow_api.trigger(dag_id, {"count": 1, "min_seconds": 12, "max_seconds": 12})
    _wait_for(lambda: _started(run_id, since), "the container to start")
    triggerer = stack.components["airflow-triggerer"]
    pid = triggerer.process.pid  # type: ignore[attr-defined]
    assert pid is not None

    os.killpg(pid, signal.SIGKILL)  # as a crash: no clean shutdown, no trigger cleanup

    run = airflow_api.wait_for_run(dag_id, run_id, timeout=240)
    assert run["state"] == "success"
    sleeper = _ti(airflow_api, dag_id, run_id, "sleep", 0)
    assert sleeper["state"] == "success" and sleeper["try_number"] == 1
    assert airflow_api.xcom(dag_id, run_id, "total") == pytest.approx(12.0)
    assert len(_started(run_id, since)) == 1  # the relaunch found the running container


# -- re-runs --------------------------------------------------------------------------------------------------


def test_a_recreated_dag_run_gets_fresh_results_not_the_old_runs(airflow_api: AirflowRest, stack: Stack) -> None:
    airflow_api.wait_for_dag(DAG)
    airflow_api.unpause(DAG)
    run_id = f"recreated__{time.time_ns()}"
    airflow_api.trigger(DAG, {"action": "echo", "message": "first"}, run_id)
    assert airflow_api.wait_for_run(DAG, run_id, timeout=180)["state"] == "success"
    first = airflow_api.xcom(DAG, run_id, TASK, "airlaunch")
    stack.wait_executor_done(DAG, run_id)  # else Airflow's scheduler may fail the new run (see its docstring)

    airflow_api.delete_run(DAG, run_id)
    airflow_api.trigger(DAG, {"action": "echo", "message": "second"}, run_id)

    assert airflow_api.wait_for_run(DAG, run_id, timeout=180)["state"] == "success"
    assert airflow_api.xcom(DAG, run_id, TASK)["echo"] == "second"
    second = airflow_api.xcom(DAG, run_id, TASK, "airlaunch")
    assert second["prefix"] != first["prefix"] and second["task_ref"] != first["task_ref"]


# -- bounded work ------------------------------------------------------------------------------------------


def test_a_100_mb_log_burst_costs_its_trigger_bounded_reads_beside_a_short_task(
    launcher: LauncherClient,
    identity: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Two triggers on one event loop, as in a triggerer: a task printing 100 MB and a 2 s task. Every log
    read is at most AIRLAUNCH_LOG_READ_BYTES and shows a bounded number of lines, whatever the log's size."""
    read_bytes = AirflowSettings().log_read_bytes
    reads: list[tuple[str, int]] = []
    real = log_follower.read_range

    async def counting(client: Any, bucket: str, key: str, first: int, last: int | None) -> Any:
        found = await real(client, bucket, key, first, last)
        reads.append((key, len(found[0]) if found else 0))
        return found

    monkeypatch.setattr(log_follower, "read_range", counting)
    burst = launcher.launch("diagnostic", {**identity, "task_id": "burst"}, {"action": "log", "log_mib": 100})
    _wait_for(lambda: _has(launcher, burst, "log/000002"), "the burst's third log part", 120)
    short = launcher.launch("diagnostic", {**identity, "task_id": "short"}, {"action": "sleep", "seconds": 2})

    async def watch(handle: Handle) -> Any:
        trigger = LaunchedTaskTrigger(
            handle=handle.to_dict(), function_name="function", aws_conn_id="airlaunch_aws", poll_interval=0.25
        )
        async for event in trigger.run():
            return event

    async def both() -> list[Any]:
        return list(await asyncio.gather(watch(burst), watch(short)))

    burst_event, short_event = asyncio.run(asyncio.wait_for(both(), 300))

    assert short_event.payload["state"] == "succeeded" and short_event.payload["result"] == {"slept": 2.0}
    assert burst_event.payload["state"] == "succeeded"
    assert burst_event.payload["result"] == {"log_lines": 100 * 2**20 // 100}
    burst_reads = [size for key, size in reads if key.startswith(burst.prefix)]
    assert burst_reads and max(burst_reads) <= read_bytes, max(burst_reads)
    assert sum(burst_reads) < 10 * 2**20  # of 100 MB, a bounded part is read
    shown = capfd.readouterr().out.count("[container] burst line")  # Airflow's structlog writes to stdout
    assert 0 < shown <= 200 * len(burst_reads)  # at most 200 lines per read, the rest is a marker
    print(f"\nburst: {len(burst_reads)} log reads, {sum(burst_reads) / 2**20:.1f} MiB read, {shown} lines shown")


def _has(launcher: LauncherClient, handle: Handle, name: str) -> bool:
    try:
        launcher.read(handle.layout, name)
    except launcher.s3.exceptions.NoSuchKey:
        return False
    return True
