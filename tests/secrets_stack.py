"""Secrets on the local stacks, for the stack, Airflow and compose tests: values in a LocalStack, catalog entries
that name them in a catalog copy the launcher serves, and the searches that prove a value went nowhere it must
not."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import yaml

from airlaunch.stack import Stack

IMAGE = "airlaunch/reference-tasks:latest"
COMMAND = ["python", "/opt/tasks/diagnostic.py"]


def fingerprint(value: str) -> str:
    """What the diagnostic task's ``secret`` action reports of a value (never the value itself)."""
    return hashlib.sha256(value.encode()).hexdigest()[:8]


class LocalSecrets:
    """Secrets Manager and SSM of a LocalStack (the embedded stack's: ``for_stack``; the compose stack's at its
    published port), where the launcher and the Fargate stand-in read them."""

    def __init__(self, endpoint_url: str, region: str) -> None:
        kwargs = {"endpoint_url": endpoint_url, "region_name": region,
                  "aws_access_key_id": "test", "aws_secret_access_key": "test"}  # fmt: skip
        self.secretsmanager = boto3.client("secretsmanager", **kwargs)
        self.ssm = boto3.client("ssm", **kwargs)
        self.run = secrets.token_hex(4)  # names of this session's own, whatever an earlier one left

    @classmethod
    def for_stack(cls, stack: Stack) -> LocalSecrets:
        return cls(stack.cfg.localstack_url, stack.cfg.region)

    def name(self, what: str) -> str:
        return f"airlaunch-test/{self.run}/{what}"

    @staticmethod
    def value() -> str:
        return "s3cr3t-" + secrets.token_hex(12)

    def set_json_key(self, name: str, key: str, value: str) -> str:
        """The secret ``name`` holding ``{key: value}`` (created, or a new current version); its ARN."""
        text = json.dumps({key: value})
        try:
            return str(self.secretsmanager.create_secret(Name=name, SecretString=text)["ARN"])
        except self.secretsmanager.exceptions.ResourceExistsException:
            return str(self.secretsmanager.put_secret_value(SecretId=name, SecretString=text)["ARN"])

    def set_parameter(self, name: str, value: str) -> None:
        self.ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)


@contextlib.contextmanager
def catalog_entries(catalog: Path, entries: dict[str, dict[str, Any]]) -> Iterator[None]:
    """These entries in a catalog copy a launcher serves (it reads it again when it changes); as it was after."""
    original = catalog.read_text()
    data = yaml.safe_load(original)
    data["tasks"].update(entries)
    catalog.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        yield
    finally:
        catalog.write_text(original)


def secret_entry(**secrets_of: dict[str, str]) -> dict[str, Any]:
    return {
        "image": IMAGE,
        "command": COMMAND,
        "description": "the diagnostic task with secrets",
        "secrets": secrets_of,
    }


def objects_holding(s3: Any, bucket: str, prefixes: list[str], *values: str) -> list[str]:
    """Every object under the prefixes whose bytes hold one of the values (status.json, logs, results, timings,
    params.yaml, run sessions...)."""
    found = []
    for prefix in prefixes:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                found += [item["Key"] for value in values if value.encode() in body]
    return found


def container_log(container: str, since: str) -> str:
    """A container's own log (stdout and stderr) since ``since`` (an RFC 3339 time or Unix seconds)."""
    out = subprocess.run(["docker", "logs", "--since", since, container], capture_output=True, text=True)
    return out.stdout + out.stderr


def launcher_log(stack: Stack, since: str) -> str:
    """The embedded stack's launcher container's own log (its JSON lines) since ``since``."""
    return container_log(stack.cfg.launcher_container, since)
