"""The launcher's three actions, independent of how they are invoked (Lambda or tests)."""

from __future__ import annotations

import logging
from typing import Any

import yaml
from botocore.exceptions import ClientError

from airlaunch.catalog import Catalog, CatalogFile
from airlaunch.config import LauncherSettings
from airlaunch.launcher.backends.base import Backend, LaunchError
from airlaunch.protocol import (
    ENV_BUCKET,
    ENV_EXECUTION_ID,
    ENV_PREFIX,
    ENV_TIMEOUT_SECONDS,
    Description,
    Handle,
    LaunchRequest,
    ResultLayout,
    Status,
    StopReason,
    TaskState,
    utcnow,
)

log = logging.getLogger(__name__)

# Forwarded from the launcher's own environment so local tasks reach the same AWS (LocalStack).
_FORWARDED_ENV = ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def params_document(request: LaunchRequest) -> dict[str, Any]:
    """The params.yaml a task reads: its params, and which Airflow task try it is."""
    identity = request.identity
    return {
        "params": request.params,
        "run": {**identity.to_dict(), "execution_id": identity.execution_id, "task": request.task},
    }


class Launcher:
    def __init__(
        self,
        settings: LauncherSettings,
        catalog: Catalog | CatalogFile,
        backend: Backend,
        s3: Any,
        environ: dict[str, str],
    ):
        self.settings = settings
        self.catalog = catalog
        self.backend = backend
        self.s3 = s3
        self.forwarded_env = {k: environ[k] for k in _FORWARDED_ENV if environ.get(k)}

    def launch(self, request: LaunchRequest) -> Handle:
        """Start the task unless this identity already ran or runs; never wait for it."""
        spec = self.catalog.get(request.task).with_overrides(request.overrides)
        layout = ResultLayout.for_identity(self.settings.bucket, self.settings.key_prefix, request.identity)

        def handle(task_ref: str, launched: bool) -> Handle:
            return Handle(self.backend.name, task_ref, layout.bucket, layout.prefix, launched)

        # Order matters: a live task first, then a finished one, so a task that ends between
        # the two checks is still seen.
        existing = self.backend.find(request.identity)
        if existing:
            log.info("already running: %s (%s)", request.identity.execution_id, existing)
            return handle(existing, launched=False)
        if self._read_status(layout) is not None:
            log.info("already finished: %s", request.identity.execution_id)
            return handle("", launched=False)

        self.s3.put_object(
            Bucket=layout.bucket,
            Key=layout.params_key,
            Body=yaml.safe_dump(params_document(request), sort_keys=False).encode(),
            ContentType="application/yaml",
        )
        env = {
            **spec.env,
            **self.forwarded_env,
            ENV_BUCKET: layout.bucket,
            ENV_PREFIX: layout.prefix,
            ENV_EXECUTION_ID: request.identity.execution_id,
            ENV_TIMEOUT_SECONDS: str(spec.timeout_seconds),
        }
        if self.settings.task_endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.settings.task_endpoint_url
        try:
            started = self.backend.start(spec, request.identity, env)
        except LaunchError:
            self.s3.delete_object(Bucket=layout.bucket, Key=layout.params_key)
            raise
        return handle(started.task_ref, started.launched)

    def describe(self, handle: Handle) -> Description:
        """status.json decides when present; otherwise ask the platform."""
        status = self._read_status(handle.layout)
        if status is not None:
            return Description(status.state, status)
        if not handle.task_ref:
            return Description(TaskState.LOST, detail="no task was started and no status.json exists")
        seen = self.backend.describe(handle.task_ref)
        if seen.state is TaskState.LOST:
            # The task may have written its status just before it went away.
            status = self._read_status(handle.layout)
            if status is not None:
                return Description(status.state, status)
            detail = seen.detail or "task ended without writing status.json"
            if seen.exit_code is not None:
                detail += f" (exit code {seen.exit_code})"
            return Description(TaskState.LOST, detail=detail)
        return Description(seen.state, detail=seen.detail)

    def stop(self, handle: Handle, reason: str) -> Description:
        if handle.task_ref:
            self.backend.stop(handle.task_ref, reason)
        description = self.describe(handle)
        if description.state is TaskState.LOST:
            # Stopped before its runtime could record it (e.g. SIGTERM in its first instants,
            # which PID 1 ignores until it has a handler): write the marker on its behalf.
            description = Description(TaskState.FAILED, self._record_stop(handle, reason, description.detail or ""))
        return description

    def _record_stop(self, handle: Handle, reason: str, detail: str) -> Status:
        now = utcnow()
        root = self.settings.key_prefix.strip("/")
        status = Status(
            state=TaskState.FAILED,
            exit_code=None,
            reason=StopReason.STOPPED,
            started_at=now,
            ended_at=now,
            execution_id=handle.prefix.removeprefix(f"{root}/" if root else "").rstrip("/"),
            error=f"stopped ({reason}) before the task runtime recorded it; {detail}",
            result_keys={"params": handle.layout.params_key},
        )
        try:  # never overwrite a status.json the runtime managed to write after all
            self.s3.put_object(
                Bucket=handle.bucket,
                Key=handle.layout.status_key,
                Body=status.to_json().encode(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
                raise
            return self._read_status(handle.layout) or status
        return status

    def _read_status(self, layout: ResultLayout) -> Status | None:
        try:
            body = self.s3.get_object(Bucket=layout.bucket, Key=layout.status_key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return Status.from_json(body)
