"""infra/template.yaml passes cfn-lint and grants each role only what it needs; the deploy tool's own checks."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from airlaunch import config
from airlaunch.catalog import Catalog
from airlaunch.deploy import preview

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "infra" / "template.yaml"
TEMPLATE: dict[str, Any] = cfn_yaml.load(str(TEMPLATE_PATH))
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
CATALOG = Catalog.load(ROOT / "tasks" / "catalog.yaml")


def _statements(name: str) -> list[dict[str, Any]]:
    """Every Allow/Deny statement of a role's inline and attached (template) policies."""
    props = RESOURCES[name]["Properties"]
    documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
    if RESOURCES[name]["Type"] == "AWS::IAM::ManagedPolicy":
        documents.append(props["PolicyDocument"])
    for arn in props.get("ManagedPolicyArns", []):
        assert set(arn) == {"Ref"}, f"{name} attaches a policy from outside the template: {arn}"
        documents += [RESOURCES[arn["Ref"]]["Properties"]["PolicyDocument"]]
    return [s for d in documents for s in d["Statement"]]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def _resources(statement: dict[str, Any]) -> list[Any]:
    resource = statement["Resource"]
    return resource if isinstance(resource, list) else [resource]


def _granting(name: str, action: str) -> list[dict[str, Any]]:
    return [s for s in _statements(name) if s["Effect"] == "Allow" and action in _actions(s)]


def _sub(value: Any) -> str:
    assert isinstance(value, dict) and "Fn::Sub" in value, value
    return str(value["Fn::Sub"])


def test_template_passes_cfn_lint() -> None:
    out = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), str(TEMPLATE_PATH)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == ""


def test_no_role_has_wildcard_actions() -> None:
    for name, resource in RESOURCES.items():
        if resource["Type"] in ("AWS::IAM::Role", "AWS::IAM::ManagedPolicy"):
            for statement in _statements(name):
                for action in _actions(statement):
                    denied = statement["Effect"] == "Deny"
                    assert denied or (action != "*" and not action.endswith(":*")), (name, action)


def test_airflow_may_invoke_the_launcher_and_read_results_and_nothing_else() -> None:
    statements = _statements("AirflowRole")
    actions = {a for s in statements for a in _actions(s)}
    hear = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueUrl"}
    assert actions == {"lambda:InvokeFunction", "s3:GetObject", "s3:ListBucket", *hear}
    [sqs] = _granting("AirflowRole", "sqs:ReceiveMessage")
    assert _resources(sqs) == [{"Fn::GetAtt": ["StatusQueue", "Arn"]}]
    assert not [a for a in actions if a.startswith(("ecs:", "iam:", "ecr:"))]
    [invoke] = _granting("AirflowRole", "lambda:InvokeFunction")
    function_name = _sub(RESOURCES["LauncherFunction"]["Properties"]["FunctionName"])
    assert _resources(invoke) == [
        {"Fn::Sub": f"arn:${{AWS::Partition}}:lambda:${{AWS::Region}}:${{AWS::AccountId}}:function:{function_name}"}
    ]
    [read] = _granting("AirflowRole", "s3:GetObject")
    assert [_sub(r) for r in _resources(read)] == ["${ResultsBucket.Arn}/${KeyPrefix}/*"]


def test_launcher_runs_only_catalog_task_definitions_in_its_cluster() -> None:
    [run] = _granting("LauncherRole", "ecs:RunTask")
    families = {spec.ecs.task_definition for spec in CATALOG.tasks.values() if spec.ecs}
    assert sorted(_sub(r) for r in _resources(run)) == sorted(
        f"arn:${{AWS::Partition}}:ecs:${{AWS::Region}}:${{AWS::AccountId}}:task-definition/{f}:*" for f in families
    )
    assert _sub(run["Condition"]["ArnEquals"]["ecs:cluster"]).endswith(":cluster/${ClusterName}")
    for action in ("ecs:DescribeTasks", "ecs:StopTask", "ecs:TagResource"):
        [statement] = _granting("LauncherRole", action)
        assert [_sub(r) for r in _resources(statement)] == [
            "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task/${ClusterName}/*"
        ]
    [listing] = _granting("LauncherRole", "ecs:ListTasks")
    assert "ecs:cluster" in listing["Condition"]["ArnEquals"]


def test_launcher_passes_only_the_task_roles_to_ecs() -> None:
    [passing] = _granting("LauncherRole", "iam:PassRole")
    assert _resources(passing) == [{"Fn::GetAtt": ["TaskExecutionRole", "Arn"]}, {"Fn::GetAtt": ["TaskRole", "Arn"]}]
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}


def test_only_known_read_only_actions_use_any_resource() -> None:
    allowed = {"ecr:GetAuthorizationToken", "ecs:ListTasks", "ecs:DescribeTaskDefinition"}
    for name, resource in RESOURCES.items():
        if resource["Type"] in ("AWS::IAM::Role", "AWS::IAM::ManagedPolicy"):
            for statement in _statements(name):
                if "*" in _resources(statement) and statement["Effect"] == "Allow":
                    assert set(_actions(statement)) <= allowed, (name, statement)


def test_s3_access_stays_under_the_results_prefix() -> None:
    for role in ("LauncherRole", "TaskRole", "AirflowRole"):
        for statement in _statements(role):
            objects = [a for a in _actions(statement) if a.startswith("s3:") and a != "s3:ListBucket"]
            if objects:
                assert [_sub(r) for r in _resources(statement)] == ["${ResultsBucket.Arn}/${KeyPrefix}/*"], role
    task_actions = {a for s in _statements("TaskRole") for a in _actions(s)}
    assert task_actions == {"s3:GetObject", "s3:PutObject"}, "the task's own code needs no more"


