"""A try's files in S3 as the launcher reads and writes them: params.yaml, stop.json, status.json,
ecs.json.

* params.yaml holds what the task reads (its params, which try it is) and the launch's overrides,
  so that a try that failed to start can be started again exactly as it was asked for
  (:func:`request_of` reads the request back).
* status.json decides how a try ended. The launcher writes one only on the runtime's behalf
  (:meth:`TryFiles.write_stand_in`, ``written_by`` "launcher"), and only where none exists: the
  write is conditional (``IfNoneMatch``), so the runtime's own status always wins, even one written
  a moment after the launcher looked.
* stop.json says that airlaunch asked a try to stop, and why; a launch that arrives after it starts
  nothing, and the runtime records the stop as airlaunch's.
"""

from __future__ import annotations

import logging
from typing import Any

import yaml
from botocore.exceptions import ClientError

from airlaunch.aws_errors import body_if_present
from airlaunch.launcher.backends.base import BackendState
from airlaunch.protocol import (
    EcsTimes,
    InvalidRequest,
    LaunchRequest,
    Overrides,
    ResultLayout,
    RunIdentity,
    Status,
    StopReason,
    StopRequest,
    TaskState,
    status_of,
    utcnow,
)

log = logging.getLogger(__name__)


def params_document(request: LaunchRequest) -> dict[str, Any]:
    """The params.yaml a task reads: its params, and which Airflow task try it is; and the launch's
    overrides, so that a try that failed to start can be started again exactly as it was asked for."""
    identity = request.identity
    document: dict[str, Any] = {
        "params": request.params,
        "run": {**identity.to_dict(), "execution_id": identity.execution_id, "task": request.task},
    }
    if request.overrides.to_dict():
        document["overrides"] = request.overrides.to_dict()
    return document


def request_of(document: Any) -> LaunchRequest:
    """The launch request a params.yaml was written for (InvalidRequest if it is not one)."""
    if not isinstance(document, dict) or not isinstance(document.get("run"), dict):
        raise InvalidRequest("params.yaml", "has no run section")
    run = {k: v for k, v in document["run"].items() if k not in ("execution_id", "task")}
    return LaunchRequest(
        task=document["run"].get("task"),
        identity=RunIdentity.from_dict(run),
        params=document.get("params") or {},
        overrides=Overrides.from_dict(document.get("overrides")),
    )


class TryFiles:
    """The tries under one bucket's key prefix (``key_prefix``: the launcher's, for the stand-in's id)."""

    def __init__(self, s3: Any, key_prefix: str) -> None:
        self.s3 = s3
        self.key_prefix = key_prefix

    def read(self, layout: ResultLayout, key: str) -> bytes | None:
        return body_if_present(self.s3, layout.bucket, key)

    def read_status(self, layout: ResultLayout) -> Status | None:
        return status_of(self.read(layout, layout.status_key), layout)

    def read_stop(self, layout: ResultLayout) -> StopRequest | None:
        body = self.read(layout, layout.stop_key)
        return StopRequest.from_json(body) if body is not None else None

    def read_params(self, layout: ResultLayout) -> LaunchRequest | None:
        """The request the try's params.yaml was written for; None if it is gone or unusable."""
        body = self.read(layout, layout.params_key)
        try:
            return request_of(yaml.safe_load(body)) if body is not None else None
        except (InvalidRequest, yaml.YAMLError) as exc:
            log.error("the params.yaml of %s is unusable (%s)", layout.prefix, exc)
            return None

    def request_stop(self, layout: ResultLayout, why: str) -> None:
        self._put(layout, layout.stop_key, StopRequest(why).to_json().encode())

    def put_params(self, layout: ResultLayout, body: bytes) -> None:
        self.s3.put_object(Bucket=layout.bucket, Key=layout.params_key, Body=body, ContentType="application/yaml")

    def delete_params(self, layout: ResultLayout) -> None:
        self.s3.delete_object(Bucket=layout.bucket, Key=layout.params_key)

    def put_ecs_times(self, layout: ResultLayout, times: EcsTimes) -> None:
        """ECS's own moments of the try's task, for the report's phases (pull, start, stop on ECS's clock)."""
        self._put(layout, layout.ecs_times_key, times.to_json().encode())

    def _put(self, layout: ResultLayout, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=layout.bucket, Key=key, Body=body, ContentType="application/json")

    def write_stand_in(self, layout: ResultLayout, seen: BackendState | None, stop: StopRequest | None) -> Status:
        """The status.json of a try whose runtime wrote none, from what the platform saw (``seen``: None when
        no container ran) and the stop airlaunch asked for; the runtime's own if it wrote one meanwhile."""
        if stop is not None:
            reason = StopReason.STOPPED
            if seen is not None and seen.detail:
                how = seen.detail
            elif seen is not None:  # the platform answered the stop before the task ended (ECS's StopTask)
                how = f"its container was {seen.state.value} when it was asked to stop"
            else:
                how = "its container never started"
            error = f"stopped by airlaunch ({stop.reason}); {how}"
        elif seen is not None:
            reason, error = seen.reason or StopReason.LOST, seen.detail or "its container ended"
        else:
            reason, error = StopReason.LOST, "no container runs for this try and it wrote no status.json"
        now = utcnow()
        root = self.key_prefix.strip("/")
        status = Status(
            state=TaskState.FAILED,
            exit_code=seen.exit_code if seen is not None else None,
            reason=reason,
            started_at=now,
            ended_at=now,
            execution_id=layout.prefix.removeprefix(f"{root}/" if root else "").rstrip("/"),
            error=f"{error}; no status.json from the task, so the launcher wrote this one",
            log_tail=list(seen.log_tail) if seen is not None else [],
            result_keys={"params": layout.params_key},
            host=seen.host if seen is not None else "",
            written_by="launcher",
        )
        try:  # never over a status.json the runtime managed to write after all
            self.s3.put_object(
                Bucket=layout.bucket,
                Key=layout.status_key,
                Body=status.to_json().encode(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
                raise
            return self.read_status(layout) or status
        log.info("recorded the end of %s: %s", layout.prefix, status.error)
        return status
