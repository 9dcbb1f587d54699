"""The catalog's secrets in the rendered template: valueFrom in ECS's documented forms, an execution role per entry
that reads exactly its own secrets, a launcher that may only look at them; and `make deploy` looking up a secret's
full ARN (botocore's Stubber with DescribeSecret's documented answers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from airlaunch.catalog import Catalog
from airlaunch.deploy import cli
from airlaunch.deploy.errors import DeployError
from airlaunch.deploy.secrets import names_to_resolve, resolve_arns
from airlaunch.deploy.template import TemplateError, body, render

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "aws"
DESCRIBED = json.loads((FIXTURES / "secretsmanager-describe-secret.json").read_text())
ARN = DESCRIBED["current"]["ARN"]  # arn:aws:secretsmanager:us-west-2:123456789012:secret:MyTestDatabaseSecret-a1b2c3
OTHER_ARN = "arn:aws:secretsmanager:us-west-2:123456789012:secret:other/api-Zz9Yy8"
KEY = "1234abcd-12ab-34cd-56ef-1234567890ab"
ENTRIES = yaml.safe_load((ROOT / "tasks" / "catalog.yaml").read_text())
ENTRIES["tasks"]["db_report"] = {
    "command": ["python", "/opt/tasks/diagnostic.py"],
    "secrets": {
        "DB_PASSWORD": {"secretsmanager": "MyTestDatabaseSecret", "json_key": "password"},
        "API_TOKEN": {"ssm": "/MyService/ApiToken", "kms_key": KEY},
    },
}
ENTRIES["tasks"]["api_sync"] = {"command": ["python", "/x.py"], "secrets": {"TOKEN": {"secretsmanager": OTHER_ARN}}}
CATALOG = Catalog.from_dict(ENTRIES)
TEMPLATE = render(CATALOG, secret_arns={"MyTestDatabaseSecret": ARN})
RESOURCES = TEMPLATE["Resources"]
PARAMETER = {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/MyService/ApiToken"}


def _statements(role: str) -> list[dict[str, Any]]:
    return [s for p in RESOURCES[role]["Properties"].get("Policies", []) for s in p["PolicyDocument"]["Statement"]]


def test_value_from_is_in_the_forms_ecs_documents() -> None:
    [container] = RESOURCES["DbReportTaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert container["Secrets"] == [
        {"Name": "API_TOKEN", "ValueFrom": PARAMETER},
        {"Name": "DB_PASSWORD", "ValueFrom": f"{ARN}:password::"},  # arn:...:secret:name-AbCdEf:json-key::
    ]
    [other] = RESOURCES["ApiSyncTaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert other["Secrets"] == [{"Name": "TOKEN", "ValueFrom": OTHER_ARN}]
    assert "Environment" not in container, "no value, nor a secret's name, in the plain environment"
    [plain] = RESOURCES["DiagnosticTaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert "Secrets" not in plain


def test_each_entry_with_secrets_has_an_execution_role_that_reads_exactly_its_own() -> None:
    definition = RESOURCES["DbReportTaskDefinition"]["Properties"]
    assert definition["ExecutionRoleArn"] == {"Fn::GetAtt": ["DbReportExecutionRole", "Arn"]}
    role = RESOURCES["DbReportExecutionRole"]["Properties"]
    assert role["ManagedPolicyArns"] == [{"Ref": "TaskExecutionPolicy"}], "pull, logs, run session files: shared"
    assert role["AssumeRolePolicyDocument"] == RESOURCES["TaskExecutionRole"]["Properties"]["AssumeRolePolicyDocument"]
    assert _statements("DbReportExecutionRole") == [
        {"Sid": "ReadTaskSecrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": [ARN]},
        {"Sid": "ReadTaskParameters", "Effect": "Allow", "Action": "ssm:GetParameters", "Resource": [PARAMETER]},
        {
            "Sid": "DecryptTaskSecrets",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": [{"Fn::Sub": f"arn:${{AWS::Partition}}:kms:${{AWS::Region}}:${{AWS::AccountId}}:key/{KEY}"}],
            "Condition": {"StringEquals": {"kms:ViaService": [{"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"}]}},
        },
    ]
    assert [s["Resource"] for s in _statements("ApiSyncExecutionRole")] == [[OTHER_ARN]], "never another's"
    assert "Policies" not in RESOURCES["TaskExecutionRole"]["Properties"], "the shared role reads no secret"
    shared = RESOURCES["DiagnosticTaskDefinition"]["Properties"]["ExecutionRoleArn"]
    assert shared == {"Fn::GetAtt": ["TaskExecutionRole", "Arn"]}


def test_the_launcher_may_look_at_the_catalog_secrets_and_pass_their_roles_but_read_none() -> None:
    launcher = {s["Sid"]: s for s in _statements("LauncherRole")}
    assert launcher["CheckCatalogSecrets"]["Action"] == "secretsmanager:DescribeSecret"
    assert launcher["CheckCatalogSecrets"]["Resource"] == [OTHER_ARN, ARN]
    assert launcher["CheckCatalogParameters"] == {
        "Sid": "CheckCatalogParameters", "Effect": "Allow", "Action": "ssm:GetParameter", "Resource": [PARAMETER]
    }  # fmt: skip
    actions = {a for s in launcher.values() for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert not {"secretsmanager:GetSecretValue", "ssm:GetParameters", "kms:Decrypt"} & actions
    passed = launcher["PassTaskRoles"]["Resource"]
    assert {"Fn::GetAtt": ["DbReportExecutionRole", "Arn"]} in passed
    assert {"Fn::GetAtt": ["ApiSyncExecutionRole", "Arn"]} in passed


def test_private_subnets_get_endpoints_for_the_secret_services_the_catalog_uses() -> None:
    for lid, service in (("SecretsManagerEndpoint", "secretsmanager"), ("SsmEndpoint", "ssm")):
        endpoint = RESOURCES[lid]
        assert endpoint["Condition"] == "CreateEndpoints" and endpoint["Properties"]["VpcEndpointType"] == "Interface"
        assert endpoint["Properties"]["ServiceName"] == {"Fn::Sub": f"com.amazonaws.${{AWS::Region}}.{service}"}
        assert endpoint["Properties"]["SubnetIds"] == {"Ref": "EndpointSubnets"}
    only_ssm = Catalog.from_dict({"tasks": {"t": {"image": "i", "command": ["x"], "secrets": {"A": {"ssm": "/a"}}}}})
    rendered = render(only_ssm)["Resources"]
    assert "SsmEndpoint" in rendered and "SecretsManagerEndpoint" not in rendered


def test_a_catalog_without_secrets_renders_no_secret_grant() -> None:
    rendered = render(Catalog.load(ROOT / "tasks" / "catalog.yaml"))
    text = body(rendered)
    assert "secretsmanager" not in text and "ssm:" not in text and "kms:" not in text
    assert not [n for n in rendered["Resources"] if n.endswith("ExecutionRole") and n != "TaskExecutionRole"]
    assert not {"SecretsManagerEndpoint", "SsmEndpoint"} & set(rendered["Resources"])


def test_the_rendered_template_with_secrets_passes_cfn_lint(tmp_path: Path) -> None:
    path = tmp_path / "template.json"
    path.write_text(body(TEMPLATE))
    out = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), str(path)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == "", out.stdout + out.stderr


def _secretsmanager(*answers: tuple[str, dict[str, Any]]) -> Any:
    client = boto3.client("secretsmanager", region_name="us-west-2", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    for name, answer in answers:
        if "Code" in answer:
            stubber.add_client_error("describe_secret", answer["Code"], answer["Message"], 400, {"SecretId": name})
        else:
            stubber.add_response("describe_secret", answer, {"SecretId": name})
    stubber.activate()
    return client


def test_deploy_looks_up_each_named_secret_once_and_stops_at_a_missing_one() -> None:
    assert names_to_resolve(CATALOG) == ["MyTestDatabaseSecret"], "a full ARN needs no look-up"
    found = resolve_arns(_secretsmanager(("MyTestDatabaseSecret", DESCRIBED["current"])), CATALOG)
    assert found == {"MyTestDatabaseSecret": ARN}
    with pytest.raises(DeployError) as caught:
        cli.secret_arns(_secretsmanager(("MyTestDatabaseSecret", DESCRIBED["not_found"])), CATALOG)
    assert str(caught.value).startswith(
        "Secrets Manager secret 'MyTestDatabaseSecret' of catalog task(s) ['db_report'] does not exist: create it"
    )
    with pytest.raises(TemplateError, match="catalog task 'db_report': the ARN of Secrets Manager secret"):
        render(CATALOG)
    assert cli.secret_arns(None, Catalog.load(ROOT / "tasks" / "catalog.yaml")) == {}, "nothing to look up: no call"
