"""Least privilege, tested: every AWS call the code makes is judged against the template's policies.

The rendered template is deployed into a moto server of our own; then, in this process and
against it, the Airflow hook, trigger and status listener (as the Airflow role), the launcher
service behind a local Lambda endpoint (as the launcher role), the ECS agent fetching a try's
run session file (as the task execution role), the task runtime (with that run session) and the
results CLI (as the Airflow role) do what a run does: launch, run, watch, stop, fail to launch,
read back; a catalog entry with secrets is launched (the launcher only looks at them) and ECS's agent
fetches them with that entry's own execution role, which may read no other entry's; a cacheable entry's
try is cached once ECS reports it stopped and the same launch in another run is served from the cache
(the image's digest from ECR, the cache's entries, copies of the result); and a task with a
two-hour timeout runs on the test's clock (tests/iam/harness.Clock):
the reaper renews its session twice, the runtime's refreshing credentials read each renewal.
Every call is recorded by botocore event hooks with the key that signed it and the time it was
made, mapped to what AWS authorizes (tests/iam/authorizations) and judged by a policy evaluator
(tests/iam/evaluator) against the template's own policies and each session's session policy, at
that time. A call that would be denied fails the test; a permission no call uses is reported
(and must be one of the few used by AWS itself, listed below with why); what a task forges with
its run session (another run's status.json, another try's session file, a role session of its
own) and a session used past its try's deadline are denied. moto does not enforce IAM, so the
calls succeed here whatever the verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import moto.sts.models
import pytest
import yaml

from airlaunch import cli
from airlaunch.catalog import Catalog
from airlaunch.deploy.template import body, render
from airlaunch.launcher import failed_events
from airlaunch.launcher.backends.ecs import EcsBackend
from airlaunch.launcher.run_credentials import DEADLINE_ALLOWANCE_SECONDS
from airlaunch.launcher.secrets import LaunchSecrets
from airlaunch.launcher.service import Launcher
from airlaunch.launcher.settings import LauncherSettings
from airlaunch.protocol import ENV_RUN_CREDENTIALS, EventReply, Handle, LaunchRequest, Overrides, RunIdentity
from airlaunch.providers.airflow.hooks.launcher import LauncherError, LauncherHook
from airlaunch.providers.airflow.triggers import status_notifications
from airlaunch.providers.airflow.triggers.launched_task import LaunchedTaskTrigger
from airlaunch.runtime.credentials import RunSessionKeys, explicit_keys, run_session
from airlaunch.runtime.entrypoint import TaskRun, parse_args
from airlaunch.runtime.settings import RuntimeSettings
from airlaunch.runtime.signed_s3 import SignedS3, endpoint_for
from tests.aws_shapes import stopped_event
from tests.iam.authorizations import requests_of
from tests.iam.evaluator import Principal, Request, allowed, at
from tests.iam.harness import Clock, container_environment, container_secrets, harness_client, lambda_endpoint
from tests.iam.recorder import Call, Recorder, recording
from tests.iam.stack import Deployed
from tests.moto_server import end_task_as_fargate, moto_in_process

ROOT = Path(__file__).resolve().parents[2]
_ENTRIES = yaml.safe_load((ROOT / "tasks" / "catalog.yaml").read_text())
_ENTRIES["tasks"]["diagnostic"]["max_timeout_seconds"] = 3 * 3600  # room for the two-hour try
_ENTRIES["tasks"]["task_one"]["cache"] = True  # the result cache: its key's image digest, its entries
KMS_KEY = "1234abcd-12ab-34cd-56ef-1234567890ab"
_SECRETS = {"DB_PASSWORD": {"secretsmanager": "iam/db", "json_key": "password"},
            "API_TOKEN": {"ssm": "/iam/api-token", "kms_key": KMS_KEY}}  # fmt: skip
_ENTRIES["tasks"]["secret_echo"] = {**_ENTRIES["tasks"]["diagnostic"], "secrets": _SECRETS}
_ENTRIES["tasks"]["other_secret"] = {
    **_ENTRIES["tasks"]["diagnostic"],
    "secrets": {"OTHER": {"secretsmanager": "iam/other"}},
}
_ENTRIES["tasks"]["gone_secret"] = {**_ENTRIES["tasks"]["diagnostic"], "secrets": {"GONE": {"ssm": "/iam/gone"}}}
CATALOG = Catalog.from_dict(_ENTRIES)
DB_PASSWORD, API_TOKEN, OTHER = "iam-db-password-1", "iam-api-token-2", "iam-other-secret-3"
ACCOUNT, REGION, STACK = "123456789012", "us-east-1", "al-iam"
KEYS = {"AKIALAUNCHER0000": "LauncherRole", "AKIAAIRFLOW00000": "AirflowRole", "AKIACLI000000000": "AirflowRole",
        "AKIAEXECUTION000": "TaskExecutionRole", "AKIASECRETEXEC00": "SecretEchoExecutionRole"}  # fmt: skip
TI_ID = "01a2330d-6f01-731e-b9b6-0f5b7b1e8ef4"
# Allowed by the template, used by AWS itself rather than by our code: (role, Sid, action) and why.
USED_BY_AWS = {
    ("LauncherRole", "Logs", "logs:CreateLogStream"): "the Lambda runtime writes the function's logs",
    ("LauncherRole", "Logs", "logs:PutLogEvents"): "the Lambda runtime writes the function's logs",
    ("LauncherRole", "RecordFailedEvents", "sqs:SendMessage"): "Lambda sends a failed event to the on-failure queue",
    ("TaskExecutionRole", "EcrLogin", "ecr:GetAuthorizationToken"): "the ECS agent pulls the task's image",
    ("TaskExecutionRole", "PullCatalogImages", "ecr:BatchCheckLayerAvailability"): "the ECS agent pulls the image",
    ("TaskExecutionRole", "PullCatalogImages", "ecr:BatchGetImage"): "the ECS agent pulls the task's image",
    ("TaskExecutionRole", "PullCatalogImages", "ecr:GetDownloadUrlForLayer"): "the ECS agent pulls the task's image",
    ("TaskExecutionRole", "WriteTaskLogs", "logs:CreateLogStream"): "the awslogs driver writes the task's output",
    ("TaskExecutionRole", "WriteTaskLogs", "logs:PutLogEvents"): "the awslogs driver writes the task's output",
}
_SHARED = [(sid, action, why) for (role, sid, action), why in USED_BY_AWS.items() if role == "TaskExecutionRole"]
USED_BY_AWS.update({("SecretEchoExecutionRole", sid, action): why for sid, action, why in _SHARED})


def _harness(url: str, service: str) -> Any:
    return harness_client(url, service, REGION)


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
        _push_image(_harness(url, "ecr"), f"{STACK}/reference-tasks", "latest")  # what make deploy pushes
        secrets = _harness(url, "secretsmanager")
        values = {"iam/db": json.dumps({"password": DB_PASSWORD}), "iam/other": OTHER}
        arns = {name: secrets.create_secret(Name=name, SecretString=text)["ARN"] for name, text in values.items()}
        _harness(url, "ssm").put_parameter(Name="/iam/api-token", Value=API_TOKEN, Type="SecureString", KeyId=KMS_KEY)
        parameter = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/iam/api-token"
        template = render(CATALOG, secret_arns=arns)
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
        deployed = Deployed(template, STACK, ACCOUNT, REGION, physical, params, arns, {parameter: KMS_KEY})
        yield url, deployed, outputs


def _launcher(url: str, outputs: dict[str, str], subnet: str, group: str, clock: Clock) -> Launcher:
    """The launcher service as the Lambda builds it, with the launcher role's (test) key, on the test's clock."""
    creds = {"endpoint_url": url, "region_name": REGION, "aws_access_key_id": "AKIALAUNCHER0000",
             "aws_secret_access_key": "launcher"}  # fmt: skip
    settings = LauncherSettings(
        bucket=outputs["BucketName"], key_prefix="runs", backend="ecs", ecs_cluster=STACK,
        ecs_family_prefix=STACK, ecs_subnets=(subnet,), ecs_security_groups=(group,),
        run_role_arn=outputs["RunFilesRoleArn"],
    )  # fmt: skip
    clients = [boto3.client(service, **creds) for service in ("ecs", "sts", "s3")]
    backend = EcsBackend(settings, *clients)
    assert backend.run_sessions is not None
    backend.run_sessions.clock = clock.now
    backend.images.ecr = lambda region: boto3.client("ecr", **creds)  # the launcher role's, as the other clients
    secrets = LaunchSecrets(False, lambda: (boto3.client("secretsmanager", **creds), boto3.client("ssm", **creds)))
    return Launcher(settings, CATALOG, backend, boto3.client("s3", **creds), {"AWS_REGION": REGION}, secrets)


def _container(environment: dict[str, str]) -> dict[str, str]:
    """The environment ECS gave the task's container, as the runtime sees it: its region (which ECS sets)
    and, here, the moto server as its AWS endpoint."""
    return {**environment, "AWS_REGION": REGION, "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"]}


def _run_task(environment: dict[str, str], work: Path) -> int:
    """The task runtime, in this process, with the environment ECS gave its container."""
    args = parse_args(["--", sys.executable, str(ROOT / "tasks" / "reference" / "diagnostic.py")])
    return TaskRun(args, RuntimeSettings(work_dir=str(work)), _container(environment)).run()


def _two_hour_task(hook: LauncherHook, clock: Clock, agent: Any, recorder: Recorder) -> dict[str, Any]:
    """A try with a two-hour timeout, on the test's clock: its run session is renewed twice by the reaper and
    read by the runtime's own refreshing credentials; used after the deadline, the last session is denied."""
    identity = RunIdentity("iam_dag", "manual__2026-01-01T00:00:00+00:00", "long", -1, 1, TI_ID)
    request = LaunchRequest(task="diagnostic", identity=identity, params={"action": "sleep"},
                            overrides=Overrides(timeout_seconds=7200))  # fmt: skip
    launched_at = clock.now()
    handle = hook.launch(request)
    environment = _container(container_environment(agent["ecs"], agent["s3"], STACK, handle.task_ref))
    endpoint = endpoint_for(environment)
    assert endpoint is not None
    keys = explicit_keys(environment, endpoint, clock=clock.aware)
    assert isinstance(keys, RunSessionKeys), "on ECS the runtime signs with its run session"
    s3 = SignedS3(endpoint, keys, clock=clock.aware)
    s3.get_object(Bucket=handle.bucket, Key=handle.layout.params_key)
    signers = [keys().access_key]
    for minutes in (40, 80):  # the reaper finds the session's last 20 minutes; 7 minutes on, botocore refreshes
        clock.set(launched_at + minutes * 60)
        hook.reap()
        clock.advance(7 * 60)
        s3.put_object(Bucket=handle.bucket, Key=handle.layout.log_part_key(minutes), Body=b"still running\n")
        signers.append(recorder.calls[-1].access_key)
    clock.set(launched_at + 7200)
    s3.put_object(Bucket=handle.bucket, Key=handle.layout.status_key, Body=b"{}")
    in_time = recorder.calls[-1]
    frozen = keys()
    files = agent["harness_s3"].head_object(Bucket=handle.bucket, Key=_session_key(handle, "session.env"))
    deadline = datetime.fromisoformat(files["Metadata"]["deadline"].replace("Z", "+00:00")).timestamp()
    clock.set(deadline + 60)  # a minute past the deadline: a leaked session
    leaked = boto3.client("s3", aws_access_key_id=frozen.access_key, aws_secret_access_key=frozen.secret_key,
                          aws_session_token=frozen.token)  # fmt: skip
    leaked.put_object(Bucket=handle.bucket, Key=handle.layout.status_key, Body=b"{}")
    late = recorder.calls[-1]
    clock.offset = 0.0
    return {"handle": handle, "launched_at": launched_at, "deadline": deadline, "signers": signers,
            "in_time": in_time, "late": late}  # fmt: skip


