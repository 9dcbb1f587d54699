"""LaunchedTaskTrigger: wait for a launched task's status.json without holding a worker slot.

What it guarantees:

* Latency: with a status queue (``status_queue``, AIRLAUNCH_STATUS_QUEUE) S3 announces each
  status.json on SQS and the triggerer's one long poll for all tasks (``status_notifications``)
  wakes this trigger at once. Without one, completion is seen within one ``poll_interval``.
  A container that ends without writing status.json gets one from the launcher (its Docker
  event watcher, or ECS's task state event), which wakes the trigger the same way.
* Cost: at most one S3 request per ``poll_interval`` per task, never a LIST: a GET of
  status.json, except every ``log_every``-th tick, which reads the next part of the running
  log instead (``log_follower``: bounded per request, however much the task prints). While
  notifications arrive, status.json is read only when one says so, and otherwise once per
  ``log_every`` ticks as a safety net. Every ``describe_every`` ticks it also asks the
  launcher about the container, the fallback for an end no event reported. These periodic
  reads are spread further apart when a triggerer watches many tasks, so that all of its
  tasks together make about AIRLAUNCH_TRIGGERER_READS_PER_SECOND of them: 200 tasks showing
  their logs every 5 s would otherwise cost a 2-core machine's triggerer most of a core.
* Outages: an S3 or Lambda error that passes (connection refused, throttling, 5xx) never
  fails the task while its container may still run: the trigger keeps watching for up to
  ``outage_seconds`` (AIRLAUNCH_OUTAGE_SECONDS); past that it stops the container first,
  then fails the task and says why.
* Restarts: a triggerer restart resumes the watch (log lines already shown may be shown
  again). A trigger that launches (``start_from_trigger``) launches again after a restart,
  and the launcher answers with the container already running or finished for that try,
  so nothing starts twice; the deadline counts from the task instance's start, not from
  the restart.
* Ending: on success it pushes the XComs itself (through the triggerer's Task SDK comms) and
  ends the task in the triggerer (TaskSuccessEvent), so no worker slot is taken to finish
  it. (Not ``TaskSuccessEvent(xcoms=...)``: Airflow 3.3 stores those JSON-encoded a second
  time, and downstream tasks would receive strings.) A failure ends the task in the triggerer
  too (TaskFailedEvent: Airflow applies retries and failure callbacks), its log saying the exit
  code, the cause in words and the last log lines; a worker would take seconds to start just to
  raise it. Under dag.test() a failure resumes the operator, which raises with the same words.
* Cancellation: a user's mark-failed or clear runs ``on_kill``, which stops the container, by
  its handle or, while the launch is still in flight, by the try's identity (the launcher
  then refuses to start it, or stops what it just started); past ``deadline`` (the task's
  execution_timeout) the trigger stops the container itself. A try Airflow ended without
  any of these (a trigger not yet running) is stopped by the triggerer's orphan sweep.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractContextManager, aclosing, nullcontext
from functools import cached_property
from typing import Any

from airflow.sdk.execution_time.xcom import XCom
from airflow.triggers.base import BaseTrigger, TaskFailedEvent, TaskSuccessEvent, TriggerEvent

from airlaunch.config import AirflowSettings
from airlaunch.protocol import (
    AirflowMoments,
    Handle,
    InvalidRequest,
    LauncherMoments,
    RunIdentity,
    Status,
    TaskState,
    Timeline,
    status_of,
    utcnow,
)
from airlaunch.providers.airflow.hooks.launcher import (
    LauncherError,
    LauncherHook,
    aread,
    launched_message,
    shared_client,
)
from airlaunch.providers.airflow.hooks.retry import aretrying, is_transient
from airlaunch.providers.airflow.triggers import orphan_sweep, status_notifications
from airlaunch.providers.airflow.triggers.launch_spec import (
    CannotStartHere,
    identity_of_ti,
    launch_request,
    resolve_launch_spec,
)
from airlaunch.providers.airflow.triggers.log_follower import LogFollower

HANDLE_XCOM_KEY = "airlaunch_handle"
LAUNCH_ON_WORKER = "launch_on_worker"
# The triggers watching a container, per event loop (one per triggerer): what spreads their periodic reads.
_WATCHING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.WeakSet[LaunchedTaskTrigger]] = (
    weakref.WeakKeyDictionary()
)


def failure_message(event: dict[str, Any]) -> str:
    """One readable message: what ended the task, in words, its exit code and the last lines it printed."""
    status = event.get("status")
    if status is None:
        return f"container task {event.get('state')}: {event.get('detail')}"
    parsed = Status.from_dict(status)
    tail = "\n".join(f"    {line}" for line in parsed.log_tail) or "    (none)"
    recorded = (
        " (recorded by the launcher: the container left no status.json)" if parsed.written_by == "launcher" else ""
    )
    return (
        f"container task {parsed.state.value} (reason: {parsed.reason.value}, exit code {parsed.exit_code}): "
        f"{parsed.error}{recorded}\nlast log lines:\n{tail}"
    )


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
    if status.cached_from:  # served from the result cache: the try whose result this is
        summary["cached_from"] = status.cached_from
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
        launch_requested_at: str | None = None,
    ) -> None:
        super().__init__()
        if handle is None and launch is None:
            raise ValueError("LaunchedTaskTrigger needs the handle of a launched task, or a launch to make")
        self.settings = AirflowSettings()
        self.handle = Handle.from_dict(handle) if handle is not None else None
        self.identity = RunIdentity.from_dict(identity) if identity is not None else None
        self.launch = launch
        self.function_name = function_name or self.settings.function_name
        self.aws_conn_id = aws_conn_id or self.settings.aws_conn_id
        self.region_name = region_name
        self.poll_interval = poll_interval or self.settings.poll_interval
        self.log_every = max(2, log_every)
        self.describe_every = max(2, describe_every)
        self.deadline = deadline
        self.max_xcom_bytes = max_xcom_bytes or self.settings.max_xcom_bytes
        self.end_from_trigger = end_from_trigger
        self.status_queue = self.settings.status_queue if status_queue is None else status_queue
        self.launch_requested_at = launch_requested_at
        self._listener: status_notifications.StatusListener | None = None
        self._outage_since: float | None = None

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
                "launch_requested_at": self.launch_requested_at,
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

    # -- the run ----------------------------------------------------------------------------------
    async def run(self) -> AsyncIterator[TriggerEvent]:
        orphan_sweep.ensure_running(self.hook, self.settings.sweep_seconds)
        if self.handle is None:
            refusal = await self._launch()
            if refusal is not None:
                yield refusal
                return
        layout = self.watched.layout
        s3 = await shared_client(self.hook.s3_hook)
        follower = LogFollower(layout, self.log, self.settings.log_read_bytes)
        notified: AbstractContextManager[asyncio.Event | None] = nullcontext()
        if self.status_queue:
            self._listener = status_notifications.listener(self.status_queue, self.aws_conn_id, self.region_name)
            notified = self._listener.watch(layout.bucket, layout.status_key)
        watching = _WATCHING.setdefault(asyncio.get_running_loop(), weakref.WeakSet())
        watching.add(self)
        try:
            with notified as wake:
                async with aclosing(self._watch(s3, wake, follower)) as events:
                    async for event in events:
                        yield self._end_failed(event)
                        return
        finally:
            watching.discard(self)

    async def _watch(
        self, s3: Any, wake: asyncio.Event | None, follower: LogFollower
    ) -> AsyncGenerator[TriggerEvent, None]:
        """Tick every poll_interval: GET status.json, or on every log_every-th tick the next log part.

        While notifications arrive (``wake``), status.json is read when one says it was
        written, and otherwise only every log_every-th tick, as a safety net. Every
        describe_every-th tick the launcher is asked about the container, without waiting for it.
        """
        tick = 0
        woke = False
        describing: asyncio.Task[Status | None] | None = None
        try:
            while True:
                polling = wake is None or (self._listener is not None and self._listener.degraded)
                stretch = self._stretch()
                every = self.log_every * stretch
                try:
                    if tick % every == every - 1 and not woke:
                        await follower.step(s3)
                    elif woke or polling or tick % every == 0:
                        status = await self._read_status(s3)
                        if status is not None:
                            yield await self._finished(s3, status, follower)
                            return
                    if describing is not None and describing.done():
                        asked, describing = describing, None
                        status = asked.result()
                        if status is not None:
                            yield await self._finished(s3, status, follower)
                            return
                    elif describing is None and (tick + 1) % (self.describe_every * stretch) == 0:
                        # In the background: behind a queue of launches (a fan-out's) the answer can take
                        # minutes, and meanwhile this task's notification and status reads must still count.
                        describing = asyncio.ensure_future(self._ended_unrecorded())
                    self._outage_since = None
                except InvalidRequest as exc:  # a malformed status.json: fail with what is wrong, not a traceback
                    yield self._failure("failed", f"{exc}")
                    return
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    gave_up = await self._ride_out(exc)
                    if gave_up is not None:
                        yield gave_up
                        return
                if self.deadline is not None and time.time() > self.deadline:
                    yield await self._timed_out(s3, follower)
                    return
                tick += 1
                woke = await self._sleep(wake)
        finally:
            if describing is not None:
                describing.cancel()

    def _stretch(self) -> int:
        """How many times further apart this trigger's periodic reads go: the triggerer's watched tasks
        together make about triggerer_reads_per_second of them (two per log_every ticks each)."""
        watching = len(_WATCHING.get(asyncio.get_running_loop(), ()))
        per_second = 2 * watching / (self.log_every * self.poll_interval)
        return max(1, math.ceil(per_second / self.settings.triggerer_reads_per_second))

    async def _read_status(self, s3: Any) -> Status | None:
        layout = self.watched.layout
        return status_of(await aread(s3, layout.bucket, layout.status_key), layout)

    async def _ended_unrecorded(self) -> Status | None:
        """Ask the launcher about the container: it records (and returns) an end no event reported."""
        return (await self.hook.adescribe(self.watched, budget=0)).status

    async def _ride_out(self, exc: BaseException) -> TriggerEvent | None:
        """An S3 or Lambda error that may pass: keep watching, unless it lasted outage_seconds."""
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = now
            self.log.warning("S3 or the launcher is unreachable (%s): still watching", exc)
        lasted = now - self._outage_since
        if lasted < self.settings.outage_seconds:
            return None
        why = f"S3 or the launcher was unreachable for {lasted:.0f} s (last error: {exc})"
        stopped = await self._stop(f"{why}; giving up", budget=30)
        return self._failure("failed", f"{why}; the container was {'stopped' if stopped else 'NOT confirmed stopped'}")

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

    def _failure(self, state: str, detail: str) -> TriggerEvent:
        return TriggerEvent({"state": state, "detail": detail, "handle": self.watched.to_dict()})

    def _end_failed(self, event: TriggerEvent) -> TriggerEvent:
        """A failure (the container failed, timed out, or could not be watched) ends the task here, with
        the message in its log: resuming it on a worker only to raise would take seconds (a scheduler
        loop and a new process). Outside a triggerer (dag.test(), a test) it resumes as before."""
        payload = event.payload
        if not (self.end_from_trigger and self.task_instance is not None and isinstance(payload, dict)):
            return event
        if payload.get("state") not in (TaskState.FAILED.value, "timeout"):
            return event
        self.log.error("%s", failure_message(payload))
        return TaskFailedEvent()

    # -- launching from the triggerer -------------------------------------------------------------
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
        self.__dict__.pop("hook", None)  # the settings may name another connection or function
        context = ti.get_template_context()
        jinja_env = self.get_template_env()
        task = str(self.render_template(spec.task, context, jinja_env))
        try:
            request = launch_request(
                context,
                task,
                self.render_template(spec.parameters, context, jinja_env),
                self.render_template(spec.overrides, context, jinja_env),
                spec.include_dag_params,
                spec.cache,
            )
            self.identity = request.identity  # from now on a kill can stop it, even before the handle comes
            self.launch_requested_at = utcnow()
            handle = await self.hook.alaunch(request)
        except (InvalidRequest, LauncherError, TypeError, ValueError) as exc:
            detail = f"cannot launch catalog task {task!r}: {exc}"
            return TriggerEvent({"state": "launch_failed", "detail": detail})
        self.log.info(launched_message(task, handle))
        await self._push_links(request.identity, handle, task)
        if not spec.wait_for_completion:  # as the operator does; a watched task's XComs come at its end
            await self._set_xcom(request.identity, HANDLE_XCOM_KEY, handle.to_dict())
            await self._set_xcom(request.identity, "return_value", handle.to_dict())
            return TaskSuccessEvent()
        self.handle = handle
        if spec.execution_timeout is not None:
            started = getattr(ti, "start_date", None)  # a triggerer restart must not extend the timeout
            begin = started.timestamp() if started is not None else time.time()
            self.deadline = begin + spec.execution_timeout
        return None

    async def _push_links(self, identity: RunIdentity, handle: Handle, task: str) -> None:
        """The operator's extra links (results, log stream, ECS task) for a task no worker ever runs: Airflow
        builds links on the worker, so a task launched here would show none. A failure costs the links only."""
        from airlaunch.providers.airflow.links import link_xcoms  # links imports this module's XCom key

        try:
            for key, url in link_xcoms(handle.to_dict(), task).items():
                await self._set_xcom(identity, key, url)
        except Exception as exc:
            self.log.warning("cannot push the extra links from the triggerer (%s)", exc)

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

    # -- the end ----------------------------------------------------------------------------------
    async def _finished(self, s3: Any, status: Status, follower: LogFollower) -> TriggerEvent:
        seen_at = utcnow()
        try:
            await follower.finish(s3)
        except Exception as exc:  # the log is for reading: its loss never fails the task
            self.log.warning(
                "could not read the rest of the log (%s); it is at %s", exc, follower.layout.uri("log.txt")
            )
        self.log.info("%s %s with exit code %s", self.watched.layout.uri(), status.state.value, status.exit_code)
        result = None
        if status.state is TaskState.SUCCEEDED and "result" in status.result_keys:
            key = status.result_keys["result"]
            try:
                result = await self._read_result(s3, key)
            except Exception as exc:
                return self._failure(
                    "failed", f"the task succeeded but its result s3://{self.watched.bucket}/{key} {exc}"
                )
        if status.state is TaskState.SUCCEEDED and self.end_from_trigger and await self._push_xcoms(status, result):
            await self._record_timeline(s3, seen_at)
            return TaskSuccessEvent()
        await self._record_timeline(s3, seen_at)
        state, handle = status.state.value, self.watched.to_dict()
        return TriggerEvent({"state": state, "status": status.to_dict(), "result": result, "handle": handle})

    async def _record_timeline(self, s3: Any, seen_at: str) -> None:
        """timings.json: what Airflow's side and the launcher saw of this try (``airlaunch report``)."""
        started = getattr(self.task_instance, "start_date", None)
        timeline = Timeline(
            airflow=AirflowMoments(
                task_started_at=started.isoformat(timespec="milliseconds") if started else None,
                launch_requested_at=self.launch_requested_at,
                completion_seen_at=seen_at,
                task_ended_at=utcnow(),
            ),
            launcher=LauncherMoments.from_dict(self.watched.timings),
        )
        try:
            layout = self.watched.layout
            body = timeline.to_json().encode()
            await s3.put_object(Bucket=layout.bucket, Key=layout.timings_key, Body=body, ContentType="application/json")
        except Exception as exc:  # timings are for reading: their loss never fails the task
            self.log.warning("could not record timings.json: %s", exc)

    async def _read_result(self, s3: Any, key: str) -> Any:
        body = None
        async for attempt in aretrying(self.settings.retry_seconds, self.settings.retry_max_backoff, "reading result"):
            with attempt:
                body = await aread(s3, self.watched.bucket, key)
        if body is None:
            raise LookupError("is listed in status.json but does not exist")
        if len(body) > self.max_xcom_bytes:
            self.log.info("result.json is %d bytes, over %d: XCom gets its S3 key only", len(body), self.max_xcom_bytes)
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ValueError(f"is not JSON: {exc}") from exc

    async def _push_xcoms(self, status: Status, result: Any) -> bool:
        """Store the XComs as the task itself would; False (resume on a worker instead) if that fails."""
        try:
            for key, value in xcoms_for(self.watched, status, result).items():
                await self._set_xcom(self.watched_identity, key, value)
        except Exception as exc:
            self.log.warning("cannot push XComs from the triggerer (%s): resuming on a worker", exc)
            return False
        return True

    # -- stopping ---------------------------------------------------------------------------------
    async def _stop(self, reason: str, budget: float | None = None) -> bool:
        """Stop this try's container, by handle and identity, whichever is known; False if that failed."""
        identity = self.identity or self._identity_from_ti()
        if self.handle is None and identity is None:
            self.log.warning("cannot stop: neither the launch handle nor the task instance is known")
            return False
        try:
            await self.hook.astop(reason, handle=self.handle, identity=identity, budget=budget)
        except Exception as exc:
            self.log.error("stopping the container failed: %s", exc)
            return False
        return True

    def _identity_from_ti(self) -> RunIdentity | None:
        ti = self.task_instance
        try:
            return identity_of_ti(ti) if ti is not None else None
        except (InvalidRequest, AttributeError):
            return None

    async def _timed_out(self, s3: Any, follower: LogFollower) -> TriggerEvent:
        self.log.error("execution_timeout reached: stopping %s", self.watched.task_ref)
        stopped = await self._stop("Airflow's execution_timeout was reached")
        try:
            await follower.finish(s3)
        except Exception as exc:
            self.log.warning("could not read the rest of the log: %s", exc)
        outcome = "the container was stopped" if stopped else "stopping the container FAILED"
        return self._failure("timeout", f"execution_timeout reached; {outcome}")

    async def on_kill(self) -> None:
        """The user marked the task failed/success or cleared it: stop the container, launched or not yet."""
        self.log.info("task killed by a user action: stopping its container")
        await self._stop("the Airflow task was marked failed or success, or cleared")
