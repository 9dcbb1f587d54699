"""Secrets by reference: the catalog's syntax, what a launch may not do, how a secret is read or only checked,
and the launch step that settles them before anything is written (moto for S3, Secrets Manager, SSM and KMS;
botocore's Stubber with AWS's documented answers, tests/fixtures/aws, where the metadata decides)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from airlaunch.catalog import Catalog, CatalogError
from airlaunch.launcher.backends.base import LaunchError, LiveTask, Started
from airlaunch.launcher.secrets import LaunchSecrets
from airlaunch.launcher.service import Launcher
from airlaunch.launcher.settings import LauncherSettings
from airlaunch.protocol import ENV_SECRET_NAMES, InvalidRequest, LaunchRequest, Overrides, RunIdentity
from airlaunch.secret_refs import SSM, SecretRef, SecretUnavailable, check_readable, parse_secrets, read_value

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "aws"
DESCRIBED = json.loads((FIXTURES / "secretsmanager-describe-secret.json").read_text())
PARAMETERS = json.loads((FIXTURES / "ssm-get-parameter.json").read_text())
VALUE = "s3cr3t-hunter2-value"
ENTRY = {
    "image": "airlaunch/reference-tasks:latest",
    "command": ["python", "/opt/tasks/diagnostic.py"],
    "secrets": {
        "DB_PASSWORD": {"secretsmanager": "app/db", "json_key": "password"},
        "API_TOKEN": {"ssm": "/app/api-token"},
    },
}
CATALOG = Catalog.from_dict({"tasks": {"with_secrets": ENTRY, "plain": {"image": "i", "command": ["x"]}}})
IDENTITY = RunIdentity("dag", "run", "task", -1, 1, "01a2330d-6f01-731e-b9b6-0f5b7b1e8ef4")


# -- the catalog's syntax ----------------------------------------------------------------------------


def test_an_entry_names_its_secrets_by_reference() -> None:
    spec = CATALOG.get("with_secrets")
    assert spec.secrets == {
        "DB_PASSWORD": SecretRef("DB_PASSWORD", "secretsmanager", "app/db", json_key="password"),
        "API_TOKEN": SecretRef("API_TOKEN", "ssm", "/app/api-token"),
    }
    assert CATALOG.get("plain").secrets == {}
    arn = "arn:aws:secretsmanager:us-west-2:123456789012:secret:MyTestDatabaseSecret-a1b2c3"
    key = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    refs = parse_secrets({"A": {"secretsmanager": arn, "kms_key": key}, "B": {"ssm": "plain-name"}}, {})
    assert refs["A"].is_arn and refs["A"].kms_key == key and refs["B"].describe() == "SSM parameter 'plain-name'"


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ({"AIRLAUNCH_SECRET_NAMES": {"ssm": "x"}}, "not a usable environment name"),
        ({"AWS_SECRET_ACCESS_KEY": {"ssm": "x"}}, "not a usable environment name"),
        ({"PLAIN": {"ssm": "x"}}, "also in 'env'"),
        ({"A": {"ssm": "x", "secretsmanager": "y"}}, "exactly one of"),
        ({"A": {"vault": "x"}}, "exactly one of"),
        ({"A": {"ssm": "x", "json_key": "k"}}, "json_key picks one key of a Secrets Manager secret"),
        ({"A": {"secretsmanager": "x", "json_key": "a:b"}}, "no ':' in it"),
        ({"A": {"secretsmanager": "x", "kms_key": "alias/mine"}}, "an alias cannot be granted kms:Decrypt"),
        ({"A": {"secretsmanager": "has space"}}, "neither a secret name"),
        ({"A": {"ssm": "bad*name"}}, "neither a parameter name"),
        (["A"], "'secrets' must map environment names"),
    ],
)
def test_a_bad_reference_fails_when_the_catalog_is_read_naming_task_and_variable(secrets: Any, message: str) -> None:
    entry = {"image": "i", "command": ["x"], "env": {"PLAIN": "1"}, "secrets": secrets}
    with pytest.raises(CatalogError, match=message) as caught:
        Catalog.from_dict({"tasks": {"t": entry}})
    assert "task 't'" in str(caught.value)


def test_a_launch_cannot_set_a_secret_variable_nor_add_a_secret() -> None:
    spec = CATALOG.get("with_secrets")
    with pytest.raises(InvalidRequest) as caught:
        spec.with_overrides(Overrides(env={"DB_PASSWORD": "mine"}))
    assert caught.value.field == "overrides.env.DB_PASSWORD"
    assert "comes only from Secrets Manager secret 'app/db', JSON key 'password'" in str(caught.value)
    assert spec.with_overrides(Overrides(env={"OTHER": "1"})).env == {"OTHER": "1"}
    request = {"task": "plain", "identity": IDENTITY.to_dict(), "overrides": {"secrets": {"X": {"ssm": "a"}}}}
    with pytest.raises(InvalidRequest) as refused:
        LaunchRequest.from_dict(request)
    assert refused.value.field == "overrides" and "unknown field(s) ['secrets']" in str(refused.value)
    with pytest.raises(InvalidRequest, match=r"overrides\.env\.AIRLAUNCH_SECRET_NAMES: names starting with"):
        Overrides(env={"AIRLAUNCH_SECRET_NAMES": ""})  # nor unmask one


# -- reading and checking ------------------------------------------------------------------------------


@pytest.fixture
def aws(moto_s3: Any) -> dict[str, Any]:
    """moto's Secrets Manager, SSM and KMS, with the entry's secrets set."""
    secretsmanager, ssm, kms = boto3.client("secretsmanager"), boto3.client("ssm"), boto3.client("kms")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    secretsmanager.create_secret(Name="app/db", SecretString=json.dumps({"username": "app", "password": VALUE}))
    ssm.put_parameter(Name="/app/api-token", Value="token-" + VALUE, Type="SecureString", KeyId=key)
    moto_s3.create_bucket(Bucket="results")
    return {"secretsmanager": secretsmanager, "ssm": ssm, "s3": moto_s3, "kms_key": key}


def test_values_are_read_as_ecs_injects_them_and_again_at_each_read(aws: dict[str, Any]) -> None:
    sm, ssm = aws["secretsmanager"], aws["ssm"]
    db, token = CATALOG.get("with_secrets").secrets["DB_PASSWORD"], CATALOG.get("with_secrets").secrets["API_TOKEN"]
    assert read_value(db, sm, ssm) == VALUE
    assert read_value(token, sm, ssm) == "token-" + VALUE
    whole = SecretRef("W", "secretsmanager", "app/db")
    assert json.loads(read_value(whole, sm, ssm))["password"] == VALUE
    sm.put_secret_value(SecretId="app/db", SecretString=json.dumps({"password": "rotated-value"}))
    assert read_value(db, sm, ssm) == "rotated-value", "a rotated value is read from the next read on"


@pytest.mark.parametrize(
    ("ref", "setup", "reason"),
    [
        (SecretRef("A", "secretsmanager", "missing"), None, "does not exist"),
        (SecretRef("A", "secretsmanager", "app/db", json_key="nope"), None, "has no JSON key 'nope'"),
        (SecretRef("A", "secretsmanager", "plain"), ("plain", "text"), None),
        (SecretRef("A", "secretsmanager", "plain", json_key="k"), ("plain", "text"), "is not a JSON object"),
        (SecretRef("A", "ssm", "/missing"), None, "does not exist"),
        (SecretRef("A", "ssm", "/plain-string"), ("/plain-string", "String"), "is a String parameter"),
    ],
)
def test_a_value_that_cannot_be_had_names_the_variable_and_why(
    aws: dict[str, Any], ref: SecretRef, setup: tuple[str, str] | None, reason: str | None
) -> None:
    if setup and ref.service == SSM:
        aws["ssm"].put_parameter(Name=setup[0], Value="v", Type=setup[1])
    elif setup:
        aws["secretsmanager"].create_secret(Name=setup[0], SecretString=setup[1])
    if reason is None:
        assert read_value(ref, aws["secretsmanager"], aws["ssm"]) == "text"
        return
    with pytest.raises(SecretUnavailable) as caught:
        read_value(ref, aws["secretsmanager"], aws["ssm"])
    assert str(caught.value).startswith(f"secret A ({ref.describe()}) {reason}")


def _stubbed(service: str, operation: str, answer: dict[str, Any], expected: dict[str, Any]) -> Any:
    client = boto3.client(service, region_name="us-west-2", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    if "Code" in answer:
        stubber.add_client_error(operation, answer["Code"], answer["Message"], 400, expected_params=expected)
    else:
        stubber.add_response(operation, answer, expected)
    stubber.activate()
    return client


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("current", None),
        ("scheduled_for_deletion", "is scheduled for deletion"),
        ("no_value", "has no value yet (no version labelled AWSCURRENT)"),
        ("not_found", "does not exist"),
        ("access_denied", "cannot be read: AccessDeniedException: User: arn:aws:sts::"),
    ],
)
def test_a_secret_is_checked_by_its_metadata_only(answer: str, reason: str | None) -> None:
    """DescribeSecret's documented answers decide; no value is asked for (the Stubber refuses any other call)."""
    ref = SecretRef("DB_PASSWORD", "secretsmanager", "MyTestDatabaseSecret", json_key="password")
    client = _stubbed("secretsmanager", "describe_secret", DESCRIBED[answer], {"SecretId": "MyTestDatabaseSecret"})
    if reason is None:
        check_readable(ref, client, None)
        return
    with pytest.raises(SecretUnavailable, match=re.escape(reason)) as caught:
        check_readable(ref, client, None)
    assert str(caught.value).startswith("secret DB_PASSWORD (Secrets Manager secret 'MyTestDatabaseSecret'")
    assert not caught.value.transient