def _session_key(handle: Handle, name: str) -> str:
    return "runs-sessions/" + handle.prefix.removeprefix("runs/") + name


@pytest.fixture(scope="module")
def recorded(
    deployed: tuple[str, Deployed, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Everything a run does, recorded: launch, ECS's fetch of the session file, the task, watch,
    notifications, stop, a two-hour task's renewals, a failed launch, forged calls, the CLI."""
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
    clock = Clock()
    monkeypatch.setattr(moto.sts.models, "utcnow", clock.naive_utc)  # STS's expirations on the test's clock
    forged: list[Call] = []
    started = time.monotonic()
    with recording() as recorder:
        recorder.clock = clock.now
        launcher = _launcher(url, outputs, subnet, group, clock)
        launcher_sqs = boto3.client("sqs", endpoint_url=url, region_name=REGION, aws_access_key_id="AKIALAUNCHER0000",
                                    aws_secret_access_key="launcher")  # fmt: skip
        monkeypatch.setattr(failed_events, "sqs_client", lambda: launcher_sqs)
        agent = {"ecs": _harness(url, "ecs"), "harness_s3": _harness(url, "s3"),
                 "s3": boto3.client("s3", aws_access_key_id="AKIAEXECUTION000", aws_secret_access_key="x")}  # fmt: skip
        secret_agent = {service: boto3.client(service, aws_access_key_id="AKIASECRETEXEC00", aws_secret_access_key="x")
                        for service in ("s3", "secretsmanager", "ssm")}  # fmt: skip
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
                                   ti_id=TI_ID)  # fmt: skip
            request = LaunchRequest(task="diagnostic", identity=identity, params={"action": "echo", "message": "iam"})
            handle = hook.launch(request)
            environment = container_environment(agent["ecs"], agent["s3"], STACK, handle.task_ref)
            exit_code = _run_task(environment, work)
            # A task with secrets: the launcher looks at them; ECS's agent fetches its session file and its
            # secrets with the entry's own execution role, which may fetch no other entry's secret, nor may the
            # shared role fetch any; a launch whose secret is missing fails before anything is written.
            keyed = RunIdentity(dag_id="iam_dag", run_id=identity.run_id, task_id="keyed", ti_id=TI_ID)
            keyed_handle = hook.launch(LaunchRequest(task="secret_echo", identity=keyed, params={"action": "echo"}))
            container_environment(agent["ecs"], secret_agent["s3"], STACK, keyed_handle.task_ref)
            injected = container_secrets(agent["ecs"], secret_agent, STACK, keyed_handle.task_ref)
            mark = len(recorder.calls)
            secret_agent["secretsmanager"].get_secret_value(SecretId=stack.secret_arns["iam/other"])
            boto3.client("secretsmanager", aws_access_key_id="AKIAEXECUTION000", aws_secret_access_key="x"
                         ).get_secret_value(SecretId=stack.secret_arns["iam/db"])  # fmt: skip
            foreign = recorder.calls[mark:]
            forged += foreign
            gone = RunIdentity(dag_id="iam_dag", run_id=identity.run_id, task_id="gone", ti_id=TI_ID)
            with pytest.raises(LauncherError, match=r"secret GONE \(SSM parameter '/iam/gone'\) does not exist"):
                hook.launch(LaunchRequest(task="gone_secret", identity=gone))
            gone_params = _harness(url, "s3").list_objects_v2(
                Bucket=bucket, Prefix=f"runs/iam_dag/{identity.run_id}/gone/"
            )
            # The trigger polls S3 (aiobotocore) and ends the task; the status listener hears the queue.
            trigger = LaunchedTaskTrigger(handle=handle.to_dict(), identity=identity.to_dict(), function_name=function,
                                          aws_conn_id="airlaunch_iam", poll_interval=0.1, end_from_trigger=False,
                                          status_queue="")  # fmt: skip
            event = asyncio.run(_first_event(trigger))
            _announce(url, f"{STACK}-status", bucket, "runs/another/triggerers/status.json")  # handed back
            _announce(url, f"{STACK}-status", bucket, handle.layout.status_key)
            heard = asyncio.run(_listen(f"{STACK}-status", handle.layout.status_key))
            # ECS reports the finished task stopped: the launcher deletes its run session files.
            end_task_as_fargate(handle.task_ref, ACCOUNT, REGION, stop_code="EssentialContainerExited")
            ended = _deliver(hook, stopped_event(handle.task_ref))
            _result_cache(hook, agent, tmp_path_factory.mktemp("cached"))
            # Stop a running task, describe it; a launch that fails after params.yaml is written.
            sleeper = RunIdentity(dag_id="iam_dag", run_id="manual__2026-01-01T00:00:00+00:00", task_id="sleep")
            second = hook.launch(LaunchRequest(task="diagnostic", identity=sleeper, params={"action": "sleep"}))
            # The task's code, with the run session it was given, reaching beyond its run: another run's
            # status.json, another try's session file, a session of its own making.
            mark = len(recorder.calls)
            own = run_session(environment)
            own.create_client("s3").put_object(
                Bucket=bucket, Key="runs/iam_dag/other_run/echo/-1/1/status.json", Body=b"{}"
            )
            own.create_client("s3").get_object(Bucket=bucket, Key=_session_key(second, "session.env"))
            with contextlib.suppress(Exception):
                own.create_client("sts").assume_role(RoleArn=outputs["RunFilesRoleArn"], RoleSessionName="leak")
            forged += recorder.calls[mark:]
            stopped = hook.stop("stopped by the IAM test", handle=second)
            described = hook.describe(second)
            # A newer try supersedes an older one; a stop by identity; the orphan sweep's list; the reaper.
            older = RunIdentity("iam_dag", sleeper.run_id, "retried", -1, 1, TI_ID)
            newer = RunIdentity("iam_dag", sleeper.run_id, "retried", -1, 2, "01a23311-7a60-7689-879d-622cac4095b3")
            hook.launch(LaunchRequest(task="diagnostic", identity=older, params={"action": "sleep"}))
            retried = hook.launch(LaunchRequest(task="diagnostic", identity=newer, params={"action": "sleep"}))
            listed = hook.list_tasks()
            hook.stop("stopped by identity", identity=newer)
            _fail(url, stopped_event(handle.task_ref))  # its handling failed Lambda's retries: the reaper takes it back
            reaped = hook.reap()
            # ECS reports (EventBridge -> the Lambda) a task that failed to start: it is started again.
            pulled = RunIdentity("iam_dag", sleeper.run_id, "pulled", -1, 1, TI_ID)
            failing = hook.launch(LaunchRequest(task="diagnostic", identity=pulled, params={"action": "sleep"}))
            end_task_as_fargate(failing.task_ref, ACCOUNT, REGION, stop_code="TaskFailedToStart",
                                stopped_reason="CannotPullContainerError: simulated")  # fmt: skip
            restarted = _deliver(hook, stopped_event(failing.task_ref))
            long = _two_hour_task(hook, clock, agent, recorder)
            forged.append(long["late"])
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
    left = _harness(url, "s3").list_objects_v2(Bucket=bucket, Prefix=_session_key(handle, "")).get("KeyCount", 0)
    yield {"recorder": recorder, "stack": stack, "handle": handle, "exit_code": exit_code, "event": event,
           "heard": heard, "stopped": stopped, "described": described, "cli": cli_codes, "forged": forged,
           "listed": listed, "retried": retried, "restarted": restarted, "seconds": took, "long": long,
           "ended": ended, "left": left, "environment": environment, "reaped": reaped, "injected": injected,
           "foreign": foreign, "keyed": keyed_handle, "gone_params": gone_params.get("KeyCount", 0)}  # fmt: skip
    monkeypatch.undo()


def _push_image(ecr: Any, repository: str, tag: str) -> None:
    ecr.create_repository(repositoryName=repository)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"digest": "sha256:" + "c" * 64, "size": 0}, "layers": []}  # fmt: skip
    ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)