def test_results_bucket_is_private_encrypted_and_expires_runs() -> None:
    bucket = RESOURCES["ResultsBucket"]["Properties"]
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    [expire] = [r for r in bucket["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in r]
    assert expire["ExpirationInDays"] == {"Ref": "RetentionDays"} and _sub(expire["Prefix"]) == "${KeyPrefix}/"


def test_every_catalog_family_has_a_fargate_task_definition_with_logs() -> None:
    definitions = {
        r["Properties"]["Family"]: r["Properties"]
        for r in RESOURCES.values()
        if r["Type"] == "AWS::ECS::TaskDefinition"
    }
    for spec in CATALOG.tasks.values():
        assert spec.ecs is not None, f"catalog task {spec.name} cannot run on ECS"
        definition = definitions[spec.ecs.task_definition]
        assert definition["RequiresCompatibilities"] == ["FARGATE"] and definition["NetworkMode"] == "awsvpc"
        [container] = [c for c in definition["ContainerDefinitions"] if c["Name"] == spec.ecs.container_name]
        assert container["Essential"] is True
        assert container["LogConfiguration"]["LogDriver"] == "awslogs"
        assert container["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": "TaskLogGroup"}


def test_launcher_function_is_an_image_configured_like_config_py() -> None:
    function = RESOURCES["LauncherFunction"]["Properties"]
    assert function["PackageType"] == "Image" and function["Code"] == {"ImageUri": {"Ref": "LauncherImageUri"}}
    variables = function["Environment"]["Variables"]
    known = set(re.findall(r'"(AIRLAUNCH_[A-Z_]+)"', inspect.getsource(config.LauncherSettings)))
    assert set(variables) <= known, f"not read by LauncherSettings: {set(variables) - known}"
    assert variables["AIRLAUNCH_BACKEND"] == "ecs"
    assert variables["AIRLAUNCH_BUCKET"] == {"Ref": "ResultsBucket"}
    assert {n for n in known if n.startswith("AIRLAUNCH_ECS_")} <= set(variables)


def test_ecs_and_ecr_resources_are_skipped_when_localstack_has_none() -> None:
    for name, resource in RESOURCES.items():
        if resource["Type"].startswith(("AWS::ECS::", "AWS::ECR::")):
            assert resource.get("Condition") == "CreateEcs", name
    assert TEMPLATE["Conditions"]["CreateEcs"] == {"Fn::Equals": [{"Ref": "CreateEcsResources"}, "true"]}


# -- the deploy tool's checks before it talks to CloudFormation -----------------------------------


def _deploy(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "AUTO_APPROVE"}
    return subprocess.run(
        [sys.executable, "-m", "airlaunch.deploy", *args],
        env={**keep, "AWS_EC2_METADATA_DISABLED": "true", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_deploy_without_credentials_says_what_to_do(tmp_path: Path) -> None:
    nowhere = str(tmp_path / "none")
    out = _deploy({"AWS_CONFIG_FILE": nowhere, "AWS_SHARED_CREDENTIALS_FILE": nowhere, "AWS_REGION": "eu-west-1"})
    assert out.returncode == 2
    assert "no AWS credentials found: run `aws configure`" in out.stderr and "make deploy" in out.stderr


def test_deploy_refuses_an_endpoint_override() -> None:
    out = _deploy({"AWS_ENDPOINT_URL": "http://127.0.0.1:4566", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"})
    assert out.returncode == 2 and "AWS_ENDPOINT_URL is set" in out.stderr and "deploy-localstack" in out.stderr


def test_bad_param_is_named() -> None:
    assert "--param 'Oops': expected KEY=VALUE" in _deploy({}, "--param", "Oops").stderr


def test_preview_is_a_table() -> None:
    change = {"ResourceChange": {"Action": "Modify", "LogicalResourceId": "LauncherFunction"}}
    change["ResourceChange"] |= {"ResourceType": "AWS::Lambda::Function", "Replacement": "False"}
    assert preview([change]).splitlines() == [
        "ACTION  RESOURCE          TYPE                   REPLACEMENT",
        "Modify  LauncherFunction  AWS::Lambda::Function  False",
    ]


@pytest.mark.parametrize("family", sorted({s.ecs.task_definition for s in CATALOG.tasks.values() if s.ecs}))
def test_catalog_family_is_in_the_run_task_grant(family: str) -> None:
    [run] = _granting("LauncherRole", "ecs:RunTask")
    assert any(f"task-definition/{family}:*" in _sub(r) for r in _resources(run))


def test_every_status_file_is_announced_on_the_status_queue() -> None:
    [config] = RESOURCES["ResultsBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert config["Queue"] == {"Fn::GetAtt": ["StatusQueue", "Arn"]} and config["Event"] == "s3:ObjectCreated:*"
    rules = {rule["Name"]: rule["Value"] for rule in config["Filter"]["S3Key"]["Rules"]}
    assert rules == {"prefix": {"Fn::Sub": "${KeyPrefix}/"}, "suffix": "status.json"}
    [send] = RESOURCES["StatusQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert send["Principal"] == {"Service": "s3.amazonaws.com"} and send["Action"] == "sqs:SendMessage"
    assert RESOURCES["ResultsBucket"]["DependsOn"] == "StatusQueuePolicy"
