"""LaunchedTaskTrigger: wait for a launched task's status.json without holding a worker slot.

What it guarantees:

* Latency: with a status queue (``status_queue``, AIRLAUNCH_STATUS_QUEUE) S3 announces each
  status.json on SQS and the triggerer's one long poll for all tasks (``status_notifications.py``)
  wakes this trigger at once. Without one, completion is seen within one ``poll_interval``.
* Cost: at most one S3 request per ``poll_interval`` per task, never a LIST: a GET of
  status.json, except every ``log_every``-th tick, which is a ranged GET of log.txt instead
  (that is how the container's output reaches the Airflow task log while it runs). While
  notifications arrive, status.json is read only when one says so, and otherwise once per
  ``log_every`` ticks as a safety net. Every ``describe_every`` ticks it also asks the
  launcher Lambda whether the container still exists, so a task that died without writing
  status.json fails instead of hanging.
* Restarts: a triggerer restart resumes the watch (log lines already shown may be shown
  again). A trigger that launches (``start_from_trigger``) launches again after a restart,
  and the launcher answers with the container already running or finished for that
  identity, so nothing starts twice.
* Starting in the triggerer: with ``launch`` (see ``launch_spec``) the trigger first
  launches the task itself, so the Airflow task never visits a worker at all.
* Ending: on success it pushes the XComs itself (through the triggerer's Task SDK comms) and
  ends the task in the triggerer (TaskSuccessEvent), so no worker slot is taken to finish
  it. (Not ``TaskSuccessEvent(xcoms=...)``: Airflow 3.3 stores those JSON-encoded a second
  time, and downstream tasks would receive strings.) A failure resumes the operator, which
  raises with the exit code, reason and log tail, so retries apply as usual.
* Cancellation: a user's mark-failed or clear runs ``on_kill``, which stops the container;
  past ``deadline`` (the task's execution_timeout) the trigger stops the container itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, nullcontext
from functools import cached_property
from typing import Any

from airflow.sdk.execution_time.xcom import XCom
from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airlaunch.config import AirflowSettings
from airlaunch.protocol import Handle, InvalidRequest, RunIdentity, Status, TaskState
from airlaunch.providers.airflow.hooks.launcher import (
    LauncherError,
    LauncherHook,
    aread,
    launched_message,
    shared_client,
)
from airlaunch.providers.airflow.triggers import status_notifications
from airlaunch.providers.airflow.triggers.launch_spec import CannotStartHere, launch_request, resolve_launch_spec

HANDLE_XCOM_KEY = "airlaunch_handle"
LAUNCH_ON_WORKER = "launch_on_worker"


def xcoms_for(handle: Handle, status: Status, result: Any) -> dict[str, Any]:
    """The XComs a finished task leaves: its small result as return_value, and where everything is."""
    summary = {
        "state": status.state.value,
        "exit_code": status.exit_code,
        "reason": status.reason.value,
        "bucket": handle.bucket,
        "prefix": handle.prefix,
        "uri": handle.layout.uri(),
        "result_keys": status.result_keys,
        "task_ref": handle.task_ref,
    }
    return {"return_value": result, "airlaunch": summary}


class LaunchedTaskTrigger(BaseTrigger):
    def __init__(
        self,
        *,
        handle: dict[str, Any] | None = None,
        identity: dict[str, Any] | None = None,
        launch: dict[str, Any] | None = None,
        function_name: str | None = None,
        aws_conn_id: str | None = None,
        region_name: str | None = None,
        poll_interval: float | None = None,
        log_every: int = 5,
        describe_every: int = 30,
        deadline: float | None = None,
        max_xcom_bytes: int | None = None,
        end_from_trigger: bool = True,
        status_queue: str | None = None,
    ) -> None:
        super().__init__()
        if handle is None and launch is None:
            raise ValueError("LaunchedTaskTrigger needs the handle of a launched task, or a launch to make")
        settings = AirflowSettings()
        self.handle = Handle.from_dict(handle) if handle is not None else None
        self.identity = RunIdentity.from_dict(identity) if identity is not None else None
        self.launch = launch
        self.function_name = function_name or settings.function_name
        self.aws_conn_id = aws_conn_id or settings.aws_conn_id
        self.region_name = region_name
        self.poll_interval = poll_interval or settings.poll_interval
        self.log_every = max(2, log_every)
        self.describe_every = max(2, describe_every)
        self.deadline = deadline
        self.max_xcom_bytes = max_xcom_bytes or settings.max_xcom_bytes
        self.end_from_trigger = end_from_trigger
        self.status_queue = settings.status_queue if status_queue is None else status_queue
        self._log_offset = 0
        self._listener: status_notifications.StatusListener | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "handle": self.handle.to_dict() if self.handle is not None else None,
                "identity": self.identity.to_dict() if self.identity is not None else None,
                "launch": self.launch,
                "function_name": self.function_name,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "poll_interval": self.poll_interval,
                "log_every": self.log_every,
                "describe_every": self.describe_every,
                "deadline": self.deadline,
                "max_xcom_bytes": self.max_xcom_bytes,
                "end_from_trigger": self.end_from_trigger,
                "status_queue": self.status_queue,
            },
        )

    @property
    def watched(self) -> Handle:
        if self.handle is None:
            raise RuntimeError("no task launched yet")
        return self.handle

    @property
    def watched_identity(self) -> RunIdentity:
        if self.identity is None:
            raise RuntimeError("no task launched yet")
        return self.identity

    @cached_property
    def hook(self) -> LauncherHook:
        return LauncherHook(
            function_name=self.function_name, aws_conn_id=self.aws_conn_id, region_name=self.region_name
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if self.handle is None:
            refusal = await self._launch()
            if refusal is not None:
                yield refusal
                return
        layout = self.watched.layout
        s3 = await shared_client(self.hook.s3_hook)
        notified: AbstractContextManager[asyncio.Event | None] = nullcontext()
        if self.status_queue:
            self._listener = status_notifications.listener(self.status_queue, self.aws_conn_id, self.region_name)
            notified = self._listener.watch(layout.bucket, layout.status_key)
        with notified as wake:
            async for event in self._watch(s3, wake):
                yield event
                return

    async def _watch(self, s3: Any, wake: asyncio.Event | None) -> AsyncIterator[TriggerEvent]:
        """Tick every poll_interval: GET status.json, or on every log_every-th tick the new log lines.

        While notifications arrive (``wake``), status.json is read when one says it was
        written, and otherwise only every log_every-th tick, as a safety net.
        """
        layout = self.watched.layout
        tick = 0
        woke = False
        while True:
            wake = self._still_notified(wake)
            log_tick = tick % self.log_every == self.log_every - 1
            if log_tick and not woke:
                await self._stream_log(s3)
            elif woke or wake is None or tick % self.log_every == 0:
                body = await aread(s3, layout.bucket, layout.status_key)
                if body is not None:
                    yield await self._finished(s3, Status.from_json(body))
                    return
            if self.deadline is not None and time.time() > self.deadline:
                yield await self._timed_out(s3)
                return
            if tick % self.describe_every == self.describe_every - 1:
                lost = await self._lost_detail()
                if lost is not None:
                    handle = self.watched.to_dict()
                    yield TriggerEvent({"state": TaskState.LOST.value, "detail": lost, "handle": handle})
                    return
            tick += 1
            woke = await self._sleep(wake)

    def _still_notified(self, wake: asyncio.Event | None) -> asyncio.Event | None:
        failed = self._listener.failed if self._listener is not None else None
        if wake is not None and failed is not None:
            self.log.warning("status notifications stopped (%s): polling S3 instead", failed)
            return None
        return wake

    async def _sleep(self, wake: asyncio.Event | None) -> bool:
        """Wait one poll interval; True when a notification cut it short."""
        if wake is None:
            await asyncio.sleep(self.poll_interval)
            return False
        try:
            await asyncio.wait_for(wake.wait(), self.poll_interval)
        except TimeoutError:
            return False
        wake.clear()
        return True

    async def _launch(self) -> TriggerEvent | None:
        """Launch the task from the triggerer; an event instead when it cannot or must not be watched."""
        ti = self.task_instance
        if ti is None or not hasattr(ti, "get_template_context"):
            return TriggerEvent({"state": LAUNCH_ON_WORKER, "detail": "no task context in the triggerer"})
        try:
            spec = await resolve_launch_spec(self.launch or {}, ti)
        except CannotStartHere as exc:
            self.log.info("launching from a worker instead: %s", exc)
            return TriggerEvent({"state": LAUNCH_ON_WORKER, "detail": str(exc)})
        for name, value in spec.settings.items():
            setattr(self, name, value)
        context = ti.get_template_context()
        jinja_env = self.get_template_env()
        try:
            request = launch_request(
                context,
                spec.task,
                self.render_template(spec.parameters, context, jinja_env),
                self.render_template(spec.overrides, context, jinja_env),
                spec.include_dag_params,
            )
            handle = await self.hook.alaunch(request)
        except (InvalidRequest, LauncherError, TypeError, ValueError) as exc:
            detail = f"cannot launch catalog task {spec.task!r}: {exc}"
            return TriggerEvent({"state": "launch_failed", "detail": detail})
        self.log.info(launched_message(spec.task, handle))
        if not spec.wait_for_completion:  # as the operator does; a watched task's XComs come at its end
            await self._set_xcom(request.identity, HANDLE_XCOM_KEY, handle.to_dict())
            await self._set_xcom(request.identity, "return_value", handle.to_dict())
            return TaskSuccessEvent()
        self.handle, self.identity = handle, request.identity
        if spec.execution_timeout is not None:
            self.deadline = time.time() + spec.execution_timeout
        return None

    @staticmethod
    async def _set_xcom(identity: RunIdentity, key: str, value: Any) -> None:
        await XCom.aset(
            key,
            value,
            dag_id=identity.dag_id,
            task_id=identity.task_id,
            run_id=identity.run_id,
            map_index=identity.map_index,
        )

    async def _finished(self, s3: Any, status: Status) -> TriggerEvent:
        wants_result = status.state is TaskState.SUCCEEDED and "result" in status.result_keys
        _, body = await asyncio.gather(  # the rest of the log and the result, at once
            self._stream_log(s3),
            aread(s3, self.watched.bucket, status.result_keys["result"]) if wants_result else _nothing(),
        )
        self.log.info("%s %s with exit code %s", self.watched.layout.uri(), status.state.value, status.exit_code)
        result = None
        if wants_result:
            if body is not None and len(body) <= self.max_xcom_bytes:
                result = json.loads(body)
            elif body is not None:
                self.log.info(
                    "result.json is %d bytes, over %d: XCom gets its S3 key only", len(body), self.max_xcom_bytes
                )
        if status.state is TaskState.SUCCEEDED and self.end_from_trigger and await self._push_xcoms(status, result):
            return TaskSuccessEvent()
        state, handle = status.state.value, self.watched.to_dict()
        return TriggerEvent({"state": state, "status": status.to_dict(), "result": result, "handle": handle})

    async def _push_xcoms(self, status: Status, result: Any) -> bool:
        """Store the XComs as the task itself would; False (resume on a worker instead) if that fails."""
        try:
            for key, value in xcoms_for(self.watched, status, result).items():
                await self._set_xcom(self.watched_identity, key, value)
        except Exception as exc:
            self.log.warning("cannot push XComs from the triggerer (%s): resuming on a worker", exc)
            return False
        return True

    async def _stream_log(self, s3: Any) -> None:
        """Show the log lines written since the last look (ranged GET from the last offset)."""
        chunk = await aread(s3, self.watched.bucket, self.watched.layout.log_key, f"bytes={self._log_offset}-")
        if not chunk:
            return
        complete = chunk.rfind(b"\n") + 1  # show whole lines only; the rest comes next time
        if complete == 0:
            return
        for line in chunk[:complete].decode("utf-8", "replace").splitlines():
            self.log.info("[container] %s", line)
        self._log_offset += complete

    async def _lost_detail(self) -> str | None:
        """Ask the launcher whether the task still runs; the reason when it is gone without a status."""
        try:
            response = await self.hook.acall({"action": "describe", "handle": self.watched.to_dict()})
        except Exception as exc:  # the launcher being briefly unreachable must not fail the task
            self.log.warning("describe failed, will retry: %s", exc)
            return None
        description = response["description"]
        if description["state"] == TaskState.LOST.value:
            return description.get("detail") or "the container is gone and wrote no status.json"
        return None

    async def _stop(self, reason: str) -> None:
        await self.hook.acall({"action": "stop", "handle": self.watched.to_dict(), "reason": reason})

    async def _timed_out(self, s3: Any) -> TriggerEvent:
        self.log.error("execution_timeout reached: stopping %s", self.watched.task_ref)
        await self._stop("Airflow execution_timeout reached")
        await self._stream_log(s3)
        return TriggerEvent(
            {
                "state": "timeout",
                "detail": "execution_timeout reached; the container was stopped",
                "handle": self.watched.to_dict(),
            }
        )

    async def on_kill(self) -> None:
        """The user marked the task failed/success or cleared it: stop the container."""
        if self.handle is None:
            self.log.info("task killed before its launch completed: nothing to stop")
            return
        self.log.info("task killed by a user action: stopping %s", self.watched.task_ref)
        await self._stop("Airflow task killed by a user action")


async def _nothing() -> None:
    return None