def _result_cache(hook: LauncherHook, agent: dict[str, Any], work: Path) -> None:
    """The result cache (task_one is cacheable here): a try's key needs its image's digest from ECR; ECS reports
    the try stopped, having run that image, and its result is cached; the same launch in another run is served
    from the cache (copies in its own prefix), and nothing is started."""
    computed = RunIdentity("iam_dag", "manual__2026-01-01T00:00:00+00:00", "cached", ti_id=TI_ID)
    request = LaunchRequest(task="task_one", identity=computed, params={"action": "echo", "message": "once"})
    ran = hook.launch(request)
    assert _run_task(container_environment(agent["ecs"], agent["s3"], STACK, ran.task_ref), work) == 0
    ecr = _harness(agent["ecs"].meta.endpoint_url, "ecr")
    [image] = ecr.describe_images(repositoryName=f"{STACK}/reference-tasks")["imageDetails"]
    end_task_as_fargate(ran.task_ref, ACCOUNT, REGION, stop_code="EssentialContainerExited",
                        image_digest=image["imageDigest"])  # fmt: skip
    assert _deliver(hook, stopped_event(ran.task_ref)).recorded == "by its runtime"
    again = RunIdentity("iam_dag", "manual__2026-01-02T00:00:00+00:00", "cached", ti_id=TI_ID)
    served = hook.launch(LaunchRequest(task="task_one", identity=again, params=request.params))
    assert served.cached_from == ran.prefix and not served.launched, "served from the cache, nothing started"


