"""infra/template.yaml passes cfn-lint and grants each role only what it needs; the deploy tool's own checks."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from airlaunch.aws_names import image_basename
from airlaunch.catalog import Catalog
from airlaunch.deploy.cloudformation import preview
from airlaunch.deploy.template import TemplateError, body, render
from airlaunch.launcher.backends.ecs import fargate_size
from airlaunch.launcher.settings import LauncherSettings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "infra" / "template.yaml"
CATALOG = Catalog.load(ROOT / "tasks" / "catalog.yaml")
TEMPLATE: dict[str, Any] = render(CATALOG)  # what `make deploy` deploys: the base plus the catalog's tasks
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
ROLES = ("AWS::IAM::Role", "AWS::IAM::ManagedPolicy")


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


@pytest.mark.parametrize("which", ["base", "rendered"])
def test_template_passes_cfn_lint(which: str, tmp_path: Path) -> None:
    path = TEMPLATE_PATH
    if which == "rendered":
        path = tmp_path / "template.json"
        path.write_text(body(TEMPLATE))
    out = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == ""


def test_no_role_has_wildcard_actions() -> None:
    for name, resource in RESOURCES.items():
        if resource["Type"] in ROLES:
            for statement in _statements(name):
                for action in _actions(statement):
                    denied = statement["Effect"] == "Deny"
                    assert denied or (action != "*" and not action.endswith(":*")), (name, action)


def test_airflow_may_invoke_the_launcher_and_read_results_and_nothing_else() -> None:
    statements = _statements("AirflowRole")
    actions = {a for s in statements for a in _actions(s)}
    hear = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl"}
    assert actions == {"lambda:InvokeFunction", "s3:GetObject", "s3:ListBucket", "s3:PutObject", *hear}
    [write] = _granting("AirflowRole", "s3:PutObject")  # timings.json, what Airflow saw of a try, and nothing else
    assert [_sub(r) for r in _resources(write)] == ["${ResultsBucket.Arn}/${KeyPrefix}/*/timings.json"]
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
    assert sorted(_sub(r) for r in _resources(run)) == sorted(
        f"arn:${{AWS::Partition}}:ecs:${{AWS::Region}}:${{AWS::AccountId}}:task-definition/${{AWS::StackName}}-{name}:*"
        for name in CATALOG.tasks
    )
    assert _sub(run["Condition"]["ArnEquals"]["ecs:cluster"]).endswith(":cluster/${AWS::StackName}")
    for action in ("ecs:DescribeTasks", "ecs:StopTask", "ecs:TagResource"):
        [statement] = _granting("LauncherRole", action)
        assert [_sub(r) for r in _resources(statement)] == [
            "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task/${AWS::StackName}/*"
        ]
    [listing] = _granting("LauncherRole", "ecs:ListTasks")
    assert "ecs:cluster" in listing["Condition"]["ArnEquals"]


def test_launcher_passes_only_the_execution_role_and_the_catalog_task_roles_to_ecs() -> None:
    [passing] = _granting("LauncherRole", "iam:PassRole")
    roles = [{"Fn::GetAtt": ["TaskExecutionRole", "Arn"]}]
    roles += [{"Fn::GetAtt": [f"{_lid(name)}TaskRole", "Arn"]} for name in sorted(CATALOG.tasks)]
    assert _resources(passing) == roles
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}


def _lid(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))


def test_only_known_read_only_actions_use_any_resource() -> None:
    allowed = {"ecr:GetAuthorizationToken", "ecs:ListTasks", "ecs:DescribeTaskDefinition"}
    for name, resource in RESOURCES.items():
        if resource["Type"] in ROLES:
            for statement in _statements(name):
                if "*" in _resources(statement) and statement["Effect"] == "Allow":
                    assert set(_actions(statement)) <= allowed, (name, statement)


def test_s3_access_stays_under_the_results_prefix() -> None:
    for role in ("LauncherRole", "AirflowRole"):
        for statement in _statements(role):
            objects = [a for a in _actions(statement) if a.startswith("s3:") and a != "s3:ListBucket"]
            if objects:
                for resource in _resources(statement):  # the runs, or (the launcher) their sessions and cache
                    allowed = tuple(f"${{ResultsBucket.Arn}}/${{KeyPrefix}}{s}/" for s in ("", "-sessions", "-cache"))
                    assert _sub(resource).startswith(allowed if role == "LauncherRole" else allowed[:1]), role


def test_a_task_reaches_only_its_own_run_files_through_the_tagged_run_role() -> None:
    run = "/${aws:PrincipalTag/airlaunch-dag}/${aws:PrincipalTag/airlaunch-run}/${aws:PrincipalTag/airlaunch-task}"
    run += "/${aws:PrincipalTag/airlaunch-map}/${aws:PrincipalTag/airlaunch-try}/"
    read, renewal = _granting("RunFilesRole", "s3:GetObject")
    [write] = _granting("RunFilesRole", "s3:PutObject")
    bucket = [{"Fn::GetAtt": ["ResultsBucket", "Arn"]}, "/", {"Ref": "KeyPrefix"}]
    assert _resources(read) == [{"Fn::Join": ["", [*bucket, f"{run}{name}"]]} for name in ("params.yaml", "stop.json")]
    assert _resources(write) == [{"Fn::Join": ["", [*bucket, f"{run}*"]]}]
    assert _resources(renewal) == [{"Fn::Join": ["", [*bucket, f"-sessions{run}renewal.json"]]}]
    actions = {a for s in _statements("RunFilesRole") for a in _actions(s)}
    assert actions == {"s3:GetObject", "s3:PutObject"}, "no STS: a run session cannot renew itself"
    [trust] = RESOURCES["RunFilesRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": {"Fn::GetAtt": ["LauncherRole", "Arn"]}}, "only the launcher assumes it"
    assert trust["Condition"]["ForAllValues:StringEquals"]["sts:TransitiveTagKeys"] == [
        "airlaunch-dag", "airlaunch-run", "airlaunch-task", "airlaunch-map", "airlaunch-try"
    ]  # fmt: skip
    for name in CATALOG.tasks:  # a task's own role starts with no rights at all
        assert "Policies" not in RESOURCES[f"{_lid(name)}TaskRole"]["Properties"]
        assert "ManagedPolicyArns" not in RESOURCES[f"{_lid(name)}TaskRole"]["Properties"]


def test_results_bucket_is_private_encrypted_and_expires_runs() -> None:
    bucket = RESOURCES["ResultsBucket"]["Properties"]
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in r}
    assert set(rules) == {"expire-runs", "expire-run-sessions", "expire-cache"}
    expire, sessions, cache = rules["expire-runs"], rules["expire-run-sessions"], rules["expire-cache"]
    assert expire["ExpirationInDays"] == {"Ref": "RetentionDays"} and _sub(expire["Prefix"]) == "${KeyPrefix}/"
    assert sessions["ExpirationInDays"] == 1 and _sub(sessions["Prefix"]) == "${KeyPrefix}-sessions/"
    assert cache["ExpirationInDays"] == {"Ref": "RetentionDays"} and _sub(cache["Prefix"]) == "${KeyPrefix}-cache/"


def test_every_catalog_task_has_its_own_task_definition_role_and_log_group() -> None:
    definitions = [r["Properties"] for r in RESOURCES.values() if r["Type"] == "AWS::ECS::TaskDefinition"]
    assert len(definitions) == len(CATALOG.tasks)
    for name, spec in CATALOG.tasks.items():
        lid = _lid(name)
        definition = RESOURCES[f"{lid}TaskDefinition"]["Properties"]
        assert _sub(definition["Family"]) == f"${{AWS::StackName}}-{name}"
        assert definition["RequiresCompatibilities"] == ["FARGATE"] and definition["NetworkMode"] == "awsvpc"
        assert (int(definition["Cpu"]), int(definition["Memory"])) == fargate_size(spec.cpu, spec.memory_mib)
        assert definition["RuntimePlatform"]["CpuArchitecture"] == spec.architecture.upper()
        assert definition["TaskRoleArn"] == {"Fn::GetAtt": [f"{lid}TaskRole", "Arn"]}
        assert definition["ExecutionRoleArn"] == {"Fn::GetAtt": ["TaskExecutionRole", "Arn"]}
        [container] = definition["ContainerDefinitions"]
        assert container["Name"] == "task" and container["Essential"] is True
        assert container["Command"] == spec.runtime_args()
        assert _sub(container["Image"]).endswith(f"/${{AWS::StackName}}/{image_basename(spec.image)}:latest")
        assert container["LogConfiguration"]["LogDriver"] == "awslogs"
        assert container["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": f"{lid}LogGroup"}
        group = RESOURCES[f"{lid}LogGroup"]["Properties"]["LogGroupName"]
        assert _sub(group) == f"/airlaunch/${{AWS::StackName}}/tasks/{name}"


def test_the_execution_role_pulls_exactly_the_catalog_images_and_writes_their_logs() -> None:
    [pull] = _granting("TaskExecutionRole", "ecr:BatchGetImage")
    repositories = sorted({image_basename(spec.image) for spec in CATALOG.tasks.values()})
    assert [_sub(r) for r in _resources(pull)] == [
        f"arn:${{AWS::Partition}}:ecr:${{AWS::Region}}:${{AWS::AccountId}}:repository/${{AWS::StackName}}/{r}"
        for r in repositories
    ]
    [logs] = _granting("TaskExecutionRole", "logs:PutLogEvents")
    assert len(_resources(logs)) == len(CATALOG.tasks)
    assert all("/airlaunch/${AWS::StackName}/tasks/" in _sub(r) for r in _resources(logs))


def test_a_new_catalog_entry_gets_its_own_image_definition_and_grants() -> None:
    data = yaml.safe_load((ROOT / "tasks" / "catalog.yaml").read_text())
    data["tasks"]["my-model"] = {"image": "acme/my-model:2.0", "command": ["python", "/m.py"], "cpu": 2}
    data["tasks"]["my-model"] |= {"memory_mib": 8192, "architecture": "arm64", "max_memory_mib": 8192}
    rendered = render(Catalog.from_dict(data), image_tags={"acme/my-model:2.0": "sha-abc"})
    definition = rendered["Resources"]["MyModelTaskDefinition"]["Properties"]
    assert (definition["Cpu"], definition["Memory"], definition["RuntimePlatform"]["CpuArchitecture"]) == (
        "2048", "8192", "ARM64"
    )  # fmt: skip
    assert _sub(definition["ContainerDefinitions"][0]["Image"]).endswith("/${AWS::StackName}/my-model:sha-abc")
    launcher = rendered["Resources"]["LauncherRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    [run] = [s for s in launcher if s["Sid"] == "RunCatalogTasks"]
    assert any(_sub(r).endswith("task-definition/${AWS::StackName}-my-model:*") for r in run["Resource"])
    execution = rendered["Resources"]["TaskExecutionPolicy"]["Properties"]["PolicyDocument"]
    [pull] = [s for s in execution["Statement"] if s["Sid"] == "PullCatalogImages"]
    assert any(_sub(r).endswith("repository/${AWS::StackName}/my-model") for r in pull["Resource"])
    [assertion] = rendered["Rules"]["FargateSpotHasNoArm64"]["Assertions"]
    assert (
        "Fargate Spot runs no ARM64 tasks" in assertion["AssertDescription"]
        and "my-model" in assertion["AssertDescription"]
    )
    assert "FargateSpotHasNoArm64" not in TEMPLATE.get("Rules", {}), "the reference tasks are x86_64"


def test_two_images_that_would_share_a_repository_are_refused() -> None:
    clash = {"a": {"image": "x/tasks:1", "command": ["c"]}, "b": {"image": "y/tasks:1", "command": ["c"]}}
    with pytest.raises(TemplateError, match="would share the ECR repository <stack>/tasks"):
        render(Catalog.from_dict({"tasks": clash}))


def test_every_name_derives_from_the_stack_name() -> None:
    named = {
        "AWS::ECS::Cluster": "ClusterName",
        "AWS::ECS::TaskDefinition": "Family",
        "AWS::Logs::LogGroup": "LogGroupName",
        "AWS::SQS::Queue": "QueueName",
        "AWS::Lambda::Function": "FunctionName",
        "AWS::IAM::Role": "RoleName",
    }
    seen = 0
    for name, resource in RESOURCES.items():
        key = named.get(resource["Type"])
        value = resource["Properties"].get(key) if key else None
        if value is not None:
            assert "${AWS::StackName}" in json.dumps(value) or value == {"Ref": "AWS::StackName"}, name
            seen += 1
    assert seen >= 3 + 2 * len(CATALOG.tasks)


def test_results_survive_the_stack_but_not_a_failed_first_create() -> None:
    assert RESOURCES["ResultsBucket"]["DeletionPolicy"] == "RetainExceptOnCreate"
    assert RESOURCES["ResultsBucket"]["UpdateReplacePolicy"] == "Retain"


def test_vpc_endpoints_cover_what_a_task_reaches_and_are_optional() -> None:
    endpoints = {
        _sub(r["Properties"]["ServiceName"]).rsplit(".", 1)[-1]
        if r["Properties"]["VpcEndpointType"] == "Gateway"
        else _sub(r["Properties"]["ServiceName"]).split("${AWS::Region}.", 1)[1]: r
        for r in RESOURCES.values()
        if r["Type"] == "AWS::EC2::VPCEndpoint"
    }
    assert set(endpoints) == {"s3", "ecr.api", "ecr.dkr", "logs", "sts"}
    assert {r["Condition"] for r in endpoints.values()} == {"CreateEndpoints"}
    assert all(r["Properties"]["PrivateDnsEnabled"] for k, r in endpoints.items() if k != "s3")
    # An interface endpoint takes one subnet per Availability Zone: the deploy tool picks them (EndpointSubnets).
    assert {json.dumps(r["Properties"]["SubnetIds"]) for k, r in endpoints.items() if k != "s3"} == {
        json.dumps({"Ref": "EndpointSubnets"})
    }
    assertions = TEMPLATE["Rules"]["EndpointsNeedTheirVpc"]["Assertions"]
    assert {"Fn::Not": [{"Fn::Contains": [{"Ref": "EndpointSubnets"}, ""]}]} in [a["Assert"] for a in assertions]


def test_fargate_spot_is_a_documented_choice() -> None:
    assert TEMPLATE["Parameters"]["CapacityProvider"]["AllowedValues"] == ["", "FARGATE", "FARGATE_SPOT"]


def test_launcher_function_is_an_image_configured_like_config_py() -> None:
    function = RESOURCES["LauncherFunction"]["Properties"]
    assert function["PackageType"] == "Image" and function["Code"] == {"ImageUri": {"Ref": "LauncherImageUri"}}
    variables = function["Environment"]["Variables"]
    known = set(re.findall(r'"(AIRLAUNCH_[A-Z_]+)"', inspect.getsource(LauncherSettings)))
    assert set(variables) <= known, f"not read by LauncherSettings: {set(variables) - known}"
    assert variables["AIRLAUNCH_BACKEND"] == "ecs"
    assert variables["AIRLAUNCH_BUCKET"] == {"Ref": "ResultsBucket"}
    assert {n for n in known if n.startswith("AIRLAUNCH_ECS_")} <= set(variables)


def test_ecs_resources_are_skipped_when_localstack_has_none() -> None:
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


def test_every_status_file_is_announced_on_the_status_queue() -> None:
    [config] = RESOURCES["ResultsBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert config["Queue"] == {"Fn::GetAtt": ["StatusQueue", "Arn"]} and config["Event"] == "s3:ObjectCreated:*"
    rules = {rule["Name"]: rule["Value"] for rule in config["Filter"]["S3Key"]["Rules"]}
    assert rules == {"prefix": {"Fn::Sub": "${KeyPrefix}/"}, "suffix": "status.json"}
    [send] = RESOURCES["StatusQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert send["Principal"] == {"Service": "s3.amazonaws.com"} and send["Action"] == "sqs:SendMessage"
    assert RESOURCES["ResultsBucket"]["DependsOn"] == "StatusQueuePolicy"


def test_task_stopped_events_that_fail_land_in_a_queue_the_reaper_drains() -> None:
    """An event EventBridge cannot deliver, and one whose handling failed Lambda's retries, are kept."""
    [target] = RESOURCES["TaskStoppedRule"]["Properties"]["Targets"]
    queue = {"Fn::GetAtt": ["FailedEventsQueue", "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": queue} and target["RetryPolicy"]["MaximumRetryAttempts"] == 185
    assert _sub(RESOURCES["FailedEventsQueue"]["Properties"]["QueueName"]) == "${AWS::StackName}-failed-events"
    [send] = RESOURCES["FailedEventsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert (send["Principal"], send["Action"], send["Resource"]) == (
        {"Service": "events.amazonaws.com"}, "sqs:SendMessage", queue
    )  # fmt: skip
    assert send["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["TaskStoppedRule", "Arn"]}}}
    config = RESOURCES["LauncherAsyncFailures"]
    assert config["Type"] == "AWS::Lambda::EventInvokeConfig" and config["Condition"] == "WatchTasks"
    properties = config["Properties"]
    assert properties["FunctionName"] == {"Ref": "LauncherFunction"} and properties["Qualifier"] == "$LATEST"
    assert properties["MaximumRetryAttempts"] == 2
    assert properties["DestinationConfig"] == {"OnFailure": {"Destination": queue}}
    # Lambda sends the record with the function's role; the reaper reads and deletes, nothing else.
    [record] = _granting("LauncherRole", "sqs:SendMessage")
    [redrive] = _granting("LauncherRole", "sqs:ReceiveMessage")
    assert _resources(record) == _resources(redrive) == [queue]
    assert set(_actions(redrive)) == {"sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:DeleteMessage"}
