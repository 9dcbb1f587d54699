"""The whole rendered template, ECS included, deployed into moto server's CloudFormation, twice.

What moto keeps is checked here through the API: stack outputs, one task definition family
per catalog entry, roles and their policy text, names prefixed by the stack, two stacks side
by side. What moto drops (bucket and queue policies, notifications, capacity providers,
ManagedPolicyArns, a task definition's cpu, runtimePlatform, roles and awsvpc mode) is
checked on the template itself in test_infra.py.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from airlaunch.catalog import Catalog
from airlaunch.deploy.cloudformation import deploy
from airlaunch.deploy.template import body, render
from tests.moto_server import moto_server

ROOT = Path(__file__).resolve().parents[2]
CATALOG = Catalog.load(ROOT / "tasks" / "catalog.yaml")
ACCOUNT, REGION = "123456789012", "us-east-1"
STACKS = ("al-dev", "al-prod")


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two stacks of the rendered template in a moto server of our own."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        creds = {"endpoint_url": url, "region_name": REGION, "aws_access_key_id": "t", "aws_secret_access_key": "t"}
        names = ("cloudformation", "ecs", "iam", "lambda", "sqs", "events")
        clients = {name: boto3.client(name, **creds) for name in names}
        cfn, outputs = clients["cloudformation"], {}
        template = body(render(CATALOG, {"airlaunch/reference-tasks:latest": "fedcba9876543210"}))
        for stack in STACKS:
            image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{stack}/launcher:0123456789abcdef"
            params = {"LauncherImageUri": image, "Subnets": "subnet-1,subnet-2", "SecurityGroups": "sg-1"}
            # create_stack, not our change sets: moto's executed change sets keep no stack outputs.
            parameters = [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()]
            cfn.create_stack(StackName=stack, TemplateBody=template, Parameters=parameters,
                             Capabilities=["CAPABILITY_NAMED_IAM"])  # fmt: skip
            cfn.get_waiter("stack_create_complete").wait(StackName=stack, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
            described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
            outputs[stack] = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
        yield {**clients, "outputs": outputs, "template": template, "url": url}


def _policy_text(raw: Any) -> dict[str, Any]:
    """moto returns inline policies as Python reprs, AWS as JSON (or URL-encoded JSON)."""
    if isinstance(raw, dict):
        return raw
    try:
        return dict(json.loads(raw))
    except ValueError:
        return dict(ast.literal_eval(raw))


def _role(iam: Any, arn: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    name = arn.rsplit("/", 1)[1]
    role = iam.get_role(RoleName=name)["Role"]
    policies = {p: _policy_text(iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"])
                for p in iam.list_role_policies(RoleName=name)["PolicyNames"]}  # fmt: skip
    return role, policies


def _statement(policies: dict[str, dict[str, Any]], sid: str) -> dict[str, Any]:
    [statement] = [s for p in policies.values() for s in p["Statement"] if s.get("Sid") == sid]
    return statement


@pytest.mark.parametrize("stack", STACKS)
def test_outputs_name_everything_after_the_stack(aws: dict[str, Any], stack: str) -> None:
    out = aws["outputs"][stack]
    assert out["LauncherFunctionName"] == f"{stack}-launcher"
    assert out["ClusterArn"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{stack}"
    assert out["StatusQueueUrl"].endswith(f"/{stack}-status")
    assert out["RunFilesRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/{stack}-run-files-{REGION}"
    for key in ("LauncherRoleArn", "TaskExecutionRoleArn", "AirflowRoleArn"):
        assert out[key].startswith(f"arn:aws:iam::{ACCOUNT}:role/{stack}-"), key
    assert out["KeyPrefix"] == "runs" and out["BucketName"]


def test_two_stacks_share_the_account_without_clashing(aws: dict[str, Any]) -> None:
    dev, prod = (aws["outputs"][s] for s in STACKS)
    assert {k for k in dev if dev[k] == prod[k]} == {"KeyPrefix"}
    clusters = aws["ecs"].list_clusters()["clusterArns"]
    assert sorted(c.rsplit("/", 1)[1] for c in clusters) == sorted(STACKS)


@pytest.mark.parametrize("stack", STACKS)
def test_one_task_definition_family_per_catalog_entry(aws: dict[str, Any], stack: str) -> None:
    families = aws["ecs"].list_task_definition_families(familyPrefix=f"{stack}-")["families"]
    assert sorted(families) == sorted(f"{stack}-{name}" for name in CATALOG.tasks)
    for name, spec in CATALOG.tasks.items():
        definition = aws["ecs"].describe_task_definition(taskDefinition=f"{stack}-{name}")["taskDefinition"]
        [container] = definition["containerDefinitions"]
        assert container["name"] == "task" and container["essential"] is True
        assert (
            container["image"] == f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{stack}/reference-tasks:fedcba9876543210"
        )
        assert container["command"] == spec.runtime_args()
        options = container["logConfiguration"]["options"]
        assert options["awslogs-group"] == f"/airlaunch/{stack}/tasks/{name}"


@pytest.mark.parametrize("stack", STACKS)
def test_roles_and_their_policy_text(aws: dict[str, Any], stack: str) -> None:
    out, iam = aws["outputs"][stack], aws["iam"]
    _, launcher = _role(iam, out["LauncherRoleArn"])
    run = _statement(launcher, "RunCatalogTasks")
    assert sorted(run["Resource"]) == sorted(
        f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{stack}-{name}:*" for name in CATALOG.tasks
    )
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{stack}"}}
    passed = _statement(launcher, "PassTaskRoles")["Resource"]
    assert out["TaskExecutionRoleArn"] in passed and len(passed) == 1 + len(CATALOG.tasks)
    assert all(arn.split(":role/")[1].startswith(f"{stack}-") for arn in passed)
    assert _statement(launcher, "StartRunSessions")["Resource"] == out["RunFilesRoleArn"]
    shared = iam.get_policy(PolicyArn=out["TaskExecutionPolicyArn"])["Policy"]  # moto attaches no managed policy
    document = iam.get_policy_version(PolicyArn=shared["Arn"], VersionId=shared["DefaultVersionId"])
    execution = {"shared": _policy_text(document["PolicyVersion"]["Document"])}
    assert _statement(execution, "PullCatalogImages")["Resource"] == [
        f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{stack}/reference-tasks"
    ]
    files_role, files = _role(iam, out["RunFilesRoleArn"])
    bucket = out["BucketName"]
    assert _statement(files, "WriteOwnResults")["Resource"] == (
        f"arn:aws:s3:::{bucket}/runs/${{aws:PrincipalTag/airlaunch-dag}}/${{aws:PrincipalTag/airlaunch-run}}/"
        "${aws:PrincipalTag/airlaunch-task}/${aws:PrincipalTag/airlaunch-map}/${aws:PrincipalTag/airlaunch-try}/*"
    )
    trust = _policy_text(files_role["AssumeRolePolicyDocument"])["Statement"]
    assert trust[0]["Principal"] == {"AWS": out["LauncherRoleArn"]}
    airflow, _ = _role(iam, out["AirflowRoleArn"])
    assert airflow["RoleName"].startswith(f"{stack}-AirflowRole-")
    policy = iam.get_policy(PolicyArn=out["AirflowPolicyArn"])["Policy"]
    version = iam.get_policy_version(PolicyArn=out["AirflowPolicyArn"], VersionId=policy["DefaultVersionId"])
    document = _policy_text(version["PolicyVersion"]["Document"])
    [invoke] = [s for s in document["Statement"] if s["Sid"] == "InvokeLauncher"]
    assert invoke["Resource"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{stack}-launcher"


@pytest.mark.parametrize("stack", STACKS)
def test_the_function_is_configured_for_its_stack(aws: dict[str, Any], stack: str) -> None:
    out = aws["outputs"][stack]
    config = aws["lambda"].get_function(FunctionName=out["LauncherFunctionName"])["Configuration"]
    variables = config["Environment"]["Variables"]
    assert variables["AIRLAUNCH_ECS_CLUSTER"] == variables["AIRLAUNCH_ECS_FAMILY_PREFIX"] == stack
    assert variables["AIRLAUNCH_RUN_ROLE_ARN"] == out["RunFilesRoleArn"]
    assert variables["AIRLAUNCH_BUCKET"] == out["BucketName"] and variables["AIRLAUNCH_BACKEND"] == "ecs"
    assert variables["AIRLAUNCH_ECS_SUBNETS"] == "subnet-1,subnet-2"
    assert config["Role"] == out["LauncherRoleArn"]  # moto reports every PackageType as Zip: see test_infra


def test_a_redeploy_without_changes_changes_nothing(aws: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    outputs = deploy(aws["cloudformation"], "al-dev", {}, lambda q: True, aws["template"], poll_seconds=1)
    assert outputs == aws["outputs"]["al-dev"]
    assert "No changes" in capsys.readouterr().out


def test_the_change_set_path_creates_every_catalog_task(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    params = {"LauncherImageUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/al-cs/launcher:1", "Subnets": "subnet-1"}
    deploy(aws["cloudformation"], "al-cs", params, lambda q: True, aws["template"], poll_seconds=1)
    printed = capsys.readouterr().out
    assert "(CREATE) for stack al-cs" in printed and "Stack al-cs created" in printed
    for name in CATALOG.tasks:
        assert f"{''.join(p.capitalize() for p in name.split('_'))}TaskDefinition" in printed
    families = aws["ecs"].list_task_definition_families(familyPrefix="al-cs-")["families"]
    assert sorted(families) == sorted(f"al-cs-{name}" for name in CATALOG.tasks)


@pytest.mark.parametrize("stack", STACKS)
def test_failed_task_events_go_to_the_stacks_queue(aws: dict[str, Any], stack: str) -> None:
    """What moto keeps of it: the queue, and the task stopped rule's dead-letter queue (moto has no
    EventInvokeConfig and keeps no queue policy: both are checked on the template in test_infra)."""
    url = aws["sqs"].get_queue_url(QueueName=f"{stack}-failed-events")["QueueUrl"]
    assert aws["outputs"][stack]["FailedEventsQueueUrl"].endswith(f"/{ACCOUNT}/{stack}-failed-events")
    arn = aws["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    resources = aws["cloudformation"].list_stack_resources(StackName=stack)["StackResourceSummaries"]
    [rule] = [r["PhysicalResourceId"] for r in resources if r["LogicalResourceId"] == "TaskStoppedRule"]
    [target] = aws["events"].list_targets_by_rule(Rule=rule.rsplit("/", 1)[-1])["Targets"]
    assert target["DeadLetterConfig"] == {"Arn": arn}
    assert target["Arn"].endswith(f":function:{stack}-launcher")