def _deliver(hook: LauncherHook, event: dict[str, Any]) -> EventReply:
    """An ECS event, delivered to the launcher as EventBridge does (with the Airflow role's credentials here)."""
    response = hook.conn.invoke(FunctionName=hook.function_name, Payload=json.dumps(event).encode())
    assert "FunctionError" not in response
    return EventReply.from_dict(json.loads(response["Payload"].read()))


async def _first_event(trigger: LaunchedTaskTrigger) -> Any:
    async for event in trigger.run():
        return event


def _fail(url: str, event: dict[str, Any]) -> None:
    """What Lambda sends the on-failure destination for an event whose handling failed every attempt."""
    event = {**event, "time": datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    record = {"version": "1.0", "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 3},
              "requestPayload": event, "responseContext": {"functionError": "Unhandled"}}  # fmt: skip
    sqs = _harness(url, "sqs")
    queue = sqs.get_queue_url(QueueName=f"{STACK}-failed-events")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(record))


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
    """The role (logical id) and principal a recorded access key stands for: for a role session, with its
    tags (inherited ones included) and its session policy."""
    if key in KEYS:
        return KEYS[key], stack.principal(KEYS[key])
    session = recorder.sessions.get(key)
    if session is None:
        raise KeyError(f"a call was signed with {key!r}, which no role of the stack stands for")
    logical = stack.logical_of_role(session.role_arn)
    return logical, stack.principal(logical, session_tags=dict(session.tags), session_policy=session.policy)


