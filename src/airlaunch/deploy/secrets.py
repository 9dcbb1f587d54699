"""The catalog's secrets in the deployment: each task definition's ``secrets``, and who may read them.

What it guarantees:

* **valueFrom in the forms ECS documents** ("Pass sensitive data to an Amazon ECS container";
  "Specifying sensitive data using Secrets Manager"): a secret's full ARN
  (``arn:aws:secretsmanager:region:account:secret:name-AbCdEf``), with ``:json-key::`` appended
  for one key of it (version stage and id left empty: the current version, so a rotated value is
  used from the next task on); a parameter's ARN (``arn:aws:ssm:region:account:parameter/name``).
  Secrets Manager ARNs end in six random characters, so a secret the catalog names by name is
  looked up once, at deploy (:func:`resolve_arns`, DescribeSecret), and a missing one stops the
  deploy naming it.
* **Each entry with secrets gets an execution role of its own** (ECS's agent fetches a task's
  secrets with its task definition's execution role): the shared role's policy (pull, logs, run
  session files: TaskExecutionPolicy), plus secretsmanager:GetSecretValue / ssm:GetParameters on
  exactly its own secrets and kms:Decrypt on exactly its own keys, through those two services
  only (kms:ViaService). So one entry's task can never be given another entry's secret, and
  entries without secrets keep the shared role, which reads none.
* **The network**: with VpcEndpoints=true, interface endpoints for Secrets Manager and SSM (only
  the services the catalog's secrets use), through which ECS's agent fetches them.
* **The launcher may only look**: secretsmanager:DescribeSecret and ssm:GetParameter (it asks
  without decryption and holds no kms:Decrypt) on the catalog's secrets, to refuse a launch
  whose secret is missing before a task starts (airlaunch.launcher.secrets).

A catalog without secrets renders exactly the template it rendered before.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from airlaunch.catalog import Catalog, TaskSpec
from airlaunch.secret_refs import SECRETS_MANAGER, SecretRef

_ARN = "arn:${AWS::Partition}"
_AT = "${AWS::Region}:${AWS::AccountId}"


class SecretLookupError(ValueError):
    """A Secrets Manager secret the catalog names could not be looked up; the message says which and why."""


def names_to_resolve(catalog: Catalog) -> list[str]:
    """The Secrets Manager secrets the catalog names by name (their ARNs must be looked up)."""
    return sorted({ref.name for spec in catalog.tasks.values() for ref in spec.secrets.values()
                   if ref.service == SECRETS_MANAGER and not ref.is_arn})  # fmt: skip


def resolve_arns(secretsmanager: Any, catalog: Catalog) -> dict[str, str]:
    """Secret name -> its full ARN (DescribeSecret), for every secret the catalog names by name."""
    from botocore.exceptions import BotoCoreError, ClientError

    arns: dict[str, str] = {}
    for name in names_to_resolve(catalog):
        users = sorted(n for n, s in catalog.tasks.items() if any(r.name == name for r in s.secrets.values()))
        try:
            arns[name] = str(secretsmanager.describe_secret(SecretId=name)["ARN"])
        except (ClientError, BotoCoreError) as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            why = "does not exist" if code == "ResourceNotFoundException" else f"cannot be described ({exc})"
            raise SecretLookupError(
                f"Secrets Manager secret {name!r} of catalog task(s) {users} {why}: create it first "
                f"(aws secretsmanager create-secret --name {name} --secret-string file:///dev/stdin), "
                "or give its full ARN in the catalog"
            ) from exc
    return arns


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def secret_arn(ref: SecretRef, arns: Mapping[str, str]) -> Any:
    """The ARN IAM grants on: the secret's full ARN, or the parameter's ARN."""
    if ref.is_arn:
        return ref.name
    if ref.service == SECRETS_MANAGER:
        if ref.name not in arns:
            raise SecretLookupError(f"the ARN of Secrets Manager secret {ref.name!r} was not looked up (resolve_arns)")
        return arns[ref.name]
    return _sub(f"{_ARN}:ssm:{_AT}:parameter/{ref.name.lstrip('/')}")


def value_from(ref: SecretRef, arns: Mapping[str, str]) -> Any:
    """A container definition's ``valueFrom`` for ``ref`` (see the module's docstring)."""
    arn = secret_arn(ref, arns)
    return f"{arn}:{ref.json_key}::" if ref.json_key else arn


def kms_arn(key: str) -> Any:
    return key if key.startswith("arn:") else _sub(f"{_ARN}:kms:{_AT}:key/{key}")


def container_secrets(spec: TaskSpec, arns: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"Name": name, "ValueFrom": value_from(ref, arns)} for name, ref in sorted(spec.secrets.items())]


def _by_service(refs: Iterable[SecretRef], arns: Mapping[str, str], service: str) -> list[Any]:
    found: list[Any] = []
    for ref in refs:
        arn = secret_arn(ref, arns) if ref.service == service else None
        if arn is not None and arn not in found:
            found.append(arn)
    return found


def _statement(sid: str, action: str, resources: list[Any], **extra: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": action, "Resource": resources, **extra}


def read_statements(refs: list[SecretRef], arns: Mapping[str, str]) -> list[dict[str, Any]]:
    """ECS's agent reads these secrets (and decrypts them with their customer managed keys, through the
    secret's own service only)."""
    statements = []
    if secrets := _by_service(refs, arns, SECRETS_MANAGER):
        statements.append(_statement("ReadTaskSecrets", "secretsmanager:GetSecretValue", secrets))
    if parameters := _by_service(refs, arns, "ssm"):
        statements.append(_statement("ReadTaskParameters", "ssm:GetParameters", parameters))
    keys = sorted({ref.kms_key for ref in refs if ref.kms_key})
    if keys:
        services = sorted({f"{ref.service}.${{AWS::Region}}.amazonaws.com" for ref in refs if ref.kms_key})
        via = {"StringEquals": {"kms:ViaService": [_sub(s) for s in services]}}
        statements.append(_statement("DecryptTaskSecrets", "kms:Decrypt", [kms_arn(k) for k in keys], Condition=via))
    return statements


