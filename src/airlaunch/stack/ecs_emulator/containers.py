"""What a Fargate task's container is, from its task definition and RunTask's overrides.

ECS's rules, as the emulator applies them:

* command: the container override's, else the definition's; entryPoint: the definition's
  (RunTask cannot override it).
* environment: the ``environmentFiles`` first (S3 objects named by ARN, read in order, a later
  file's variable replacing an earlier one's), then the definition's ``environment``, then the
  override's (ECS Developer Guide, "Pass environment variables to a container": variables of the
  ``environment`` parameter take precedence over those of a file). A file is ``VARIABLE=VALUE``
  lines; lines starting with ``#`` and blank lines are skipped; nothing is unquoted.
* cpu: the task's units (task override, else task definition; else the container's) as
  ``nano_cpus = units / 1024`` CPUs, capped at the host's CPUs (Docker refuses more).
* memory: the container's hard limit (override, else definition) if set, else the task's, in
  MiB, as Docker's ``mem_limit`` with ``memswap_limit`` equal (no swap, as on Fargate).
* ``stopTimeout``: the container's, else the emulator's default (ECS's is 30 s).
* the environment Fargate itself gives every container (``AWS_REGION``, ``AWS_DEFAULT_REGION``,
  ``AWS_EXECUTION_ENV``), plus the emulator's ``--task-env`` (the stand-in for what a task
  role provides on AWS), underneath the task's own variables.
* ``secrets`` (the definition's; RunTask cannot override them): fetched at each start as ECS's
  agent fetches them ("Pass sensitive data to an Amazon ECS container"): a ``valueFrom`` that is a
  Secrets Manager ARN is GetSecretValue of the secret (``arn:...:secret:name-AbCdEf``, optionally
  followed by ``:json-key:version-stage:version-id``; the current version unless one is named), the
  JSON key's value if one is named; anything else is an SSM parameter name or ARN, read with
  GetParameters and decryption. They come last, over every other variable. One that cannot be read
  fails the start with ECS's ResourceInitializationError. The emulator reads them with its own
  credentials (``--secrets-endpoint``: LocalStack in the stack's ECS mode), not an execution role.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

_S3_ARN = re.compile(r"^arn:aws[a-z-]*:s3:::([^/]+)/(.+)$")
_ASM_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:")
_SECRETS_FAILED = (
    "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed"
)


class StartFailure(Exception):
    """A task that cannot start: ``reason`` is the stoppedReason ECS would report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ContainerSpec:
    name: str  # the ECS container name
    image: str
    entrypoint: list[str] | None
    command: list[str] | None
    environment: dict[str, str]
    nano_cpus: int | None
    memory_mib: int | None
    stop_timeout: float
    working_dir: str | None = None
    user: str | None = None
    labels: dict[str, str] = field(default_factory=dict)  # the task's tags, so a test finds a run's container


def _override(task: Any, name: str) -> dict[str, Any]:
    for item in (task.overrides or {}).get("containerOverrides") or []:
        if item.get("name") == name:
            return dict(item)
    return {}


def _pairs(items: list[dict[str, Any]] | None) -> dict[str, str]:
    return {str(i["name"]): str(i.get("value", "")) for i in items or [] if "name" in i}


def parse_env_file(text: str) -> dict[str, str]:
    """A ``.env`` file as ECS reads it: ``VARIABLE=VALUE`` lines; ``#`` comments and blank lines skipped."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        env[key.strip()] = value
    return env


def read_env_files(files: list[dict[str, Any]], s3: Any) -> dict[str, str]:
    """The variables of ``environmentFiles`` (type s3), in order; StartFailure, in ECS's words, on a bad one."""
    env: dict[str, str] = {}
    for item in files:
        arn = str(item.get("value", ""))
        match = _S3_ARN.match(arn)
        if item.get("type", "s3") != "s3" or match is None:
            raise StartFailure(f"ResourceInitializationError: failed to download env files: invalid S3 ARN {arn!r}")
        try:
            body = s3.get_object(Bucket=match.group(1), Key=match.group(2))["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise StartFailure(
                "ResourceInitializationError: failed to download env files: file download command: "
                f"non empty error stream: {exc}"
            ) from exc
        env.update(parse_env_file(body.decode("utf-8", "replace")))
    return env