Verdict = tuple[Call, str, Request, bool, Principal]


def _judged(recorded: dict[str, Any]) -> list[Verdict]:
    """Every authorization each recorded call needs, at the moment it was made, and AWS's verdict on it."""
    recorder, stack = recorded["recorder"], recorded["stack"]
    verdicts = []
    for call in recorder.calls:
        if call.access_key == "harness":  # the test's own set-up and inspection
            continue
        role, principal = _principal(recorder, stack, call.access_key)
        for request in requests_of(call, stack):
            timed = at(request, call.at)
            verdicts.append((call, role, timed, allowed(principal, timed), principal))
    return verdicts


def _forged(recorded: dict[str, Any], call: Call) -> bool:
    return any(call is forged for forged in recorded["forged"])


def _foreign(recorded: dict[str, Any], call: Call) -> bool:
    return any(call is foreign for foreign in recorded["foreign"])


def test_the_run_itself_worked(recorded: dict[str, Any]) -> None:
    assert recorded["exit_code"] == 0 and recorded["event"].payload["state"] == "succeeded"
    assert recorded["event"].payload["result"]["echo"] == "iam"
    assert recorded["handle"].layout.status_key in [key for _, key in recorded["heard"]]
    assert recorded["stopped"].state.value == "failed" and recorded["described"].state.value == "failed"
    assert recorded["cli"] == [0, 0, 0, 0]
    assert recorded["retried"].prefix in {task.prefix for task in recorded["listed"]}
    assert recorded["restarted"].started_again.startswith("arn:aws:ecs:")
    assert recorded["ended"].recorded == "by its runtime" and recorded["left"] == 0, "session files deleted"
    assert recorded["reaped"].failed_events == {"handled": 1, "dropped": 0, "failed_again": 0}
    print(f"\nrecorded {len(recorded['recorder'].calls)} AWS calls in {recorded['seconds']:.1f} s")


