"""What AWS does around the code in the least-privilege test: Lambda's Invoke API, the ECS agent, and time.

* ``lambda_endpoint``: the Invoke API in front of the launcher's handler, in the test's process.
* ``container_environment``: what the ECS agent gives the task's container: RunTask's
  environment overrides, and the variables of its environment files, which the agent reads
  from S3 with the task *execution* role (GetBucketLocation, then GetObject, as ECS documents
  for ``environmentFiles``). Those calls are signed with the execution role's key and judged.
* ``container_secrets``: the task definition's ``secrets``, which the agent fetches with the same
  role (secretsmanager:GetSecretValue, ssm:GetParameters with decryption; "Pass sensitive data to
  an Amazon ECS container"): signed with the execution role's key and judged too.
* ``Clock``: the time every side of the test runs on (STS's expirations, the launcher's
  deadlines, the runtime's refreshes, each recorded call's aws:CurrentTime), so that a task's
  hours pass in seconds.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from airlaunch.launcher import handler as launcher_handler
from airlaunch.launcher.service import Launcher
from tests.moto_server import free_port


class Clock:
    """Wall-clock time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return datetime.now(UTC).timestamp() + self.offset

    def aware(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    def naive_utc(self) -> datetime:  # moto's own clock (moto.core.utils.utcnow)
        return self.aware().replace(tzinfo=None)

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def set(self, epoch: float) -> None:
        self.offset += epoch - self.now()


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


def container_environment(ecs: Any, s3: Any, cluster: str, task_arn: str) -> dict[str, str]:
    """The task container's environment as the ECS agent builds it; ``ecs`` is the test's own client,
    ``s3`` a client with the execution role's key. Variables of the overrides win over the files'."""
    task = ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
    [override] = task["overrides"]["containerOverrides"]
    environment: dict[str, str] = {}
    for item in override.get("environmentFiles") or []:
        bucket, key = item["value"].removeprefix("arn:aws:s3:::").split("/", 1)
        assert item["type"] == "s3" and key.endswith(".env"), item
        s3.get_bucket_location(Bucket=bucket)
        for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines():
            name, sep, value = line.partition("=")
            if sep and not line.startswith("#"):
                environment.setdefault(name, value)  # the first file to name a variable wins
    return {**environment, **{e["name"]: e["value"] for e in override["environment"]}}


def container_secrets(ecs: Any, agent: dict[str, Any], cluster: str, task_arn: str) -> dict[str, str]:
    """The secrets the ECS agent injects into the task's container, fetched as it fetches them: each Secrets
    Manager valueFrom's secret (``arn:...:secret:name-AbCdEf[:json-key:stage:id]``) with GetSecretValue,
    the parameters with GetParameters and decryption; ``agent`` holds clients with the execution role's key."""
    task = ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
    definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
    [container] = definition["containerDefinitions"]
    values: dict[str, str] = {}
    for secret in container.get("secrets", []):
        value_from = secret["valueFrom"]
        if value_from.startswith("arn:aws:secretsmanager:"):
            parts = value_from.split(":")
            text = agent["secretsmanager"].get_secret_value(SecretId=":".join(parts[:7]))["SecretString"]
            values[secret["name"]] = json.loads(text)[parts[7]] if len(parts) > 7 and parts[7] else text
        else:
            answer = agent["ssm"].get_parameters(Names=[value_from], WithDecryption=True)
            values[secret["name"]] = answer["Parameters"][0]["Value"]
    return values


def harness_client(url: str, service: str, region: str) -> Any:
    """A client of the test itself (never judged): set-up and inspection."""
    return boto3.client(service, endpoint_url=url, region_name=region, aws_access_key_id="harness",
                        aws_secret_access_key="harness")  # fmt: skip