class SecretStore:
    """Secrets Manager and SSM at ``endpoint``, a client per service and region (a valueFrom names its region)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str, region: str) -> Any:
        with self._lock:
            if (service, region) not in self._clients:
                import boto3

                self._clients[(service, region)] = boto3.client(
                    service, endpoint_url=self.endpoint, region_name=region,
                    aws_access_key_id="test", aws_secret_access_key="test",
                )  # fmt: skip
            return self._clients[(service, region)]


def read_secrets(items: list[dict[str, Any]] | None, store: SecretStore | None, region: str) -> dict[str, str]:
    """A container definition's ``secrets`` as ECS's agent resolves them; StartFailure, in ECS's words, if one
    cannot be read."""
    env: dict[str, str] = {}
    for item in items or []:
        name, value_from = str(item.get("name", "")), str(item.get("valueFrom", ""))
        if store is None:
            raise StartFailure(f"{_SECRETS_FAILED}: no secrets endpoint for {value_from}")
        if _ASM_ARN.match(value_from):
            env[name] = _from_secrets_manager(value_from, store)
        else:
            env[name] = _from_parameter_store(value_from, store, region)
    return env


def _from_secrets_manager(value_from: str, store: SecretStore) -> str:
    parts = value_from.split(":")
    arn, (json_key, stage, version) = ":".join(parts[:7]), [*parts[7:], "", "", ""][:3]
    failed = f"{_SECRETS_FAILED}: unable to retrieve secret from asm: service call has been retried 1 time(s)"
    if len(parts) not in (7, 10):
        raise StartFailure(f"{failed}: invalid secret ARN {value_from}")
    asked: dict[str, str] = {"SecretId": arn}
    asked.update({"VersionStage": stage} if stage else {})
    asked.update({"VersionId": version} if version else {})
    try:
        text = str(store.client("secretsmanager", parts[3]).get_secret_value(**asked)["SecretString"])
    except (ClientError, BotoCoreError, KeyError) as exc:
        error = getattr(exc, "response", {}).get("Error", {})
        raise StartFailure(
            f"{failed}: failed to fetch secret {arn} from secrets manager: {error.get('Code', type(exc).__name__)}: "
            f"{error.get('Message', exc)}"
        ) from exc
    if not json_key:
        return text
    try:
        value = json.loads(text)[json_key]
    except (ValueError, KeyError, TypeError) as exc:
        raise StartFailure(
            f"{failed}: retrieved secret from Secrets Manager did not contain json key {json_key}"
        ) from exc
    return value if isinstance(value, str) else json.dumps(value)


def _from_parameter_store(value_from: str, store: SecretStore, region: str) -> str:
    if value_from.startswith("arn:"):
        region = value_from.split(":")[3]
    failed = f"{_SECRETS_FAILED}: unable to retrieve secrets from ssm: service call has been retried 1 time(s)"
    try:
        answer = store.client("ssm", region).get_parameters(Names=[value_from], WithDecryption=True)
    except (ClientError, BotoCoreError) as exc:
        raise StartFailure(f"{failed}: {exc}") from exc
    if answer.get("InvalidParameters") or not answer.get("Parameters"):
        raise StartFailure(f"{failed}: invalid parameters: {value_from}")
    return str(answer["Parameters"][0]["Value"])


def _int(value: Any) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def task_cpu_memory(overrides: dict[str, Any] | None, definition: Any) -> tuple[int | None, int | None]:
    """The task-level cpu units and memory MiB (RunTask's override, else the task definition)."""
    overrides = overrides or {}
    return _int(overrides.get("cpu") or definition.cpu), _int(overrides.get("memory") or definition.memory)


def task_vcpus(overrides: dict[str, Any] | None, definition: Any) -> float:
    """The vCPUs a task counts against the Fargate quota (its cpu units / 1024; 0.25, Fargate's least, if unset)."""
    cpu, _ = task_cpu_memory(overrides, definition)
    container = definition.container_definitions[0] if definition.container_definitions else {}
    return (cpu or _int(container.get("cpu")) or 256) / 1024


def build_spec(
    task: Any,
    definition: Any,
    region: str,
    s3: Any,
    platform_env: dict[str, str],
    default_stop_timeout: float,
    secrets: SecretStore | None = None,
) -> ContainerSpec:
    """The container of a Fargate task (its one essential container; the emulator runs the first)."""
    container = dict(definition.container_definitions[0])
    name = str(container.get("name", "main"))
    override = _override(task, name)
    environment = {"AWS_REGION": region, "AWS_DEFAULT_REGION": region, "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE"}
    environment.update(platform_env)
    files = list(container.get("environmentFiles") or []) + list(override.get("environmentFiles") or [])
    environment.update(read_env_files(files, s3))
    environment.update(_pairs(container.get("environment")))
    environment.update(_pairs(override.get("environment")))
    environment.update(read_secrets(container.get("secrets"), secrets, region))
    task_cpu, task_memory = task_cpu_memory(task.overrides, definition)
    cpu_units = task_cpu or _int(override.get("cpu")) or _int(container.get("cpu"))
    memory = _int(override.get("memory")) or _int(container.get("memory")) or task_memory
    if memory and task_memory:
        memory = min(memory, task_memory)
    host_cpus = os.cpu_count() or 1
    nano_cpus = int(min(cpu_units / 1024, host_cpus) * 1e9) if cpu_units else None
    stop_timeout = container.get("stopTimeout")
    return ContainerSpec(
        name=name,
        image=str(container.get("image", "")),
        entrypoint=list(container["entryPoint"]) if container.get("entryPoint") else None,
        command=list(override.get("command") or container.get("command") or []) or None,
        environment=environment,
        nano_cpus=nano_cpus,
        memory_mib=max(memory, 6) if memory else None,  # Docker's least memory limit is 6 MiB
        stop_timeout=float(stop_timeout) if stop_timeout is not None else default_stop_timeout,
        working_dir=container.get("workingDirectory"),
        user=container.get("user"),
        labels={str(t["key"]): str(t["value"]) for t in getattr(task, "tags", None) or [] if "key" in t},
    )


def full_reference(image: str) -> str:
    """An image reference as containerd spells it in pull errors (``docker.io/library/busybox:latest``)."""
    first, _, rest = image.partition("/")
    registry_given = bool(rest) and ("." in first or ":" in first or first == "localhost")
    name = image if registry_given else ("docker.io/" + (image if rest else f"library/{image}"))
    last = name.rsplit("/", 1)[-1]
    return name if ("@" in last or ":" in last) else f"{name}:latest"


def cannot_pull(image: str) -> str:
    """Fargate's stoppedReason for an image no registry has (platform 1.4, containerd's wording)."""
    ref = full_reference(image)
    return f"CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref {ref}: {ref}: not found"  # noqa: E501