def test_every_side_was_recorded(recorded: dict[str, Any]) -> None:
    calls = {(str(c), c.access_key[:8]) for c in recorded["recorder"].calls}
    operations = {c for c, _ in calls}
    assert {"lambda.Invoke", "ecs.RunTask", "ecs.ListTasks", "ecs.StopTask", "ecs.DescribeTaskDefinition"} <= operations
    assert {"sts.AssumeRole", "s3.HeadObject", "s3.PutObject", "s3.DeleteObject", "s3.ListObjectsV2"} <= operations
    assert {"sqs.GetQueueUrl", "sqs.ReceiveMessage", "sqs.DeleteMessageBatch"} <= operations
    assert {("s3.GetBucketLocation", "AKIAEXEC"), ("s3.GetObject", "AKIAEXEC")} <= calls, "ECS fetched the file"
    signers = {key for _, key in calls}
    assert {"AKIALAUN", "AKIAAIRF", "AKIACLI0", "AKIAEXEC"} <= signers
    runtime = [c for c in recorded["recorder"].calls if c.access_key in recorded["recorder"].sessions]
    assert {str(c) for c in runtime} >= {"s3.GetObject", "s3.PutObject"}
    assert "s3.HeadObject" not in {str(c) for c in runtime}, "params.yaml is read in one GET"
    assert [str(c) for c in runtime if c.service == "sts" and not _forged(recorded, c)] == [], "no task calls STS"


