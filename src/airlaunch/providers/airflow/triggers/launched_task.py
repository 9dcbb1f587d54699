"""LaunchedTaskTrigger: wait for a launched task's status.json without holding a worker slot.

The trigger is the task's state, serializable, and the order of its three jobs, each in its own
module with what it guarantees:

1. ``launching``: with ``start_from_trigger``, launch the task here first (templates rendered in
   the triggerer; what needs a worker goes to one).
2. ``watching``: watch the container until its try ends (notifications, polling, the log shown
   live, outages ridden out, the deadline).
3. ``completing``: end the task in the triggerer as the worker would (XComs, success or a failure
   in words), record timings.

What the trigger itself guarantees:

* State: everything a triggerer needs is in ``serialize()``, including the task's settings
  (poll interval, outage and retry budgets, read sizes, status queue): each is given to the
  constructor or read where the trigger is made (on the worker that defers), so the triggerer
  acts on the values the task was deferred with. What the triggerer shares among all its tasks
  (clients, the status listener, orphan sweeps, the read budget) belongs to its event loop's
  ``TriggererLoop`` (airlaunch.providers.airflow.triggerer), which each run joins.
* Restarts: a triggerer restart resumes the watch (log lines already shown may be shown again).
* Cancellation: a user's mark-failed or clear runs ``on_kill``, which stops the container, by its
  handle or, while the launch is still in flight, by the try's identity (the launcher then refuses
  to start it, or stops what it just started). A try Airflow ended without telling its trigger (a
  trigger not yet running) is stopped by the triggerer's orphan sweep of its launcher.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, nullcontext
from functools import cached_property
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airlaunch.protocol import Handle, InvalidRequest, RunIdentity, Status
from airlaunch.providers.airflow.hooks.launcher import LauncherHook
from airlaunch.providers.airflow.settings import AirflowSettings
from airlaunch.providers.airflow.triggerer import TriggererLoop
from airlaunch.providers.airflow.triggers import completing, status_notifications
from airlaunch.providers.airflow.triggers.launch_spec import identity_of_ti
from airlaunch.providers.airflow.triggers.launching import launch_in_triggerer
from airlaunch.providers.airflow.triggers.log_follower import LogFollower
from airlaunch.providers.airflow.triggers.watching import Watch

# The task's settings a trigger carries; None given: read where the trigger is made.
SETTINGS = (
    "function_name",
    "aws_conn_id",
    "poll_interval",
    "max_xcom_bytes",
    "status_queue",
    "outage_seconds",
    "retry_seconds",
    "retry_max_backoff",
    "log_read_bytes",
)


class LaunchedTaskTrigger(BaseTrigger):
    function_name: str
    aws_conn_id: str
    poll_interval: float
    max_xcom_bytes: int
    status_queue: str
    outage_seconds: float
    retry_seconds: float
    retry_max_backoff: float
    log_read_bytes: int

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
        outage_seconds: float | None = None,
        retry_seconds: float | None = None,
        retry_max_backoff: float | None = None,
        log_read_bytes: int | None = None,
    ) -> None:
        super().__init__()
        if handle is None and launch is None:
            raise ValueError("LaunchedTaskTrigger needs the handle of a launched task, or a launch to make")
        self.handle = Handle.from_dict(handle) if handle is not None else None
        self.identity = RunIdentity.from_dict(identity) if identity is not None else None
        self.launch = launch
        self.region_name = region_name
        self.log_every = max(2, log_every)
        self.describe_every = max(2, describe_every)
        self.deadline = deadline
        self.end_from_trigger = end_from_trigger
        self.launch_requested_at = launch_requested_at
        given = {
            "function_name": function_name or None,
            "aws_conn_id": aws_conn_id or None,
            "poll_interval": poll_interval or None,
            "max_xcom_bytes": max_xcom_bytes or None,
            "status_queue": status_queue,
            "outage_seconds": outage_seconds,
            "retry_seconds": retry_seconds,
            "retry_max_backoff": retry_max_backoff,
            "log_read_bytes": log_read_bytes or None,
        }
        defaults = AirflowSettings() if None in given.values() else None
        for name, value in given.items():
            setattr(self, name, getattr(defaults, name) if value is None else value)
        self._listener: status_notifications.StatusListener | None = None
        self.template_context: Any = None  # the context Airflow's triggerer rendered this trigger with, if it did
        self.template_env: Any = None

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Airflow's rendering of a trigger started from the triggerer, keeping its context and environment for the
        launch (``launching``): Airflow's triggerer builds the task instance's context (its DAG params validated
        against their schemas, among the rest) for every such trigger before it runs; building it again for the
        launch cost as much again, per task."""
        self.template_context = context
        self.template_env = jinja_env or self.get_template_env()
        super().render_template_fields(context, self.template_env)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "handle": self.handle.to_dict() if self.handle is not None else None,
                "identity": self.identity.to_dict() if self.identity is not None else None,
                "launch": self.launch,
                "region_name": self.region_name,
                "log_every": self.log_every,
                "describe_every": self.describe_every,
                "deadline": self.deadline,
                "end_from_trigger": self.end_from_trigger,
                "launch_requested_at": self.launch_requested_at,
                **{name: getattr(self, name) for name in SETTINGS},
            },
        )

    def apply_settings(self, settings: dict[str, Any]) -> None:
        """Take a mapped task's own settings (its ``partial()`` kwargs), resolved in the triggerer."""
        for name, value in settings.items():
            setattr(self, name, value)
        self.__dict__.pop("hook", None)  # the settings may name another connection or function

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
            function_name=self.function_name,
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            retry_seconds=self.retry_seconds,
            retry_max_backoff=self.retry_max_backoff,
        )

    # -- the run ----------------------------------------------------------------------------------
    async def run(self) -> AsyncIterator[TriggerEvent]:
        shared = TriggererLoop.current()
        shared.ensure_sweep(self.hook)
        launched_now = self.handle is None
        if launched_now:
            refusal = await launch_in_triggerer(self)
            if refusal is not None:
                yield refusal
                return
            shared.ensure_sweep(self.hook)  # the launch may have named another launcher
        layout = self.watched.layout
        s3 = await shared.client(self.hook.s3_hook)
        follower = LogFollower(layout, self.log, self.log_read_bytes)
        notified: AbstractContextManager[Any] = nullcontext()
        if self.status_queue:
            self._listener = shared.listener(self.status_queue, self.aws_conn_id, self.region_name)
            notified = self._listener.watch(layout.bucket, layout.status_key)
        with shared.watched(self), notified as wake:
            outcome = await Watch(self, s3, follower, wake, shared, launched_now).until_end()
            event = await completing.Completion(self, s3, follower).complete(outcome)
        yield completing.end_failed(self, event)

    async def _ended_unrecorded(self) -> Status | None:
        """Ask the launcher about the container: it records (and returns) an end no event reported."""
        return (await self.hook.adescribe(self.watched, budget=0)).status

    # -- stopping ---------------------------------------------------------------------------------
    async def stop(self, reason: str, budget: float | None = None) -> bool:
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

    async def on_kill(self) -> None:
        """The user marked the task failed/success or cleared it: stop the container, launched or not yet.

        Airflow 3.3 calls on_kill too when the trigger was moved to another triggerer: a triggerer cancels
        every trigger no longer assigned to it the same way as a user's action (apache/airflow#73454), for
        instance after its heartbeat lapsed while it still ran them. Then the task instance is still deferred
        and the new triggerer watches the same container, so nothing is stopped. When the task's state cannot
        be read, the container is stopped, as a user's action asks."""
        identity = self.identity or self._identity_from_ti()
        if identity is not None and await _task_state(identity) == "deferred":
            self.log.info("the trigger moved to another triggerer (the task is still deferred): not stopping")
            return
        self.log.info("task killed by a user action: stopping its container")
        await self.stop("the Airflow task was marked failed or success, or cleared")


async def _task_state(identity: RunIdentity) -> str | None:
    """The task instance's state now, asked through the triggerer's supervisor; None if it cannot be read."""
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import GetTaskStates

    asked = GetTaskStates(
        dag_id=identity.dag_id, map_index=identity.map_index, task_ids=[identity.task_id], run_ids=[identity.run_id]
    )
    try:
        reply = await task_runner.SUPERVISOR_COMMS.asend(asked)
        states = getattr(reply, "task_states", {}).get(identity.run_id) or {}
    except Exception:
        return None
    key = identity.task_id if identity.map_index < 0 else f"{identity.task_id}_{identity.map_index}"
    state = states.get(key)
    return str(state) if state is not None else None
