"""A catalog entry's secrets: references to where a value lives, never the value.

A catalog entry lists the secrets its task may have, each as the environment variable its
container gets and a Secrets Manager secret (optionally one JSON key of it) or an SSM
SecureString parameter (optionally the KMS key it is encrypted with)::

    secrets:
      DB_PASSWORD: {secretsmanager: prod/db, json_key: password}
      API_TOKEN: {ssm: /prod/api-token, kms_key: 1234abcd-12ab-34cd-56ef-1234567890ab}

What this module guarantees:

* :func:`parse_secrets` accepts only references of the forms AWS accepts (secret names and ARNs,
  parameter names and ARNs, KMS key ids and ARNs: aliases cannot be named in an IAM policy's
  Resource for kms:Decrypt), and environment names that are neither reserved (``AIRLAUNCH_``,
  ``AWS_``) nor also in the entry's plain ``env``; a bad one fails when the catalog is read.
* :func:`read_value` gets a value as ECS's agent would inject it (the current version's
  SecretString, or one JSON key of it; a SecureString decrypted), at the moment it is called:
  nothing is cached, so a rotated value is used from the next read on.
* :func:`check_readable` decides whether a secret can be injected from its metadata alone
  (DescribeSecret; GetParameter without decryption), so a caller that may not read values
  (the launcher on AWS) still refuses a missing one before a task starts.
* Both raise :class:`SecretUnavailable` naming the variable, the reference and the reason, never
  the value, and say whether the same call may succeed a moment later (``transient``).

Base-level like airlaunch.catalog: the launcher, the deploy tool and the CLI import it. boto3's
clients are passed in; botocore is imported only where an error is classified.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from airlaunch.aws_errors import error_code, is_transient

SECRETS_MANAGER, SSM = "secretsmanager", "ssm"
_FIELDS = {SECRETS_MANAGER, SSM, "json_key", "kms_key"}
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_RESERVED = ("AIRLAUNCH_", "AWS_")  # the launcher's and AWS's own variables (airlaunch.protocol.env)
# Secrets Manager: "ASCII letters, numbers, and /_+=.@-"; an ARN ends in "-" and six random characters.
_SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
_SECRET_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$"
)
# Parameter Store: "a-zA-Z0-9_.-" and "/" for the hierarchy.
_PARAMETER_NAME_RE = re.compile(r"^[A-Za-z0-9_./-]{1,1011}$")
_PARAMETER_ARN_RE = re.compile(r"^arn:aws[a-z-]*:ssm:[a-z0-9-]+:\d{12}:parameter/[A-Za-z0-9_./-]+$")
_KMS_KEY_RE = re.compile(
    r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}"
    r"|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+)$"
)
CURRENT = "AWSCURRENT"  # the version ECS injects when valueFrom names none


@dataclass(frozen=True)
class SecretRef:
    """Where the value of one environment variable of a task's container lives."""

    env: str  # the variable the container gets the value as
    service: str  # SECRETS_MANAGER or SSM
    name: str  # the secret's name or full ARN; the parameter's name or ARN
    json_key: str | None = None  # Secrets Manager only: one key of a JSON secret
    kms_key: str | None = None  # the customer managed key it is encrypted with (id or ARN), if any

    @property
    def is_arn(self) -> bool:
        return self.name.startswith("arn:")

    def describe(self) -> str:
        """The reference in words, for messages (never the value)."""
        if self.service == SSM:
            return f"SSM parameter {self.name!r}"
        key = f", JSON key {self.json_key!r}" if self.json_key else ""
        return f"Secrets Manager secret {self.name!r}{key}"


class SecretUnavailable(Exception):
    """A secret cannot be injected; the message names the variable, the reference and why."""

    def __init__(self, ref: SecretRef, reason: str, transient: bool = False) -> None:
        super().__init__(f"secret {ref.env} ({ref.describe()}) {reason}")
        self.ref = ref
        self.transient = transient


