"""One step of a launch: the catalog entry's secrets, settled before anything of the launch is written.

What it guarantees (``LaunchSecrets.environment``, called by ``Launcher.launch`` before it stops an
earlier try or writes params.yaml):

* **Where the platform injects them** (ECS: the task definition's ``secrets``, fetched by ECS's
  agent with the task's execution role), the launcher reads no value: it checks that each secret
  exists and has a value by its metadata alone (DescribeSecret; GetParameter without decryption,
  the only rights its role has on them), so a missing one fails the launch instead of a task
  that fails to start.
* **Where the launcher starts the container itself** (Docker), it reads each value at this launch
  (nothing is cached: a rotated value is used from the next launch on) and returns it for the
  container's environment only: never params.yaml, a reply, a log line or an exception message.
* Either way the environment names them in ``AIRLAUNCH_SECRET_NAMES`` (names only), so the task
  runtime masks their values in everything it uploads (airlaunch.protocol.masking).
* A secret that is missing or cannot be read fails the launch with a LaunchError naming the
  variable, the reference and the reason: retryable only when the same call may succeed a
  moment later (throttling, an endpoint that does not answer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from airlaunch.catalog import TaskSpec
from airlaunch.launcher.backends.base import LaunchError
from airlaunch.protocol import ENV_SECRET_NAMES
from airlaunch.secret_refs import SecretUnavailable, check_readable, read_value

log = logging.getLogger(__name__)

Clients = tuple[Any, Any]  # (secretsmanager, ssm)


def _boto3_clients() -> Clients:
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=10)
    return boto3.client("secretsmanager", config=config), boto3.client("ssm", config=config)


class LaunchSecrets:
    """A launch's secrets: read (``read_values``: the launcher injects them) or only checked (the platform does)."""

    def __init__(self, read_values: bool, clients: Callable[[], Clients] = _boto3_clients) -> None:
        self.read_values = read_values
        self._make_clients = clients
        self._clients: Clients | None = None  # made at the first entry that has secrets

    def environment(self, spec: TaskSpec) -> dict[str, str]:
        """What the entry's secrets add to its container's environment; LaunchError if one cannot be had."""
        if not spec.secrets:
            return {}
        if self._clients is None:
            self._clients = self._make_clients()
        secretsmanager, ssm = self._clients
        env = {ENV_SECRET_NAMES: ",".join(sorted(spec.secrets))}
        try:
            for name, ref in sorted(spec.secrets.items()):
                if self.read_values:
                    env[name] = read_value(ref, secretsmanager, ssm)
                else:
                    check_readable(ref, secretsmanager, ssm)
        except SecretUnavailable as exc:
            raise LaunchError(f"catalog task {spec.name!r} cannot start: {exc}", retryable=exc.transient) from None
        log.info(
            "%s the secrets of %s: %s", "read" if self.read_values else "checked", spec.name, env[ENV_SECRET_NAMES]
        )
        return env
