"""Render the stack's template: infra/template.yaml plus what the task catalog asks for.

CloudFormation has no loops, and the catalog changes more often than the infrastructure, so
the part that follows the catalog is generated rather than written by hand: for every
catalog task a task definition (its image, cpu, memory, architecture, command), a task
role of its own and a log group; and the grants that must list exactly those (the
execution role pulls exactly the catalog's repositories, the launcher runs exactly these
families and passes exactly these roles). An entry with secrets also gets the task
definition's ``secrets`` and an execution role of its own that reads exactly them, and the
launcher may look at (never read) every catalog secret (airlaunch.deploy.secrets). A new
catalog entry thus reaches AWS with ``make deploy`` alone. Statements to complete carry a
``GENERATED`` comment in the base template and are found by their Sid.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from airlaunch.aws_names import CONTAINER_NAME, TASK_LOG_STREAM_PREFIX, image_basename, task_log_group
from airlaunch.catalog import Catalog, TaskSpec
from airlaunch.deploy import secrets
from airlaunch.launcher.backends.ecs import fargate_size

REPO = Path(__file__).resolve().parents[3]
BASE_TEMPLATE = REPO / "infra" / "template.yaml"
MAX_TEMPLATE_BODY = 51_200  # bytes CloudFormation accepts inline (TemplateBody)
_ARCH = {"x86_64": "X86_64", "arm64": "ARM64"}
_ARN = "arn:${AWS::Partition}"
_AT = "${AWS::Region}:${AWS::AccountId}"


class TemplateError(ValueError):
    """The catalog cannot be turned into a deployable template; the message says why."""


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (!Ref, !Sub, ...) turned into their long forms."""


def _construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct)


def load_base(path: Path = BASE_TEMPLATE) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_CfnLoader)  # a SafeLoader subclass


def logical_id(task: str) -> str:
    """task_one -> TaskOne: CloudFormation logical ids are alphanumeric."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_-]", task) if part)


def render(
    catalog: Catalog,
    image_tags: dict[str, str] | None = None,
    base: dict[str, Any] | None = None,
    secret_arns: dict[str, str] | None = None,
) -> dict:
    """The full template for this catalog; ``image_tags`` maps a catalog image to the tag pushed to ECR,
    ``secret_arns`` a Secrets Manager secret the catalog names by name to its full ARN
    (airlaunch.deploy.secrets.resolve_arns)."""
    template = json.loads(json.dumps(base or load_base()))  # a deep copy, whatever the caller keeps
    resources: dict[str, Any] = template["Resources"]
    tags = image_tags or {}
    arns = secret_arns or {}
    ids: dict[str, str] = {}
    for name, spec in sorted(catalog.tasks.items()):
        lid = logical_id(name)
        if lid in ids.values():
            clash = next(n for n, i in ids.items() if i == lid)
            raise TemplateError(f"catalog tasks {clash!r} and {name!r} differ only by '_' and '-'; rename one")
        ids[name] = lid
        resources[f"{lid}LogGroup"] = _log_group(name)
        resources[f"{lid}TaskRole"] = _task_role(name)
        try:
            resources[f"{lid}TaskDefinition"] = _task_definition(spec, lid, tags.get(spec.image, "latest"), arns)
            if spec.secrets:
                resources[f"{lid}ExecutionRole"] = secrets.execution_role(resources["TaskExecutionRole"], spec, arns)
        except secrets.SecretLookupError as exc:
            raise TemplateError(f"catalog task {name!r}: {exc}") from exc
    _check_repositories(catalog)
    repositories = sorted({image_basename(spec.image) for spec in catalog.tasks.values()})
    names = sorted(ids)
    pull = [_sub(f"{_ARN}:ecr:{_AT}:repository/${{AWS::StackName}}/{r}") for r in repositories]
    _fill(resources, "TaskExecutionPolicy", "PullCatalogImages", pull)
    _fill(resources, "LauncherRole", "ReadImageDigests", pull)  # the result cache's keys (backends.ecs_images)
    _fill(resources, "TaskExecutionPolicy", "WriteTaskLogs", [_sub(_log_streams(name)) for name in names])
    families = [_sub(f"{_ARN}:ecs:{_AT}:task-definition/${{AWS::StackName}}-{name}:*") for name in names]
    _fill(resources, "LauncherRole", "RunCatalogTasks", families)
    roles = [{"Fn::GetAtt": [f"{ids[name]}TaskRole", "Arn"]} for name in names]
    roles += [{"Fn::GetAtt": [f"{ids[n]}ExecutionRole", "Arn"]} for n in names if catalog.tasks[n].secrets]
    _fill(resources, "LauncherRole", "PassTaskRoles", [{"Fn::GetAtt": ["TaskExecutionRole", "Arn"]}, *roles])
    _policy(resources, "LauncherRole").extend(secrets.check_statements(catalog, arns))
    resources.update(secrets.endpoints(catalog, resources["EcrApiEndpoint"]))
    arm = sorted(name for name, spec in catalog.tasks.items() if spec.architecture == "arm64")
    if arm:
        template.setdefault("Rules", {})["FargateSpotHasNoArm64"] = {
            "Assertions": [
                {
                    "Assert": {"Fn::Not": [{"Fn::Equals": [{"Ref": "CapacityProvider"}, "FARGATE_SPOT"]}]},
                    "AssertDescription": f"Fargate Spot runs no ARM64 tasks, and catalog tasks {arm} are arm64: "
                    "leave CapacityProvider empty or FARGATE, or build those tasks for x86_64",
                }
            ]
        }
    return template


def body(template: dict[str, Any]) -> str:
    """The template as CloudFormation receives it: compact JSON, refused when over the inline limit."""
    text = json.dumps(template, separators=(",", ":"), sort_keys=False)
    if len(text.encode()) > MAX_TEMPLATE_BODY:
        raise TemplateError(
            f"the rendered template is {len(text.encode())} bytes, over CloudFormation's {MAX_TEMPLATE_BODY}-byte "
            "limit for an inline template: deploy fewer catalog tasks per stack (a second stack per team works)"
        )
    return text


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def _log_streams(task: str) -> str:
    return f"{_ARN}:logs:{_AT}:log-group:{task_log_group('${AWS::StackName}', task)}:log-stream:*"


def _policy(resources: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The statements of a managed policy, or of a role's (first) inline policy."""
    properties = resources[name]["Properties"]
    document = (
        properties["PolicyDocument"] if "PolicyDocument" in properties else properties["Policies"][0]["PolicyDocument"]
    )
    statements: list[dict[str, Any]] = document["Statement"]
    return statements