def check_statements(catalog: Catalog, arns: Mapping[str, str]) -> list[dict[str, Any]]:
    """The launcher looks at every catalog secret's metadata, and at nothing else of it."""
    refs = [ref for _, spec in sorted(catalog.tasks.items()) for _, ref in sorted(spec.secrets.items())]
    statements = []
    if secrets := _by_service(refs, arns, SECRETS_MANAGER):
        statements.append(_statement("CheckCatalogSecrets", "secretsmanager:DescribeSecret", secrets))
    if parameters := _by_service(refs, arns, "ssm"):
        statements.append(_statement("CheckCatalogParameters", "ssm:GetParameter", parameters))
    return statements


def endpoints(catalog: Catalog, like: dict[str, Any]) -> dict[str, Any]:
    """With VpcEndpoints=true, the interface endpoints a task's secrets are fetched through (ECS's agent reaches
    Secrets Manager and SSM through the task's network; KMS is called by those services, not by the agent):
    ``like`` (the template's EcrApiEndpoint) for each service the catalog's secrets use, and only those."""
    used = {ref.service for spec in catalog.tasks.values() for ref in spec.secrets.values()}
    found = {}
    for service, lid in ((SECRETS_MANAGER, "SecretsManagerEndpoint"), ("ssm", "SsmEndpoint")):
        if service in used:
            endpoint = copy.deepcopy(like)
            endpoint["Properties"]["ServiceName"] = _sub(f"com.amazonaws.${{AWS::Region}}.{service}")
            found[lid] = endpoint
    return found


def execution_role(shared: dict[str, Any], spec: TaskSpec, arns: Mapping[str, str]) -> dict[str, Any]:
    """The execution role of an entry with secrets: the shared role's trust and policy (``shared``:
    TaskExecutionRole, whose rights are the managed policy TaskExecutionPolicy), plus what reads its own
    secrets and nothing else's."""
    document = {
        "Version": "2012-10-17",
        "Statement": read_statements([r for _, r in sorted(spec.secrets.items())], arns),
    }
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": _sub(
                f"airlaunch ${{AWS::StackName}} - ECS's agent for catalog task {spec.name}, with its secrets"
            ),
            "AssumeRolePolicyDocument": copy.deepcopy(shared["Properties"]["AssumeRolePolicyDocument"]),
            "ManagedPolicyArns": copy.deepcopy(shared["Properties"]["ManagedPolicyArns"]),
            "Policies": [{"PolicyName": "read-its-secrets", "PolicyDocument": document}],
        },
    }
