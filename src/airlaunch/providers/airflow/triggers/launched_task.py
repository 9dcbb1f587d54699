"""LaunchedTaskTrigger: wait for a launched task's status.json without holding a worker slot.

What it guarantees:

* Cost: one S3 request per ``poll_interval`` per task, never a LIST: a GET of status.json,
  except every ``log_every``-th tick, which is a ranged GET of log.txt instead (that is how
  the container's output reaches the Airflow task log while it runs). Every
  ``describe_every`` ticks it also asks the launcher Lambda whether the container still
  exists, so a task that died without writing status.json fails instead of hanging.
* Latency: completion is seen within one poll interval of status.json being written.
* Restarts: the trigger only watches and stops, it never launches, so a triggerer restart
  resumes the watch (log lines already shown may be shown again) and starts nothing.
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
from functools import cached_property
from typing import Any

from airflow.sdk.execution_time.xcom import XCom
from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airlaunch.protocol import Handle, RunIdentity, Status, TaskState
from airlaunch.providers.airflow.hooks.launcher import LauncherHook, aread


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
        handle: dict[str, Any],
        identity: dict[str, Any],
        function_name: str,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        poll_interval: float = 1.0,
        log_every: int = 5,
        describe_every: int = 30,
        deadline: float | None = None,
        max_xcom_bytes: int = 49152,
        end_from_trigger: bool = True,
    ) -> None:
        super().__init__()
        self.handle = Handle.from_dict(handle)
        self.identity = RunIdentity.from_dict(identity)
        self.function_name = function_name
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.poll_interval = poll_interval
        self.log_every = max(2, log_every)
        self.describe_every = max(2, describe_every)
        self.deadline = deadline
        self.max_xcom_bytes = max_xcom_bytes
        self.end_from_trigger = end_from_trigger
        self._log_offset = 0

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "handle": self.handle.to_dict(),
                "identity": self.identity.to_dict(),
                "function_name": self.function_name,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "poll_interval": self.poll_interval,
                "log_every": self.log_every,
                "describe_every": self.describe_every,
                "deadline": self.deadline,
                "max_xcom_bytes": self.max_xcom_bytes,
                "end_from_trigger": self.end_from_trigger,
            },
        )

    @cached_property
    def hook(self) -> LauncherHook:
        return LauncherHook(
            function_name=self.function_name, aws_conn_id=self.aws_conn_id, region_name=self.region_name
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        layout = self.handle.layout
        async with await self.hook.s3_hook.get_async_conn() as s3:
            tick = 0
            while True:
                if tick % self.log_every == self.log_every - 1:
                    await self._stream_log(s3)
                else:
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
                        yield TriggerEvent(
                            {"state": TaskState.LOST.value, "detail": lost, "handle": self.handle.to_dict()}
                        )
                        return
                tick += 1
                await asyncio.sleep(self.poll_interval)

    async def _finished(self, s3: Any, status: Status) -> TriggerEvent:
        await self._stream_log(s3)
        self.log.info("%s %s with exit code %s", self.handle.layout.uri(), status.state.value, status.exit_code)
        result = None
        if status.state is TaskState.SUCCEEDED and "result" in status.result_keys:
            body = await aread(s3, self.handle.bucket, status.result_keys["result"])
            if body is not None and len(body) <= self.max_xcom_bytes:
                result = json.loads(body)
            elif body is not None:
                self.log.info(
                    "result.json is %d bytes, over %d: XCom gets its S3 key only", len(body), self.max_xcom_bytes
                )
        if status.state is TaskState.SUCCEEDED and self.end_from_trigger and await self._push_xcoms(status, result):
            return TaskSuccessEvent()
        return TriggerEvent(
            {"state": status.state.value, "status": status.to_dict(), "result": result, "handle": self.handle.to_dict()}
        )

    async def _push_xcoms(self, status: Status, result: Any) -> bool:
        """Store the XComs as the task itself would; False (resume on a worker instead) if that fails."""
        identity = self.identity
        try:
            for key, value in xcoms_for(self.handle, status, result).items():
                await XCom.aset(
                    key,
                    value,
                    dag_id=identity.dag_id,
                    task_id=identity.task_id,
                    run_id=identity.run_id,
                    map_index=identity.map_index,
                )
        except Exception as exc:
            self.log.warning("cannot push XComs from the triggerer (%s): resuming on a worker", exc)
            return False
        return True

    async def _stream_log(self, s3: Any) -> None:
        """Show the log lines written since the last look (ranged GET from the last offset)."""
        chunk = await aread(s3, self.handle.bucket, self.handle.layout.log_key, f"bytes={self._log_offset}-")
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
            response = await self.hook.acall({"action": "describe", "handle": self.handle.to_dict()})
        except Exception as exc:  # the launcher being briefly unreachable must not fail the task
            self.log.warning("describe failed, will retry: %s", exc)
            return None
        description = response["description"]
        if description["state"] == TaskState.LOST.value:
            return description.get("detail") or "the container is gone and wrote no status.json"
        return None

    async def _stop(self, reason: str) -> None:
        await self.hook.acall({"action": "stop", "handle": self.handle.to_dict(), "reason": reason})

    async def _timed_out(self, s3: Any) -> TriggerEvent:
        self.log.error("execution_timeout reached: stopping %s", self.handle.task_ref)
        await self._stop("Airflow execution_timeout reached")
        await self._stream_log(s3)
        return TriggerEvent(
            {
                "state": "timeout",
                "detail": "execution_timeout reached; the container was stopped",
                "handle": self.handle.to_dict(),
            }
        )

    async def on_kill(self) -> None:
        """The user marked the task failed/success or cleared it: stop the container."""
        self.log.info("task killed by a user action: stopping %s", self.handle.task_ref)
        await self._stop("Airflow task killed by a user action")