def _fill(resources: dict[str, Any], name: str, sid: str, resource: list[Any]) -> None:
    statements = _policy(resources, name)
    [statement] = [s for s in statements if s.get("Sid") == sid]
    statement["Resource"] = resource


def _check_repositories(catalog: Catalog) -> None:
    seen: dict[str, str] = {}
    for spec in catalog.tasks.values():
        base = image_basename(spec.image)
        other = seen.setdefault(base, spec.image.rsplit(":", 1)[0])
        if other != spec.image.rsplit(":", 1)[0]:
            raise TemplateError(
                f"catalog images {other!r} and {spec.image!r} would share the ECR repository <stack>/{base}; "
                "give one of them another name"
            )


def _log_group(task: str) -> dict[str, Any]:
    return {
        "Type": "AWS::Logs::LogGroup",
        "Properties": {
            "LogGroupName": _sub(task_log_group("${AWS::StackName}", task)),  # the Airflow log link's too
            "RetentionInDays": {"Ref": "LogRetentionDays"},
        },
    }


def _task_role(task: str) -> dict[str, Any]:
    """The task's own identity: no rights to start with (its run files come through RunFilesRole).

    Attach what your task's code needs (its input data, say) to this role.
    """
    trust = {
        "Effect": "Allow",
        "Principal": {"Service": "ecs-tasks.amazonaws.com"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
    }
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": _sub(f"airlaunch ${{AWS::StackName}} - the identity of catalog task {task}"),
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [trust]},
        },
    }


def _task_definition(spec: TaskSpec, lid: str, tag: str, arns: dict[str, str]) -> dict[str, Any]:
    cpu, memory = fargate_size(spec.cpu, spec.memory_mib)
    image = f"${{AWS::AccountId}}.dkr.ecr.${{AWS::Region}}.${{AWS::URLSuffix}}/${{AWS::StackName}}/{image_basename(spec.image)}:{tag}"  # noqa: E501
    container = {
        "Name": CONTAINER_NAME,
        "Image": _sub(image),
        "Essential": True,
        "Memory": memory,  # the whole task's: one container per task (launches override both)
        "StopTimeout": 30,
        "Command": spec.runtime_args(),
        "LogConfiguration": {
            "LogDriver": "awslogs",
            "Options": {
                "awslogs-group": {"Ref": f"{lid}LogGroup"},
                "awslogs-region": {"Ref": "AWS::Region"},
                "awslogs-stream-prefix": TASK_LOG_STREAM_PREFIX,  # streams <prefix>/<container>/<ECS task id>
            },
        },
    }
    if spec.secrets:  # fetched by ECS's agent with the entry's own execution role; never in RunTask's overrides
        container["Secrets"] = secrets.container_secrets(spec, arns)
    execution = f"{lid}ExecutionRole" if spec.secrets else "TaskExecutionRole"
    return {
        "Type": "AWS::ECS::TaskDefinition",
        "Condition": "CreateEcs",
        "Properties": {
            "Family": _sub(f"${{AWS::StackName}}-{spec.name}"),
            "RequiresCompatibilities": ["FARGATE"],
            "NetworkMode": "awsvpc",
            "Cpu": str(cpu),
            "Memory": str(memory),
            "RuntimePlatform": {"OperatingSystemFamily": "LINUX", "CpuArchitecture": _ARCH[spec.architecture]},
            "ExecutionRoleArn": {"Fn::GetAtt": [execution, "Arn"]},
            "TaskRoleArn": {"Fn::GetAtt": [f"{lid}TaskRole", "Arn"]},
            "ContainerDefinitions": [container],
        },
    }