@pytest.mark.parametrize(
    ("answer", "reason"),
    [("secure_string_not_decrypted", None), ("string", "is a String parameter"), ("not_found", "does not exist")],
)
def test_a_parameter_is_checked_without_decryption(answer: str, reason: str | None) -> None:
    ref = SecretRef("API_TOKEN", "ssm", "/MyService/ApiToken")
    expected = {"Name": "/MyService/ApiToken", "WithDecryption": False}
    client = _stubbed("ssm", "get_parameter", PARAMETERS[answer], expected)
    if reason is None:
        check_readable(ref, None, client)
        return
    with pytest.raises(SecretUnavailable, match=reason):
        check_readable(ref, None, client)


# -- the launch step -------------------------------------------------------------------------------------


class Backend:
    """A platform that records what it was asked to start."""

    def __init__(self, name: str, injects: bool) -> None:
        self.name, self.injects_secrets = name, injects
        self.started: list[dict[str, str]] = []

    def live(self, identity: RunIdentity) -> list[LiveTask]:
        return []

    def start(self, spec: Any, identity: RunIdentity, env: dict[str, str]) -> Started:
        self.started.append(env)
        return Started(task_ref=f"task-{len(self.started)}", launched=True)


def _launcher(aws: dict[str, Any], backend: Backend) -> Launcher:
    settings = LauncherSettings(bucket="results", key_prefix="runs", backend=backend.name)
    clients = (aws["secretsmanager"], aws["ssm"])
    secrets = LaunchSecrets(read_values=not backend.injects_secrets, clients=lambda: clients)
    return Launcher(settings, CATALOG, backend, aws["s3"], {}, secrets)  # type: ignore[arg-type]


