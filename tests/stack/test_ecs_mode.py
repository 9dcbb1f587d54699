"""The ECS mode of the stack: the launcher's ECS backend against the emulated account, tasks run for real.

The stack switches to the ECS mode for this module (the template deployed into the emulated account by the
deploy code, the launcher with the function's environment) and back to Docker after it. Each fault row of
the container platform is made from the outside (docker kill, the emulator's control API, a task definition
revision whose image cannot be pulled), and each test asserts the goals of the fault suite: one task per try,
a status.json that says how the try ended in words, nothing left running.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest

from airlaunch.catalog import Catalog
from airlaunch.protocol import Handle
from airlaunch.stack import Stack
from airlaunch.stack.ecs_account import STACK_NAME
from tests.conftest import LauncherClient

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def ecs(ecs_mode: Stack) -> Stack:
    return ecs_mode


@pytest.fixture(scope="module")
def ecs_api(ecs: Stack) -> Any:
    return boto3.client("ecs", endpoint_url=ecs.cfg.ecs_url, region_name=ecs.cfg.region)


def _control(stack: Stack, route: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{stack.cfg.ecs_url}/_airlaunch/ecs/{route}", data=data,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _tasks_of(ecs_api: Any, handle: Handle) -> list[dict[str, Any]]:
    """Every ECS task of the handle's try (started again ones too), as ECS describes them."""
    started_by = ecs_api.describe_tasks(cluster=STACK_NAME, tasks=[handle.task_ref])["tasks"][0]["startedBy"]
    arns = [
        arn
        for status in ("RUNNING", "STOPPED")
        for arn in ecs_api.list_tasks(cluster=STACK_NAME, startedBy=started_by, desiredStatus=status)["taskArns"]
    ]
    return ecs_api.describe_tasks(cluster=STACK_NAME, tasks=arns, include=["TAGS"])["tasks"] if arns else []


