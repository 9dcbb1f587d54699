"""AWS Lambda entry point of the launcher: ``airlaunch.launcher.handler.handler``.

Event: ``{"action": "launch", "request": LaunchRequest}``,
``{"action": "describe", "handle": Handle}``,
``{"action": "stop", "handle": Handle, "reason": str}`` (or ``"identity": RunIdentity`` instead of,
or besides, the handle, to stop a try whose launch may still be in flight),
``{"action": "list"}`` (the live tasks, for Airflow's orphan sweep), ``{"action": "reap"}``
(stop tasks long past their timeout; on ECS, then handle again the events whose handling failed,
airlaunch.launcher.failed_events) or ``{"action": "ping"}``; and ECS's task state change
events as EventBridge delivers them (parsed by airlaunch.launcher.platform_events, which says why
nothing in them but the task they name is trusted).
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
from airlaunch.launcher import failed_events
from airlaunch.launcher.backends.base import Backend, LaunchError
from airlaunch.launcher.platform_events import EcsTaskStateChange, is_platform_event
from airlaunch.launcher.service import Launcher
from airlaunch.protocol import Handle, InvalidRequest, LaunchRequest, RunIdentity


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

        return DockerBackend(
            network=settings.docker_network,
            stop_grace_seconds=settings.stop_grace_seconds,
            scope=settings.docker_scope,
            cpu_shares=settings.docker_cpu_shares,
        )
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


def _error(kind: str, message: str, field: str | None = None, retryable: bool = False) -> dict[str, Any]:
    return {"ok": False, "error": {"type": kind, "message": message, "field": field, "retryable": retryable}}


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    launcher = get_launcher()
    if not isinstance(event, dict):
        return _error("InvalidRequest", "the event must be a JSON object", "event")
    platform_event = is_platform_event(event)  # an EventBridge rule sends ECS's task state changes here
    action = "task state change event" if platform_event else event.get("action")
    try:
        if platform_event:
            return {"ok": True, **launcher.task_stopped(EcsTaskStateChange.parse(event))}
        if action == "launch":
            handle = launcher.launch(LaunchRequest.from_dict(event.get("request")))
            return {"ok": True, "handle": handle.to_dict()}
        if action == "describe":
            description = launcher.describe(Handle.from_dict(event.get("handle")))
            return {"ok": True, "description": description.to_dict()}
        if action == "stop":
            reason = str(event.get("reason") or "stop requested")
            given, identity = event.get("handle"), event.get("identity")
            if given is None and identity is None:
                raise InvalidRequest("handle", "stop needs the handle or the identity of the try to stop")
            try_identity = RunIdentity.from_dict(identity) if identity is not None else None
            if given is not None:
                parsed = Handle.from_dict(given)
                layout, task_ref = parsed.layout, parsed.task_ref
            else:
                assert try_identity is not None
                layout, task_ref = launcher.layout_of(try_identity), ""
            description = launcher.stop(layout, task_ref, reason, try_identity)
            return {"ok": True, "description": description.to_dict()}
        if action == "list":
            tasks = [
                {
                    "task_ref": t.task_ref,
                    "bucket": t.layout.bucket,
                    "prefix": t.layout.prefix,
                    "started_at": t.started_at,
                }
                for t in launcher.backend.live_tasks()
            ]
            return {"ok": True, "tasks": tasks}
        if action == "reap":  # then the ECS events whose handling failed, handled again
            return {"ok": True, "reaped": launcher.reap(), **failed_events.after_reap(launcher.settings, handler)}
        if action == "ping":  # readiness: the handler and its backend are loaded; the catalog as it reads now
            try:
                return {"ok": True, "backend": launcher.backend.name, "tasks": sorted(launcher.catalog.tasks)}
            except CatalogError as exc:
                return {"ok": True, "backend": launcher.backend.name, "tasks": [], "catalog_error": str(exc)}
        expected = "launch, describe, stop, list, reap or ping"
        return _error("InvalidRequest", f"unknown action {action!r}; expected {expected}", "action")
    except InvalidRequest as exc:
        logging.getLogger(__name__).warning("refused %s: %s", action, exc)
        return _error("InvalidRequest", exc.message, exc.field)
    except CatalogError as exc:
        logging.getLogger(__name__).error("task catalog unusable: %s", exc)
        return _error("CatalogError", str(exc), "task")
    except LaunchError as exc:
        logging.getLogger(__name__).error("%s failed: %s", action, exc)
        if platform_event and exc.retryable:
            raise  # a function error: Lambda delivers the event again (an asynchronous invoke's retries)
        return _error("LaunchError", str(exc), retryable=exc.retryable)