def test_run_sessions_travel_only_as_environment_files(recorded: dict[str, Any]) -> None:
    """RunTask (what DescribeTasks, ECS's events and CloudTrail show) names the session file, never a secret."""
    recorder = recorded["recorder"]
    secrets = [c.response["Credentials"] for c in recorder.calls if str(c) == "sts.AssumeRole" and c.response]
    assert len(secrets) >= 8
    launches = [c for c in recorder.calls if str(c) == "ecs.RunTask"]
    for call in launches:
        text = json.dumps(call.params)
        assert ENV_RUN_CREDENTIALS not in text
        assert not [s for s in secrets if s["SecretAccessKey"] in text or s["SessionToken"] in text]
        [files] = [o["environmentFiles"] for o in call.params["overrides"]["containerOverrides"]]
        assert [f["value"].rsplit("/", 1)[1] for f in files] == ["session.env"]
    assert json.loads(recorded["environment"][ENV_RUN_CREDENTIALS])["RenewalKey"].endswith("/renewal.json")


def _missing_stop_file(call: Any, role: str, request: Request) -> bool:
    """The runtime's look for its try's stop.json before the command starts: a run session may read it but
    not list the bucket, so S3 answers a missing one 403 instead of 404, which the runtime takes as no stop
    (listing the bucket would show a task every run's names)."""
    key = str(call.params.get("Key", "")) if str(call) == "s3.GetObject" else ""
    return role == "RunFilesRole" and request.action == "s3:ListBucket" and key.endswith("/stop.json")


def test_every_call_is_allowed_by_the_template(recorded: dict[str, Any]) -> None:
    denied = [
        f"{role}: {call} needs {request}"
        for call, role, request, ok, _ in _judged(recorded)
        if not ok and not _forged(recorded, call) and not _missing_stop_file(call, role, request)
    ]
    assert denied == [], "calls the deployed policies would deny:\n" + "\n".join(denied)
    stop_reads = [ok for _, role, request, ok, _ in _judged(recorded) if role == "RunFilesRole"
                  and request.action == "s3:GetObject" and request.resource.endswith("/stop.json")]  # fmt: skip
    assert stop_reads and all(stop_reads), "the runtime may read its own stop.json"


def test_what_a_task_forges_with_its_run_session_is_denied(recorded: dict[str, Any]) -> None:
    """Another run's status.json, another try's session file, a session of its own (no self-renewal)."""
    by_task = [c for c in recorded["forged"] if c is not recorded["long"]["late"] and not _foreign(recorded, c)]
    forged = [(str(call), request.action, ok) for call, _, request, ok, _ in _judged(recorded)
              if any(call is c for c in by_task)]  # fmt: skip
    assert forged == [
        ("s3.PutObject", "s3:PutObject", False),
        ("s3.GetObject", "s3:GetObject", False),
        ("sts.AssumeRole", "sts:AssumeRole", False),
        ("sts.AssumeRole", "sts:TagSession", False),
    ]
    own = [ok for call, role, request, ok, _ in _judged(recorded)
           if role == "RunFilesRole" and request.action == "s3:PutObject" and "status.json" in request.resource
           and recorded["handle"].prefix in request.resource]  # fmt: skip
    assert own and all(own), "the task may write its own status.json"


