"""AWS Lambda entry point of the launcher: ``airlaunch.launcher.handler.handler``.

Every event is parsed before anything acts on it: a launcher call (launch, describe, stop, list,
reap, ping: airlaunch.protocol's envelope, which spells the JSON) is dispatched from ``ACTIONS``
to the launcher's service, and answered with that call's reply; ECS's task state change events,
as EventBridge delivers them (no ``action``), are parsed by airlaunch.launcher.platform_events,
which says why nothing in them but the task they name is trusted. A reap then handles again the
ECS events whose handling failed (airlaunch.launcher.failed_events).

A call the launcher refuses gets a refusal naming the field (nothing is started then), and a
launch the platform may accept a moment later is refused as retryable. Unexpected failures
raise, which Lambda reports as a FunctionError; so does a retryable failure to handle an ECS
event, which Lambda then delivers again.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from functools import cache
from typing import Any

import boto3

from airlaunch.aws_clients import keep_connections
from airlaunch.catalog import CatalogError, CatalogFile
from airlaunch.launcher import failed_events
from airlaunch.launcher.backends.base import Backend, LaunchError
from airlaunch.launcher.platform_events import EcsTaskStateChange, is_platform_event
from airlaunch.launcher.service import Launcher
from airlaunch.launcher.settings import LauncherSettings
from airlaunch.protocol import (
    Action,
    AnyReply,
    DescribeCall,
    DescribeReply,
    ErrorKind,
    InvalidRequest,
    LaunchCall,
    LaunchReply,
    ListCall,
    ListedTask,
    ListReply,
    PingCall,
    PingReply,
    ReapCall,
    ReapReply,
    Refusal,
    StopCall,
    StopReply,
    action_of,
    parse_call,
)

log = logging.getLogger(__name__)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _setup_logging(level: str) -> None:
    root = logging.getLogger()
    for h in root.handlers:
        h.setFormatter(_JsonFormatter())
    if not root.handlers:
        stream = logging.StreamHandler()
        stream.setFormatter(_JsonFormatter())
        root.addHandler(stream)
    root.setLevel(level)


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
    settings = LauncherSettings()
    _setup_logging(settings.log_level)
    return Launcher(
        settings=settings,
        catalog=CatalogFile(settings.catalog_path),
        backend=make_backend(settings),
        s3=keep_connections(boto3.client("s3")),  # LocalStack closes a connection not asked to be kept
        environ=dict(os.environ),
    )


def _launch(launcher: Launcher, call: LaunchCall) -> LaunchReply:
    return LaunchReply(launcher.launch(call.request))


def _describe(launcher: Launcher, call: DescribeCall) -> DescribeReply:
    return DescribeReply(launcher.describe(call.handle))


def _stop(launcher: Launcher, call: StopCall) -> StopReply:
    if call.handle is not None:
        layout, task_ref = call.handle.layout, call.handle.task_ref
    else:
        assert call.identity is not None  # a StopCall has one or the other
        layout, task_ref = launcher.layout_of(call.identity), ""
    return StopReply(launcher.stop(layout, task_ref, call.reason, call.identity))


def _list(launcher: Launcher, call: ListCall) -> ListReply:
    live = launcher.backend.live_tasks()
    return ListReply(tuple(ListedTask(t.task_ref, t.layout.bucket, t.layout.prefix, t.started_at) for t in live))


def _reap(launcher: Launcher, call: ReapCall) -> ReapReply:
    """Reap, then handle again the ECS events whose handling failed (through this handler, as first delivered)."""
    return ReapReply(tuple(launcher.reap()), failed_events.after_reap(launcher.settings, handler))


def _ping(launcher: Launcher, call: PingCall) -> PingReply:
    """Readiness: the handler and its backend are loaded; the catalog as it reads now."""
    try:
        return PingReply(launcher.backend.name, tuple(sorted(launcher.catalog.tasks)))
    except CatalogError as exc:
        return PingReply(launcher.backend.name, (), catalog_error=str(exc))


# What each action does: the call parsed by airlaunch.protocol, answered with that call's reply.
ACTIONS: dict[Action, Callable[[Launcher, Any], AnyReply]] = {
    Action.LAUNCH: _launch,
    Action.DESCRIBE: _describe,
    Action.STOP: _stop,
    Action.LIST: _list,
    Action.REAP: _reap,
    Action.PING: _ping,
}


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    launcher = get_launcher()
    platform_event = isinstance(event, dict) and is_platform_event(event)  # ECS's, sent by an EventBridge rule
    action = "task state change event" if platform_event else action_of(event)
    try:
        if platform_event:
            return launcher.task_stopped(EcsTaskStateChange.parse(event)).to_dict()
        call = parse_call(event)
        return ACTIONS[call.action](launcher, call).to_dict()
    except InvalidRequest as exc:
        log.warning("refused %s: %s", action, exc)
        return Refusal.invalid(exc).to_dict()
    except CatalogError as exc:
        log.error("task catalog unusable: %s", exc)
        return Refusal(ErrorKind.CATALOG_ERROR, str(exc), "task").to_dict()
    except LaunchError as exc:
        log.error("%s failed: %s", action, exc)
        if platform_event and exc.retryable:
            raise  # a function error: Lambda delivers the event again (an asynchronous invoke's retries)
        return Refusal(ErrorKind.LAUNCH_ERROR, str(exc), retryable=exc.retryable).to_dict()
