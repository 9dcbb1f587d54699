"""The Fargate stand-in resolves a container definition's ``secrets`` as ECS's agent does: every valueFrom form
ECS documents, the current version unless one is named, and ECS's ResourceInitializationError when one cannot be
read (moto's server in this process as the Secrets Manager and SSM the stand-in reads)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from airlaunch.stack.ecs_emulator.containers import SecretStore, StartFailure, read_secrets
from tests.moto_server import moto_in_process

REGION = "us-east-1"


@pytest.fixture(scope="module")
def store() -> Iterator[tuple[SecretStore, dict[str, Any]]]:
    with moto_in_process() as url:
        client = boto3.client("secretsmanager", endpoint_url=url, region_name=REGION, aws_access_key_id="x",
                              aws_secret_access_key="x")  # fmt: skip
        arn = client.create_secret(Name="app/db", SecretString=json.dumps({"password": "first-pw"}))["ARN"]
        client.put_secret_value(SecretId=arn, SecretString=json.dumps({"password": "second-pw", "port": 5432}))
        ssm = boto3.client("ssm", endpoint_url=url, region_name=REGION, aws_access_key_id="x",
                           aws_secret_access_key="x")  # fmt: skip
        ssm.put_parameter(Name="/app/token", Value="token-value", Type="SecureString")
        yield SecretStore(url), {"arn": arn, "parameter_arn": f"arn:aws:ssm:{REGION}:123456789012:parameter/app/token"}


def _one(store: SecretStore, value_from: str) -> str:
    return read_secrets([{"name": "V", "valueFrom": value_from}], store, REGION)["V"]


def test_every_documented_value_from_form(store: tuple[SecretStore, dict[str, Any]]) -> None:
    secrets, names = store
    arn = names["arn"]
    assert json.loads(_one(secrets, arn)) == {"password": "second-pw", "port": 5432}, "the current version"
    assert _one(secrets, f"{arn}:password::") == "second-pw"
    assert _one(secrets, f"{arn}:port::") == "5432"
    assert json.loads(_one(secrets, f"{arn}::AWSPREVIOUS:")) == {"password": "first-pw"}
    assert _one(secrets, f"{arn}:password:AWSPREVIOUS:") == "first-pw"
    assert _one(secrets, "/app/token") == "token-value"
    assert _one(secrets, names["parameter_arn"]) == "token-value"


@pytest.mark.parametrize(
    ("value_from", "reason"),
    [
        (
            "{arn}-gone",
            "unable to retrieve secret from asm: service call has been retried 1 time(s): failed to fetch "
            "secret {arn}-gone from secrets manager: ResourceNotFoundException",
        ),
        ("{arn}:nope::", "retrieved secret from Secrets Manager did not contain json key nope"),
        ("{arn}:a:b", "invalid secret ARN"),
        (
            "/app/missing",
            "unable to retrieve secrets from ssm: service call has been retried 1 time(s): "
            "invalid parameters: /app/missing",
        ),
    ],
)
def test_a_secret_that_cannot_be_read_fails_the_start_in_ecs_words(
    store: tuple[SecretStore, dict[str, Any]], value_from: str, reason: str
) -> None:
    secrets, names = store
    with pytest.raises(StartFailure) as caught:
        _one(secrets, value_from.format(arn=names["arn"]))
    prefix = "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed"
    assert caught.value.reason.startswith(prefix)
    assert reason.format(arn=names["arn"]) in caught.value.reason


def test_no_store_no_secrets() -> None:
    assert read_secrets(None, None, REGION) == {}
    with pytest.raises(StartFailure, match="no secrets endpoint"):
        read_secrets([{"name": "V", "valueFrom": "/x"}], None, REGION)