def parse_secrets(data: Any, env: dict[str, str]) -> dict[str, SecretRef]:
    """A catalog entry's ``secrets`` mapping; ValueError naming the variable when one is wrong."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("'secrets' must map environment names to {secretsmanager: NAME} or {ssm: NAME}")
    return {str(name): _parse_one(str(name), entry, env) for name, entry in data.items()}


def _parse_one(name: str, entry: Any, env: dict[str, str]) -> SecretRef:
    where = f"secrets.{name}"
    if not _ENV_RE.match(name) or name.startswith(_RESERVED):
        raise ValueError(f"{where}: not a usable environment name (letters, digits, '_'; not AIRLAUNCH_* or AWS_*)")
    if name in env:
        raise ValueError(f"{where}: {name} is also in 'env'; a variable is either plain or secret")
    if not isinstance(entry, dict) or set(entry) - _FIELDS or len({SECRETS_MANAGER, SSM} & set(entry)) != 1:
        raise ValueError(f"{where}: give exactly one of 'secretsmanager' or 'ssm' (and 'json_key', 'kms_key')")
    service = SECRETS_MANAGER if SECRETS_MANAGER in entry else SSM
    ref = SecretRef(name, service, str(entry[service]), _optional(entry, "json_key"), _optional(entry, "kms_key"))
    if service == SECRETS_MANAGER and not (_SECRET_NAME_RE.match(ref.name) or _SECRET_ARN_RE.match(ref.name)):
        raise ValueError(f"{where}: {ref.name!r} is neither a secret name (letters, digits, /_+=.@-) nor its full ARN")
    if service == SSM and not (_PARAMETER_NAME_RE.match(ref.name) or _PARAMETER_ARN_RE.match(ref.name)):
        raise ValueError(f"{where}: {ref.name!r} is neither a parameter name (letters, digits, _.-/) nor its ARN")
    if ref.json_key is not None and (service == SSM or not ref.json_key or ":" in ref.json_key):
        raise ValueError(f"{where}: json_key picks one key of a Secrets Manager secret (no ':' in it)")
    if ref.kms_key is not None and not _KMS_KEY_RE.match(ref.kms_key):
        raise ValueError(
            f"{where}: kms_key {ref.kms_key!r} must be a key id or key ARN (an alias cannot be granted kms:Decrypt)"
        )
    return ref


def _optional(entry: dict[str, Any], key: str) -> str | None:
    value = entry.get(key)
    return None if value is None else str(value)


def _unavailable(ref: SecretRef, exc: Exception) -> SecretUnavailable:
    """An AWS error of a secret's service in words."""
    code = error_code(exc)
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", "")) or str(exc)
    if code in ("ResourceNotFoundException", "ParameterNotFound"):
        return SecretUnavailable(ref, "does not exist")
    if code in ("AccessDeniedException", "AccessDenied"):
        return SecretUnavailable(ref, f"cannot be read: {code}: {message}")
    if "marked for deletion" in message:
        return SecretUnavailable(ref, "is scheduled for deletion")
    return SecretUnavailable(ref, f"cannot be read: {code or type(exc).__name__}: {message}", is_transient(exc))


def read_value(ref: SecretRef, secretsmanager: Any, ssm: Any) -> str:
    """The value as ECS's agent injects it: the current SecretString (or its JSON key), or a decrypted
    SecureString. Read at each call."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if ref.service == SSM:
            parameter = ssm.get_parameter(Name=ref.name, WithDecryption=True)["Parameter"]
            _require_secure(ref, parameter)
            return str(parameter["Value"])
        answer = secretsmanager.get_secret_value(SecretId=ref.name)
    except (ClientError, BotoCoreError) as exc:
        raise _unavailable(ref, exc) from None
    if "SecretString" not in answer:
        raise SecretUnavailable(ref, "holds binary data (SecretBinary); only text secrets (SecretString) are injected")
    text = str(answer["SecretString"])
    if ref.json_key is None:
        return text
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise SecretUnavailable(ref, f"is not a JSON object, so it has no key {ref.json_key!r}")
    if ref.json_key not in document:
        raise SecretUnavailable(ref, f"has no JSON key {ref.json_key!r} (it has {len(document)} other keys)")
    value = document[ref.json_key]
    return value if isinstance(value, str) else json.dumps(value)


def check_readable(ref: SecretRef, secretsmanager: Any, ssm: Any) -> None:
    """SecretUnavailable unless the secret exists and has a value to inject, judged by its metadata only
    (DescribeSecret; GetParameter without decryption, which answers the ciphertext)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if ref.service == SSM:
            _require_secure(ref, ssm.get_parameter(Name=ref.name, WithDecryption=False)["Parameter"])
            return
        described = secretsmanager.describe_secret(SecretId=ref.name)
    except (ClientError, BotoCoreError) as exc:
        raise _unavailable(ref, exc) from None
    if described.get("DeletedDate"):
        raise SecretUnavailable(ref, f"is scheduled for deletion (on {described['DeletedDate']})")
    stages = described.get("VersionIdsToStages") or {}
    if not any(CURRENT in labels for labels in stages.values()):
        raise SecretUnavailable(ref, f"has no value yet (no version labelled {CURRENT})")


def _require_secure(ref: SecretRef, parameter: dict[str, Any]) -> None:
    if parameter.get("Type") != "SecureString":
        raise SecretUnavailable(
            ref, f"is a {parameter.get('Type')} parameter, stored unencrypted: store it as SecureString"
        )