def _keys(s3: Any) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket="results").get("Contents", [])]


def test_docker_gets_the_values_in_the_container_environment_only(aws: dict[str, Any]) -> None:
    backend = Backend("docker", injects=False)
    handle = _launcher(aws, backend).launch(LaunchRequest("with_secrets", IDENTITY, {"x": 1}))
    [env] = backend.started
    assert env["DB_PASSWORD"] == VALUE and env["API_TOKEN"] == "token-" + VALUE
    assert env[ENV_SECRET_NAMES] == "API_TOKEN,DB_PASSWORD"
    params = aws["s3"].get_object(Bucket="results", Key=handle.layout.params_key)["Body"].read().decode()
    assert VALUE not in params and VALUE not in json.dumps(handle.to_dict())


def test_ecs_gets_the_names_only_and_the_launcher_reads_no_value(aws: dict[str, Any]) -> None:
    backend = Backend("ecs", injects=True)
    launcher = _launcher(aws, backend)
    launcher.launch(LaunchRequest("with_secrets", IDENTITY))
    [env] = backend.started
    assert env[ENV_SECRET_NAMES] == "API_TOKEN,DB_PASSWORD"
    assert "DB_PASSWORD" not in env and "API_TOKEN" not in env and VALUE not in json.dumps(env)


def test_a_task_without_the_secret_in_its_entry_does_not_get_it(aws: dict[str, Any]) -> None:
    backend = Backend("docker", injects=False)
    _launcher(aws, backend).launch(LaunchRequest("plain", IDENTITY))
    [env] = backend.started
    assert ENV_SECRET_NAMES not in env and VALUE not in json.dumps(env)


@pytest.mark.parametrize("injects", [False, True], ids=["docker", "ecs"])
def test_a_missing_secret_fails_the_launch_before_anything_is_written_or_started(
    aws: dict[str, Any], injects: bool
) -> None:
    aws["secretsmanager"].delete_secret(SecretId="app/db", ForceDeleteWithoutRecovery=True)
    backend = Backend("ecs" if injects else "docker", injects=injects)
    with pytest.raises(LaunchError) as caught:
        _launcher(aws, backend).launch(LaunchRequest("with_secrets", IDENTITY))
    assert str(caught.value) == (
        "catalog task 'with_secrets' cannot start: secret DB_PASSWORD "
        "(Secrets Manager secret 'app/db', JSON key 'password') does not exist"
    )
    assert not caught.value.retryable
    assert backend.started == [] and _keys(aws["s3"]) == [], "no container, no params.yaml"


def test_a_rotated_value_is_used_from_the_next_launch_on(aws: dict[str, Any]) -> None:
    backend = Backend("docker", injects=False)
    launcher = _launcher(aws, backend)
    launcher.launch(LaunchRequest("with_secrets", IDENTITY))
    aws["secretsmanager"].put_secret_value(SecretId="app/db", SecretString=json.dumps({"password": "rotated-pw"}))
    second = RunIdentity("dag", "run", "task", -1, 2, "01a23311-7a60-7689-879d-622cac4095b3")
    launcher.launch(LaunchRequest("with_secrets", second))
    assert [env["DB_PASSWORD"] for env in backend.started] == [VALUE, "rotated-pw"]
