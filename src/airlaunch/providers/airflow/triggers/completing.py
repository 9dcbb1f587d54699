"""Completing a watched try: what the task is left with, and how it ends.

What it guarantees:

* Success: the trigger pushes the XComs itself (through the triggerer's Task SDK comms) and ends
  the task in the triggerer (TaskSuccessEvent), so no worker slot is taken to finish it. (Not
  ``TaskSuccessEvent(xcoms=...)``: Airflow 3.3 stores those JSON-encoded a second time, and
  downstream tasks would receive strings.) If the push fails, the task resumes on a worker,
  which pushes them from the event instead.
* Failure: the task ends in the triggerer too (TaskFailedEvent: Airflow applies retries and failure
  callbacks), its log saying the exit code, the cause in words and the last log lines; a worker
  would take seconds to start just to raise it. Under dag.test() (no triggerer) a failure resumes
  the operator, which raises with the same words (``failure_message``).
* The result: from status.json when the runtime copied it there (a small one: ``Status.result_json``,
  the same bytes as result.json), else read through transient S3 errors for ``retry_seconds``; one
  over ``max_xcom_bytes`` reaches XCom by its S3 key only; one status.json lists but that is missing
  or not JSON fails the task, naming its key.
* The deadline: the container is stopped first, then the task fails as ``timeout``, saying whether
  the stop was confirmed.
* What is only for reading never fails a task: the rest of the log (shown bounded, as while it ran)
  and timings.json (what Airflow's side and the launcher saw of the try, for ``airlaunch report``).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import TaskFailedEvent, TaskSuccessEvent, TriggerEvent

from airlaunch.protocol import AirflowMoments, LauncherMoments, Status, TaskState, Timeline, utcnow
from airlaunch.providers.airflow.hooks.launcher import aread
from airlaunch.providers.airflow.hooks.retry import aretrying
from airlaunch.providers.airflow.triggers.log_follower import LogFollower
from airlaunch.providers.airflow.triggers.watching import Ended, Outcome, TimedOut
from airlaunch.providers.airflow.xcoms import aset_xcom, xcoms_for

if TYPE_CHECKING:
    from airlaunch.providers.airflow.triggers.launched_task import LaunchedTaskTrigger


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


def failure(trigger: LaunchedTaskTrigger, state: str, detail: str) -> TriggerEvent:
    """The event of a try that failed without a status.json to show (``detail`` says why)."""
    return TriggerEvent({"state": state, "detail": detail, "handle": trigger.watched.to_dict()})


def end_failed(trigger: LaunchedTaskTrigger, event: TriggerEvent) -> TriggerEvent:
    """A failure (the container failed, timed out, or could not be watched) ends the task here, with the message
    in its log; outside a triggerer (dag.test(), a test) the event resumes the task as it is."""
    payload = event.payload
    if not (trigger.end_from_trigger and trigger.task_instance is not None and isinstance(payload, dict)):
        return event
    if payload.get("state") not in (TaskState.FAILED.value, "timeout"):
        return event
    trigger.log.error("%s", failure_message(payload))
    return TaskFailedEvent()


class Completion:
    """The end of one trigger's watch, given how it ended (``complete``)."""

    def __init__(self, trigger: LaunchedTaskTrigger, s3: Any, follower: LogFollower) -> None:
        self.trigger = trigger
        self.s3 = s3
        self.follower = follower
        self.handle = trigger.watched
        self.log = trigger.log

    async def complete(self, outcome: Outcome) -> TriggerEvent:
        if isinstance(outcome, Ended):
            return await self.finished(outcome.status)
        if isinstance(outcome, TimedOut):
            return await self.timed_out()
        return failure(self.trigger, outcome.state, outcome.detail)

    async def finished(self, status: Status) -> TriggerEvent:
        seen_at = utcnow()
        ended = f"{self.handle.layout.uri()} {status.state.value} with exit code {status.exit_code}"
        try:  # the rest of the log and this line: one log event, one message to the triggerer's supervisor
            await self.follower.finish(self.s3, status, closing=ended)
        except Exception as exc:
            self.log.warning(
                "could not read the rest of the log (%s); it is at %s", exc, self.handle.layout.uri("log.txt")
            )
        result = None
        if status.state is TaskState.SUCCEEDED and "result" in status.result_keys:
            key = status.result_keys["result"]
            try:
                result = await self._read_result(key, status.result_json)
            except Exception as exc:
                detail = f"the task succeeded but its result s3://{self.handle.bucket}/{key} {exc}"
                return failure(self.trigger, "failed", detail)
        ended_here = status.state is TaskState.SUCCEEDED and self.trigger.end_from_trigger
        if ended_here and await self._push_xcoms(status, result):
            await self._record_timeline(seen_at)
            return TaskSuccessEvent()
        await self._record_timeline(seen_at)
        state, handle = status.state.value, self.handle.to_dict()
        return TriggerEvent({"state": state, "status": status.to_dict(), "result": result, "handle": handle})

    async def timed_out(self) -> TriggerEvent:
        self.log.error("execution_timeout reached: stopping %s", self.handle.task_ref)
        stopped = await self.trigger.stop("Airflow's execution_timeout was reached")
        try:
            await self.follower.finish(self.s3)
        except Exception as exc:
            self.log.warning("could not read the rest of the log: %s", exc)
        outcome = "the container was stopped" if stopped else "stopping the container FAILED"
        return failure(self.trigger, "timeout", f"execution_timeout reached; {outcome}")

    async def _read_result(self, key: str, inline: str | None) -> Any:
        """The result: from status.json when the runtime copied it there (``inline``), else read from ``key``."""
        body = inline.encode() if inline is not None else None
        trigger = self.trigger
        if body is None:
            async for attempt in aretrying(trigger.retry_seconds, trigger.retry_max_backoff, "reading result"):
                with attempt:
                    body = await aread(self.s3, self.handle.bucket, key)
        if body is None:
            raise LookupError("is listed in status.json but does not exist")
        if len(body) > trigger.max_xcom_bytes:
            self.log.info(
                "result.json is %d bytes, over %d: XCom gets its S3 key only", len(body), trigger.max_xcom_bytes
            )
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ValueError(f"is not JSON: {exc}") from exc

    async def _push_xcoms(self, status: Status, result: Any) -> bool:
        """Store the XComs as the task itself would; False (resume on a worker instead) if any push fails.

        The pushes go out together: the triggerer's supervisor serves its runner's requests one per turn of its
        loop, in the order they came, so when many tries end at once a push waits behind every request sent
        before it; two pushes sent one after the other wait that queue twice (docs/benchmarks.md)."""
        try:
            identity = self.trigger.watched_identity  # none for a trigger that only watches a given handle
            xcoms = xcoms_for(self.handle, status, result)
        except Exception as exc:
            self.log.warning("cannot push XComs from the triggerer (%s): resuming on a worker", exc)
            return False
        # No return_value for no result, as the Task SDK on a worker does: a pull finds None either way.
        pushes = [aset_xcom(identity, key, value) for key, value in xcoms.items() if value is not None]
        outcomes = await asyncio.gather(*pushes, return_exceptions=True)
        failed = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failed:
            self.log.warning("cannot push XComs from the triggerer (%s): resuming on a worker", failed[0])
            return False
        return True

    async def _record_timeline(self, seen_at: str) -> None:
        """timings.json: what Airflow's side and the launcher saw of this try (``airlaunch report``)."""
        started = getattr(self.trigger.task_instance, "start_date", None)
        timeline = Timeline(
            airflow=AirflowMoments(
                task_started_at=started.isoformat(timespec="milliseconds") if started else None,
                launch_requested_at=self.trigger.launch_requested_at,
                completion_seen_at=seen_at,
                task_ended_at=utcnow(),
            ),
            launcher=LauncherMoments.from_dict(self.handle.timings),
        )
        try:
            layout = self.handle.layout
            body = timeline.to_json().encode()
            await self.s3.put_object(
                Bucket=layout.bucket, Key=layout.timings_key, Body=body, ContentType="application/json"
            )
        except Exception as exc:  # timings are for reading: their loss never fails the task
            self.log.warning("could not record timings.json: %s", exc)
