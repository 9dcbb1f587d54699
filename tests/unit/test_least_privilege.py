"""Least privilege, tested: every AWS call the code makes is judged against the template's policies.

The rendered template is deployed into a moto server of our own; then, in this process and
against it, the Airflow hook, trigger and status listener (as the Airflow role), the launcher
service behind a local Lambda endpoint (as the launcher role), the task runtime (with the run
session the launcher minted, renewed once) and the results CLI (as the Airflow role) do what a
run does: launch, run, watch, stop, fail to launch, read back. Every call is recorded by botocore
event hooks with the key that signed it, mapped to what AWS authorizes (tests/iam/authorizations)
and judged by a policy evaluator (tests/iam/evaluator) against the template's own policies.
A call that would be denied fails the test; a permission no call uses is reported (and must be
one of the few used by AWS itself, listed below with why); a task's forged write into another
run's prefix is denied. moto does not enforce IAM, so the calls succeed here whatever the verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from airlaunch import cli
from airlaunch.catalog import Catalog
from airlaunch.config import LauncherSettings, RuntimeSettings
from airlaunch.deploy.template import body, render
from airlaunch.launcher import handler as launcher_handler
from airlaunch.launcher.backends.ecs import EcsBackend
from airlaunch.launcher.service import Launcher
from airlaunch.protocol import ENV_RUN_CREDENTIALS, LaunchRequest, RunIdentity
from airlaunch.providers.airflow.hooks.launcher import LauncherError, LauncherHook
from airlaunch.providers.airflow.triggers import status_notifications
from airlaunch.providers.airflow.triggers.launched_task import LaunchedTaskTrigger
from airlaunch.runtime.entrypoint import TaskRun, parse_args
from tests.aws_shapes import stopped_event
from tests.iam.authorizations import requests_of
from tests.iam.evaluator import Principal, Request, allowed
from tests.iam.recorder import Recorder, recording
from tests.iam.stack import Deployed
from tests.moto_server import end_task_as_fargate, free_port, moto_in_process

ROOT = Path(__file__).resolve().parents[2]
CATALOG = Catalog.load(ROOT / "tasks" / "catalog.yaml")
ACCOUNT, REGION, STACK = "123456789012", "us-east-1", "al-iam"
KEYS = {"AKIALAUNCHER0000": "LauncherRole", "AKIAAIRFLOW00000": "AirflowRole", "AKIACLI000000000": "AirflowRole"}
# Allowed by the template, used by AWS itself rather than by our code: (role, Sid, action) and why.
USED_BY_AWS = {
    ("LauncherRole", "Logs", "logs:CreateLogStream"): "the Lambda runtime writes the function's logs",
    ("LauncherRole", "Logs", "logs:PutLogEvents"): "the Lambda runtime writes the function's logs",
}


def _harness(url: str, service: str) -> Any:
    """A client of the test itself (made outside the recording, never judged)."""
    return boto3.client(service, endpoint_url=url, region_name=REGION, aws_access_key_id="harness",
                        aws_secret_access_key="harness")  # fmt: skip


def _set_task_transition(url: str, times: int) -> None:
    data = json.dumps({"model_name": "ecs::task", "transition": {"progression": "manual", "times": times}}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/state-manager/set-transition", data=data)).close()


@pytest.fixture(scope="module")
def deployed() -> Iterator[tuple[str, Deployed, dict[str, str]]]:
    """The rendered template in moto (in this process), with a VPC for Fargate; yields (url, Deployed, outputs)."""
    with moto_in_process() as url:
        _set_task_transition(url, 10**9)  # tasks stay RUNNING until stopped
        ec2 = _harness(url, "ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="tasks", Description="tasks", VpcId=vpc)["GroupId"]
        template = render(CATALOG)
        params = {"Subnets": subnet, "SecurityGroups": group,
                  "LauncherImageUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{STACK}/launcher:1"}  # fmt: skip
        cfn = _harness(url, "cloudformation")
        cfn.create_stack(StackName=STACK, TemplateBody=body(template), Capabilities=["CAPABILITY_NAMED_IAM"],
                         Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])  # fmt: skip
        cfn.get_waiter("stack_create_complete").wait(StackName=STACK, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        physical = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cfn.list_stack_resources(StackName=STACK)["StackResourceSummaries"]
        }
        outputs = {
            o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=STACK)["Stacks"][0]["Outputs"]
        }
        yield url, Deployed(template, STACK, ACCOUNT, REGION, physical, params), outputs


class _LambdaEndpoint(BaseHTTPRequestHandler):
    """The Lambda Invoke API in front of the launcher's handler, in this process."""

    def do_POST(self) -> None:
        event = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"null")
        payload = json.dumps(launcher_handler.handler(event)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def lambda_endpoint(launcher: Launcher, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(launcher_handler, "get_launcher", lambda: launcher)
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _LambdaEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()


def _launcher(url: str, outputs: dict[str, str], subnet: str, group: str) -> Launcher:
    """The launcher service as the Lambda builds it, with the launcher role's (test) key."""
    creds = {"endpoint_url": url, "region_name": REGION, "aws_access_key_id": "AKIALAUNCHER0000",
             "aws_secret_access_key": "launcher"}  # fmt: skip
    settings = LauncherSettings(
        bucket=outputs["BucketName"], key_prefix="runs", backend="ecs", ecs_cluster=STACK,
        ecs_family_prefix=STACK, ecs_subnets=(subnet,), ecs_security_groups=(group,),
        run_role_arn=outputs["RunFilesRoleArn"],
    )  # fmt: skip
    backend = EcsBackend(settings, boto3.client("ecs", **creds), boto3.client("sts", **creds))
    return Launcher(settings, CATALOG, backend, boto3.client("s3", **creds), {"AWS_REGION": REGION})


def _task_environment(url: str, task_arn: str) -> dict[str, str]:
    """What ECS would put in the task container's environment: the launcher's overrides."""
    task = _harness(url, "ecs").describe_tasks(cluster=STACK, tasks=[task_arn])["tasks"][0]
    [override] = task["overrides"]["containerOverrides"]
    return {e["name"]: e["value"] for e in override["environment"]}


def _run_task(url: str, environment: dict[str, str], work: Path, expire_soon: bool) -> int:
    """The task runtime, in this process, with the run session the launcher minted (renewed when expire_soon)."""
    if expire_soon:  # inside botocore's mandatory refresh window: the first request renews the session
        run = json.loads(environment[ENV_RUN_CREDENTIALS])
        run["Expiration"] = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).isoformat()
        environment = {**environment, ENV_RUN_CREDENTIALS: json.dumps(run)}
    args = parse_args(["--", sys.executable, str(ROOT / "tasks" / "reference" / "diagnostic.py")])
    return TaskRun(args, RuntimeSettings(work_dir=str(work)), {**environment, "AWS_REGION": REGION}).run()


@pytest.fixture(scope="module")
def recorded(
    deployed: tuple[str, Deployed, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Everything a run does, recorded: launch, task, renewal, watch, notifications, stop, failed launch, CLI."""
    url, stack, outputs = deployed
    monkeypatch = pytest.MonkeyPatch()
    work = tmp_path_factory.mktemp("task")
    ec2 = _harness(url, "ec2")
    subnet = ec2.describe_subnets()["Subnets"][-1]["SubnetId"]
    group = next(g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"] == "tasks")
    bucket, function = outputs["BucketName"], f"{STACK}-launcher"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    forged: dict[str, Any] = {}
    started = time.monotonic()
    with recording() as recorder:
        launcher = _launcher(url, outputs, subnet, group)
        with lambda_endpoint(launcher, monkeypatch) as lambda_url:
            connection = {
                "conn_type": "aws",
                "login": "AKIAAIRFLOW00000",
                "password": "airflow",
                "extra": {
                    "region_name": REGION,
                    "endpoint_url": url,
                    "service_config": {"lambda": {"endpoint_url": lambda_url}},
                },
            }
            monkeypatch.setenv("AIRFLOW_CONN_AIRLAUNCH_IAM", json.dumps(connection))
            hook = LauncherHook(function_name=function, aws_conn_id="airlaunch_iam")
            identity = RunIdentity(dag_id="iam_dag", run_id="manual__2026-01-01T00:00:00+00:00", task_id="echo",
                                   ti_id="01a2330d-6f01-731e-b9b6-0f5b7b1e8ef4")  # fmt: skip
            request = LaunchRequest(task="diagnostic", identity=identity, params={"action": "echo", "message": "iam"})
            handle = hook.launch(request)
            environment = _task_environment(url, handle.task_ref)
            exit_code = _run_task(url, environment, work, expire_soon=True)
            # A task's code forging another run's status.json with the credentials it was given.
            from airlaunch.runtime.credentials import run_session

            other = RunIdentity(dag_id="iam_dag", run_id="other_run", task_id="echo")
            forged_key = f"runs/{other.execution_id}/status.json"
            run_session(environment).client("s3").put_object(Bucket=bucket, Key=forged_key, Body=b"{}")
            forged["key"] = forged_key
            # The trigger polls S3 (aiobotocore) and ends the task; the status listener hears the queue.
            trigger = LaunchedTaskTrigger(handle=handle.to_dict(), identity=identity.to_dict(), function_name=function,
                                          aws_conn_id="airlaunch_iam", poll_interval=0.1, end_from_trigger=False,
                                          status_queue="")  # fmt: skip
            event = asyncio.run(_first_event(trigger))
            _announce(url, f"{STACK}-status", bucket, "runs/another/triggerers/status.json")  # handed back
            _announce(url, f"{STACK}-status", bucket, handle.layout.status_key)
            heard = asyncio.run(_listen(f"{STACK}-status", handle.layout.status_key))
            # Stop a running task, describe it; a launch that fails after params.yaml is written.
            sleeper = RunIdentity(dag_id="iam_dag", run_id="manual__2026-01-01T00:00:00+00:00", task_id="sleep")
            second = hook.launch(LaunchRequest(task="diagnostic", identity=sleeper, params={"action": "sleep"}))
            stopped = hook.stop(second, "stopped by the IAM test")
            described = hook.describe(second)
            # A newer try supersedes an older one; a stop by identity; the orphan sweep's list; the reaper.
            older = RunIdentity("iam_dag", sleeper.run_id, "retried", -1, 1, "01a2330d-6f01-731e-b9b6-0f5b7b1e8ef4")
            newer = RunIdentity("iam_dag", sleeper.run_id, "retried", -1, 2, "01a23311-7a60-7689-879d-622cac4095b3")
            hook.launch(LaunchRequest(task="diagnostic", identity=older, params={"action": "sleep"}))
            retried = hook.launch(LaunchRequest(task="diagnostic", identity=newer, params={"action": "sleep"}))
            listed = hook.call({"action": "list"})["tasks"]
            hook.call({"action": "stop", "identity": newer.to_dict(), "reason": "stopped by identity"})
            hook.call({"action": "reap"})
            # ECS reports (EventBridge -> the Lambda) a task that failed to start: it is started again.
            pulled = RunIdentity("iam_dag", sleeper.run_id, "pulled", -1, 1, "01a2330d-6f01-731e-b9b6-0f5b7b1e8ef4")
            failing = hook.launch(LaunchRequest(task="diagnostic", identity=pulled, params={"action": "sleep"}))
            end_task_as_fargate(failing.task_ref, ACCOUNT, REGION, stop_code="TaskFailedToStart",
                                stopped_reason="CannotPullContainerError: simulated")  # fmt: skip
            restarted = hook.call(stopped_event(failing.task_ref))
            bad = RunIdentity(dag_id="iam_dag", run_id="manual__2026~bad", task_id="echo")
            with pytest.raises(LauncherError, match="session tags cannot carry"):
                hook.launch(LaunchRequest(task="diagnostic", identity=bad))
            # The results CLI, as the Airflow role.
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIACLI000000000")
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cli")
            cli_codes = [
                cli.main(["--bucket", bucket, "runs"]),
                cli.main(["--bucket", bucket, "tasks", "iam_dag", identity.run_id]),
                cli.main(["--bucket", bucket, "show", "iam_dag", identity.run_id, "echo"]),
                cli.main(["--bucket", bucket, "log", "iam_dag", identity.run_id, "echo"]),
            ]
    took = time.monotonic() - started
    yield {"recorder": recorder, "stack": stack, "handle": handle, "exit_code": exit_code, "event": event,
           "heard": heard, "stopped": stopped, "described": described, "cli": cli_codes, "forged": forged,
           "listed": listed, "retried": retried, "restarted": restarted, "seconds": took}  # fmt: skip
    monkeypatch.undo()


async def _first_event(trigger: LaunchedTaskTrigger) -> Any:
    async for event in trigger.run():
        return event


def _announce(url: str, queue: str, bucket: str, key: str) -> None:
    """What S3 sends the status queue for a new status.json (moto keeps no bucket notifications)."""
    sqs = _harness(url, "sqs")
    encoded = urllib.parse.quote_plus(key, safe="/")  # S3 URL-encodes the key in its notifications
    record = {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": bucket}, "object": {"key": encoded}}}
    sqs.send_message(
        QueueUrl=sqs.get_queue_url(QueueName=queue)["QueueUrl"], MessageBody=json.dumps({"Records": [record]})
    )


async def _listen(queue: str, key: str) -> list[tuple[str, str]]:
    """The triggerer's status listener: hear one status.json, delete its message, start the next long poll."""
    source = status_notifications.receive_written_keys(
        queue, "airlaunch_iam", REGION, lambda written: written[1] == key
    )
    heard = [await asyncio.wait_for(anext(source), 10)]
    while heard[-1][1] != key:
        heard.append(await asyncio.wait_for(anext(source), 10))
    with contextlib.suppress(TimeoutError):  # deletes its message, hands the other back, then long-polls again
        heard.append(await asyncio.wait_for(anext(source), 1))
    await source.aclose()
    return heard


# -- judging the calls ------------------------------------------------------------------------------


def _principal(recorder: Recorder, stack: Deployed, key: str) -> tuple[str, Principal]:
    """The role (logical id) and principal a recorded access key stands for."""
    if key in KEYS:
        return KEYS[key], stack.principal(KEYS[key])
    session = recorder.sessions.get(key)
    if session is None:
        raise KeyError(f"a call was signed with {key!r}, which no role of the stack stands for")
    tags = dict(session.tags)
    caller = recorder.sessions.get(session.caller_key)
    while caller is not None:  # transitive session tags carry over through role chaining
        tags = {**{k: v for k, v in caller.tags.items() if k in caller.transitive}, **tags}
        caller = recorder.sessions.get(caller.caller_key)
    logical = stack.logical_of_role(session.role_arn)
    return logical, stack.principal(logical, session_tags=tags, session_name="session")


def _judged(recorded: dict[str, Any]) -> list[tuple[str, str, Request, bool, Principal]]:
    recorder, stack = recorded["recorder"], recorded["stack"]
    verdicts = []
    for call in recorder.calls:
        if call.access_key == "harness":  # the test's own set-up and inspection
            continue
        role, principal = _principal(recorder, stack, call.access_key)
        for request in requests_of(call, stack):
            verdicts.append((str(call), role, request, allowed(principal, request), principal))
    return verdicts


def test_the_run_itself_worked(recorded: dict[str, Any]) -> None:
    assert recorded["exit_code"] == 0 and recorded["event"].payload["state"] == "succeeded"
    assert recorded["event"].payload["result"]["echo"] == "iam"
    assert recorded["handle"].layout.status_key in [key for _, key in recorded["heard"]]
    assert recorded["stopped"].state.value == "failed" and recorded["described"].state.value == "failed"
    assert recorded["cli"] == [0, 0, 0, 0]
    assert recorded["retried"].prefix in {task["prefix"] for task in recorded["listed"]}
    assert recorded["restarted"]["started_again"].startswith("arn:aws:ecs:")
    print(f"\nrecorded {len(recorded['recorder'].calls)} AWS calls in {recorded['seconds']:.1f} s")


def test_every_side_was_recorded(recorded: dict[str, Any]) -> None:
    calls = {(str(c), c.access_key[:8]) for c in recorded["recorder"].calls}
    operations = {c for c, _ in calls}
    assert {"lambda.Invoke", "ecs.RunTask", "ecs.ListTasks", "ecs.StopTask", "ecs.DescribeTaskDefinition"} <= operations
    assert {"sts.AssumeRole", "s3.HeadObject", "s3.PutObject", "s3.DeleteObject", "s3.ListObjectsV2"} <= operations
    assert {"sqs.GetQueueUrl", "sqs.ReceiveMessage", "sqs.DeleteMessageBatch"} <= operations
    signers = {key for _, key in calls}
    assert {"AKIALAUN", "AKIAAIRF", "AKIACLI0"} <= signers
    runtime = [c for c in recorded["recorder"].calls if c.access_key in recorded["recorder"].sessions]
    assert {str(c) for c in runtime} >= {"s3.HeadObject", "s3.GetObject", "s3.PutObject", "sts.AssumeRole"}
    renewals = [c for c in runtime if str(c) == "sts.AssumeRole"]
    assert renewals and "Tags" not in renewals[0].params, "the runtime renewed its session once, without new tags"


def test_every_call_is_allowed_by_the_template(recorded: dict[str, Any]) -> None:
    forged = recorded["forged"]["key"]
    denied = [
        f"{role}: {call} needs {request}"
        for call, role, request, ok, _ in _judged(recorded)
        if not ok and not request.resource.endswith(forged)
    ]
    assert denied == [], "calls the deployed policies would deny:\n" + "\n".join(denied)


def test_a_forged_write_into_another_run_is_denied(recorded: dict[str, Any]) -> None:
    forged = [
        (role, request, ok)
        for _, role, request, ok, _ in _judged(recorded)
        if request.resource.endswith(recorded["forged"]["key"]) and request.action == "s3:PutObject"
    ]
    assert [(role, request.action, ok) for role, request, ok in forged] == [("RunFilesRole", "s3:PutObject", False)]
    own = [ok for call, role, request, ok, _ in _judged(recorded)
           if role == "RunFilesRole" and request.action == "s3:PutObject" and "status.json" in request.resource
           and recorded["handle"].prefix in request.resource]  # fmt: skip
    assert own and all(own), "the task may write its own status.json"


def test_no_permission_goes_unused(recorded: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    stack: Deployed = recorded["stack"]
    judged = _judged(recorded)
    unused = {}
    for role in ("LauncherRole", "AirflowRole", "RunFilesRole"):
        for policy in stack.role_policies(role):
            for statement in policy["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                for action in actions:
                    alone = {"Version": "2012-10-17", "Statement": [{**statement, "Action": action}]}
                    used = any(
                        r == role and allowed(Principal(p.arn, (alone,), p.session_policy, p.session_tags), req)
                        for _, r, req, ok, p in judged
                        if ok and req.action.lower() == action.lower()
                    )
                    if not used:
                        unused[(role, statement.get("Sid", ""), action)] = USED_BY_AWS.get(
                            (role, statement.get("Sid", ""), action), "NOT USED"
                        )
    with capsys.disabled():
        print("\npermissions no recorded call used:")
        for (role, sid, action), why in sorted(unused.items()):
            print(f"  {role} {sid} {action}: {why}")
    assert unused == USED_BY_AWS