def test_a_two_hour_task_is_renewed_twice_and_its_session_ends_at_its_deadline(recorded: dict[str, Any]) -> None:
    long, recorder = recorded["long"], recorded["recorder"]
    prefix = long["handle"].prefix.removeprefix("runs/")
    minted = [c for c in recorder.calls if str(c) == "sts.AssumeRole" and c.response
              and any(t["Value"] == "long" for t in c.params.get("Tags", []))]  # fmt: skip
    keys = [c.response["Credentials"]["AccessKeyId"] for c in minted]
    assert long["signers"] == keys[:3] and len(set(keys)) == 3, "the runtime moved to each renewed session"
    deadline = long["launched_at"] + 7200 + DEADLINE_ALLOWANCE_SECONDS
    assert abs(long["deadline"] - deadline) < 5
    for call in minted:
        assert call.params["DurationSeconds"] == 3600
        [statement] = json.loads(call.params["Policy"])["Statement"]
        assert statement["Condition"]["DateLessThan"]["aws:CurrentTime"] == _iso(long["deadline"])
    reads = [c for c in recorder.calls if str(c) == "s3.GetObject" and c.params["Key"].endswith("renewal.json")]
    assert [c.params["Key"] for c in reads if prefix in c.params["Key"]] == [f"runs-sessions/{prefix}renewal.json"] * 2
    verdicts = {id(call): ok for call, _, _, ok, _ in _judged(recorded) if call in (long["in_time"], long["late"])}
    assert verdicts == {id(long["in_time"]): True, id(long["late"]): False}, "allowed before the deadline only"


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_no_permission_goes_unused(recorded: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    stack: Deployed = recorded["stack"]
    judged = _judged(recorded)
    unused = {}
    for role in ("LauncherRole", "AirflowRole", "RunFilesRole", "TaskExecutionRole", "SecretEchoExecutionRole"):
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


def test_secrets_reach_their_own_task_only(recorded: dict[str, Any]) -> None:
    """The launcher looks at a task's secrets (never reads them); ECS's agent fetches them with the entry's own
    execution role, decrypting through SSM only; that role fetches no other entry's secret, the shared role none;
    RunTask carries the names of the secret variables only; a missing one fails the launch before params.yaml."""
    assert recorded["injected"] == {"DB_PASSWORD": DB_PASSWORD, "API_TOKEN": API_TOKEN}
    verdicts = [(role, request.action, request.resource.rsplit(":", 1)[-1], ok)
                for call, role, request, ok, _ in _judged(recorded)
                if request.action.startswith(("secretsmanager:", "ssm:", "kms:"))]  # fmt: skip
    allowed_ones = {(role, action, ok) for role, action, _, ok in verdicts if ok}
    assert allowed_ones == {
        ("LauncherRole", "secretsmanager:DescribeSecret", True),
        ("LauncherRole", "ssm:GetParameter", True),
        ("SecretEchoExecutionRole", "secretsmanager:GetSecretValue", True),
        ("SecretEchoExecutionRole", "ssm:GetParameters", True),
        ("SecretEchoExecutionRole", "kms:Decrypt", True),
    }
    denied = [(role, action, resource) for role, action, resource, ok in verdicts if not ok]
    assert [(role, action) for role, action, _ in denied] == [
        ("SecretEchoExecutionRole", "secretsmanager:GetSecretValue"),  # another entry's secret
        ("TaskExecutionRole", "secretsmanager:GetSecretValue"),  # the shared role: no secret at all
    ]
    assert all(_foreign(recorded, call) for call, _, request, ok, _ in _judged(recorded)
               if request.action.startswith("secretsmanager:") and not ok)  # fmt: skip
    [launch] = [c for c in recorded["recorder"].calls if str(c) == "ecs.RunTask"
                and c.params["taskDefinition"].endswith("-secret_echo")]  # fmt: skip
    [override] = launch.params["overrides"]["containerOverrides"]
    names = {e["name"]: e["value"] for e in override["environment"]}
    assert names["AIRLAUNCH_SECRET_NAMES"] == "API_TOKEN,DB_PASSWORD"
    assert "DB_PASSWORD" not in names and "API_TOKEN" not in names
    calls = [c.params for c in recorded["recorder"].calls if c.access_key != "AKIASECRETEXEC00"]
    text = json.dumps(calls, default=lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
    assert DB_PASSWORD not in text and API_TOKEN not in text, "no value in any call but the agent's own fetch"
    assert recorded["gone_params"] == 0, "a launch refused for a missing secret wrote no params.yaml"