def _nothing_left(ecs_api: Any, handle: Handle, run_id: str) -> list[dict[str, Any]]:
    """Wait until every task of the try is STOPPED and no container of the run runs; the tasks."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tasks = _tasks_of(ecs_api, handle)
        running = subprocess.run(["docker", "ps", "-q", "--filter", f"label=airlaunch.run_id={run_id}"],
                                 capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
        if tasks and all(t["lastStatus"] == "STOPPED" for t in tasks) and not running:
            return tasks
        time.sleep(0.3)
    raise AssertionError(f"the try's tasks or containers still run: {[t['lastStatus'] for t in tasks]}, {running}")


def _launch(launcher: LauncherClient, identity: dict[str, Any], **params: Any) -> Handle:
    handle = launcher.launch("diagnostic", identity, params)
    assert handle.backend == "ecs" and handle.task_ref.startswith("arn:aws:ecs:"), handle
    return handle


def test_a_task_runs_on_the_emulated_fargate_and_the_report_shows_ecs_phases(
    ecs: Stack, ecs_api: Any, launcher: LauncherClient, identity: dict[str, Any], s3: Any
) -> None:
    handle = _launch(launcher, identity, action="echo", message="on ecs")
    status = launcher.wait_status(handle)
    assert status.state.value == "succeeded" and status.written_by == "runtime", status
    assert json.loads(launcher.read(handle.layout, "result.json"))["echo"] == "on ecs"
    [task] = _nothing_left(ecs_api, handle, identity["run_id"])
    assert task["stopCode"] == "EssentialContainerExited" and task["containers"][0]["exitCode"] == 0
    # The STOPPED event reached the launcher (EventBridge's rule and target, as deployed): ECS's own clock.
    deadline = time.monotonic() + 30
    while (times := _ecs_times(launcher, handle)) is None and time.monotonic() < deadline:
        time.sleep(0.3)
    assert times is not None and times["pull_started_at"] and times["stopped_at"], times
    report = subprocess.run([str(Path(sys.executable).with_name("airlaunch")), "--json", "--endpoint-url",
                             ecs.cfg.localstack_url, "report", identity["dag_id"], identity["run_id"]],
                            capture_output=True, text=True, check=True)  # fmt: skip
    [reported] = json.loads(report.stdout)["tries"]
    assert {"provision", "pull", "start"} <= {phase["phase"] for phase in reported["phases"]}, reported
    # The run session's environment file is gone once the task stopped (only its ARN was ever in ECS).
    overrides = task["overrides"]["containerOverrides"][0]
    assert not any(e["name"] == "AIRLAUNCH_RUN_CREDENTIALS" for e in overrides.get("environment", []))
    [env_file] = overrides["environmentFiles"]
    key = env_file["value"].split(":::", 1)[1].split("/", 1)[1]
    deadline = time.monotonic() + 30
    while key in _keys(s3, handle.bucket, key) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert key not in _keys(s3, handle.bucket, key)


def _ecs_times(launcher: LauncherClient, handle: Handle) -> dict[str, Any] | None:
    try:
        return dict(json.loads(launcher.read(handle.layout, "ecs.json")))
    except launcher.s3.exceptions.NoSuchKey:
        return None


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def test_a_non_zero_exit_fails_with_its_code(
    ecs: Stack, ecs_api: Any, launcher: LauncherClient, identity: dict[str, Any]
) -> None:
    handle = _launch(launcher, identity, action="exit", code=3)
    status = launcher.wait_status(handle)
    assert status.state.value == "failed" and status.exit_code == 3 and "exit code 3" in (status.error or "")
    assert len(_nothing_left(ecs_api, handle, identity["run_id"])) == 1


def test_a_killed_container_is_recorded_by_the_launcher_from_ecss_event(
    ecs: Stack, ecs_api: Any, launcher: LauncherClient, identity: dict[str, Any]
) -> None:
    handle = _launch(launcher, identity, action="sleep", seconds=120)
    containers = _wait_for_container(identity["run_id"])
    subprocess.run(["docker", "kill", *containers], check=True, capture_output=True)
    status = launcher.wait_status(handle, timeout=60)
    assert status.written_by == "launcher" and status.reason.value == "killed", status
    assert (status.error or "").startswith("killed by signal 9 (SIGKILL)"), status.error
    assert len(_nothing_left(ecs_api, handle, identity["run_id"])) == 1


def _wait_for_container(run_id: str) -> list[str]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=airlaunch.run_id={run_id}"],
                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
        if ids:
            time.sleep(1.5)  # the runtime is up and the task RUNNING
            return ids
        time.sleep(0.2)
    raise AssertionError(f"no container of {run_id} started")


def test_out_of_memory_says_so_at_its_limit(
    ecs: Stack, ecs_api: Any, launcher: LauncherClient, identity: dict[str, Any]
) -> None:
    handle = _launch(launcher, identity, action="allocate", mib=4000)
    status = launcher.wait_status(handle, timeout=90)
    assert status.reason.value == "oom" and "out of memory" in (status.error or ""), status
    assert "1024 MiB" in (status.error or "")  # 0.5 vCPU and 256 MiB run as Fargate's 512 units and 1 GiB
    assert len(_nothing_left(ecs_api, handle, identity["run_id"])) == 1


def test_a_spot_interruption_ends_the_try_saying_the_platform_stopped_it(
    ecs: Stack, ecs_api: Any, launcher: LauncherClient, identity: dict[str, Any]
) -> None:
    handle = _launch(launcher, identity, action="sleep", seconds=120)
    _wait_for_container(identity["run_id"])
    _control(ecs, "spot-interruption", {"task": handle.task_ref, "graceSeconds": 5})
    status = launcher.wait_status(handle, timeout=60)
    assert status.state.value == "failed" and status.reason.value == "platform", status
    assert "Spot interruption" in (status.error or "")
    [task] = _nothing_left(ecs_api, handle, identity["run_id"])
    assert task["stopCode"] == "SpotInterruption" and task["stoppedReason"] == "Your Spot Task was interrupted."


@pytest.mark.parametrize("reason", ["capacity", "vcpu-quota"])
def test_no_capacity_or_a_full_vcpu_quota_is_waited_out_with_one_task(
    ecs: Stack, ecs_api: Any, launcher: LauncherClient, identity: dict[str, Any], reason: str
) -> None:
    _control(ecs, "fail-run-task", {"count": 3, "reason": reason})
    handle = _launch(launcher, identity, action="echo")
    assert launcher.wait_status(handle).state.value == "succeeded"
    assert len(_nothing_left(ecs_api, handle, identity["run_id"])) == 1


def test_run_task_throttling_is_retried_with_one_task(
    ecs: Stack, ecs_api: Any, launcher: LauncherClient, identity: dict[str, Any]
) -> None:
    _control(ecs, "throttle", {"action": "RunTask", "count": 4})
    handle = _launch(launcher, identity, action="echo")
    assert launcher.wait_status(handle).state.value == "succeeded"
    assert len(_nothing_left(ecs_api, handle, identity["run_id"])) == 1


def test_a_launch_past_its_budget_fails_retryable_and_leaves_nothing(
    ecs: Stack, launcher: LauncherClient, identity: dict[str, Any]
) -> None:
    """No capacity for longer than the launch's budget: the launcher says so, retryable (Airflow's hook tries
    again later), and leaves no params.yaml that would read as a try still running."""
    _control(ecs, "fail-run-task", {"count": 1000, "reason": "capacity"})
    try:
        answer = launcher.invoke({"action": "launch", "request": {"task": "diagnostic", "identity": identity}})
    finally:
        _control(ecs, "fail-run-task", {"count": 0, "reason": "capacity"})
    assert not answer["ok"] and answer["error"]["retryable"], answer
    assert "Capacity is unavailable at this time" in answer["error"]["message"]
    prefix = f"runs/{identity['dag_id']}/{identity['run_id']}/"
    assert _keys(launcher.s3, ecs.cfg.bucket, prefix) == []


def test_an_image_that_cannot_be_pulled_is_started_three_times_then_fails_in_words(
    ecs: Stack, ecs_api: Any, launcher: LauncherClient, identity: dict[str, Any]
) -> None:
    """A deploy whose image tag is gone (a new task definition revision): ECS stops each start with
    TaskFailedToStart / CannotPullContainerError; the launcher starts the try again from its own params.yaml,
    three starts in all, then records the failure."""
    family = f"{STACK_NAME}-diagnostic"
    good = ecs_api.describe_task_definition(taskDefinition=family)["taskDefinition"]
    _register(ecs_api, good, image=good["containerDefinitions"][0]["image"].rsplit(":", 1)[0] + ":gone")
    try:
        handle = _launch(launcher, identity, action="echo")
        status = launcher.wait_status(handle, timeout=90)
    finally:
        _register(ecs_api, good, image=good["containerDefinitions"][0]["image"])
    assert status.written_by == "launcher" and status.reason.value == "platform", status
    assert "TaskFailedToStart" in (status.error or "") and "CannotPullContainerError" in (status.error or "")
    tasks = _nothing_left(ecs_api, handle, identity["run_id"])
    assert len(tasks) == 3 and all(t["stopCode"] == "TaskFailedToStart" for t in tasks)
    tags = [{tag["key"]: tag["value"] for tag in t.get("tags", [])} for t in tasks]
    assert all(tag.get("airlaunch.run_id") == identity["run_id"] for tag in tags)  # each start keeps its identity


def _register(ecs_api: Any, definition: dict[str, Any], image: str) -> None:
    """A new revision of the family like ``definition``, with another image."""
    keep = ("family", "taskRoleArn", "executionRoleArn", "networkMode", "containerDefinitions",
            "requiresCompatibilities", "cpu", "memory", "runtimePlatform")  # fmt: skip
    revision = {key: definition[key] for key in keep if definition.get(key)}
    revision["containerDefinitions"] = [{**revision["containerDefinitions"][0], "image": image}]
    ecs_api.register_task_definition(**revision)


def test_the_catalog_deployed_is_the_stacks(ecs: Stack, ecs_api: Any) -> None:
    """Every catalog task has its task definition family in the emulated account, as `make deploy` makes it."""
    families = set(ecs_api.list_task_definition_families(status="ACTIVE")["families"])
    assert {f"{STACK_NAME}-{name}" for name in Catalog.load(ecs.cfg.catalog).tasks} <= families
