"""AWS Lambda entry point of the launcher: ``airlaunch.launcher.handler.handler``.

Event: ``{"action": "launch", "request": LaunchRequest}``,
``{"action": "describe", "handle": Handle}``,
``{"action": "stop", "handle": Handle, "reason": str}`` or ``{"action": "ping"}``.
Response: ``{"ok": true, ...}``, or ``{"ok": false, "error": {"type", "message", "field"}}``
for a request the launcher refuses; nothing is started then. Unexpected failures raise,
which Lambda reports as a FunctionError.
"""

from __future__ import annotations

import json
import logging
import os
from functools import cache
from typing import Any

import boto3

from airlaunch.catalog import CatalogError, CatalogFile
from airlaunch.config import LauncherSettings
from airlaunch.launcher.backends.base import Backend, LaunchError
from airlaunch.launcher.service import Launcher
from airlaunch.protocol import Handle, InvalidRequest, LaunchRequest


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _setup_logging() -> None:
    root = logging.getLogger()
    for h in root.handlers:
        h.setFormatter(_JsonFormatter())
    if not root.handlers:
        stream = logging.StreamHandler()
        stream.setFormatter(_JsonFormatter())
        root.addHandler(stream)
    root.setLevel(os.environ.get("AIRLAUNCH_LOG_LEVEL", "INFO"))


def make_backend(settings: LauncherSettings) -> Backend:
    if settings.backend == "docker":
        from airlaunch.launcher.backends.docker import DockerBackend

        return DockerBackend(network=settings.docker_network, stop_grace_seconds=settings.stop_grace_seconds)
    if settings.backend == "ecs":
        from airlaunch.launcher.backends.ecs import EcsBackend

        return EcsBackend(settings)
    raise ValueError(f"AIRLAUNCH_BACKEND={settings.backend!r}: expected 'docker' or 'ecs'")


@cache
def get_launcher() -> Launcher:
    """Built once per Lambda container and reused by warm invocations."""
    _setup_logging()
    settings = LauncherSettings()
    return Launcher(
        settings=settings,
        catalog=CatalogFile(settings.catalog_path),
        backend=make_backend(settings),
        s3=boto3.client("s3"),
        environ=dict(os.environ),
    )


def _error(kind: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"ok": False, "error": {"type": kind, "message": message, "field": field}}


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    launcher = get_launcher()
    if not isinstance(event, dict):
        return _error("InvalidRequest", "the event must be a JSON object", "event")
    action = event.get("action")
    try:
        if action == "launch":
            handle = launcher.launch(LaunchRequest.from_dict(event.get("request")))
            return {"ok": True, "handle": handle.to_dict()}
        if action == "describe":
            description = launcher.describe(Handle.from_dict(event.get("handle")))
            return {"ok": True, "description": description.to_dict()}
        if action == "stop":
            reason = str(event.get("reason") or "stop requested")
            description = launcher.stop(Handle.from_dict(event.get("handle")), reason)
            return {"ok": True, "description": description.to_dict()}
        if action == "ping":  # readiness: the handler and its backend are loaded; the catalog as it reads now
            try:
                return {"ok": True, "backend": launcher.backend.name, "tasks": sorted(launcher.catalog.tasks)}
            except CatalogError as exc:
                return {"ok": True, "backend": launcher.backend.name, "tasks": [], "catalog_error": str(exc)}
        return _error("InvalidRequest", f"unknown action {action!r}; expected launch, describe, stop or ping", "action")
    except InvalidRequest as exc:
        logging.getLogger(__name__).warning("refused %s: %s", action, exc)
        return _error("InvalidRequest", exc.message, exc.field)
    except CatalogError as exc:
        logging.getLogger(__name__).error("task catalog unusable: %s", exc)
        return _error("CatalogError", str(exc), "task")
    except LaunchError as exc:
        logging.getLogger(__name__).error("launch failed: %s", exc)
        return _error("LaunchError", str(exc))
