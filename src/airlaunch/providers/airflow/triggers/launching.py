"""Launching a task from the triggerer (``start_from_trigger``), before its trigger watches it.

What it guarantees:

* The launch is what a worker would send: the task's templates rendered in the triggerer with the
  task instance's context (the one Airflow's triggerer built to render the trigger, not built
  again), the DAG's params updated with ``parameters``, the try's identity. What
  the triggerer cannot resolve (an expand form other than ``parameters``, a template that pulls
  XComs) or a trigger without a task context goes back to a worker (``LAUNCH_ON_WORKER``).
* A kill during the launch can stop the try: its identity is on the trigger before the launcher is
  invoked, so ``on_kill`` stops it by identity while the handle has not come back yet.
* Restarts: a triggerer restart launches again, and the launcher answers with the container
  already running or finished for that try, so nothing starts twice; the deadline counts from the
  task instance's start, not from the restart.
* The task shows its extra links (results, log stream, ECS task) though no worker ever runs it, and
  a task that does not wait ends here with the handle as its XComs, as the operator would.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import TaskSuccessEvent, TriggerEvent

from airlaunch.protocol import Handle, InvalidRequest, RunIdentity, utcnow
from airlaunch.providers.airflow.hooks.launcher import LauncherError, launched_message
from airlaunch.providers.airflow.links import link_xcoms
from airlaunch.providers.airflow.triggers.launch_spec import (
    LAUNCH_ON_WORKER,
    CannotStartHere,
    launch_request,
    resolve_launch_spec,
)
from airlaunch.providers.airflow.xcoms import HANDLE_XCOM_KEY, aset_xcom

if TYPE_CHECKING:
    from airlaunch.providers.airflow.triggers.launched_task import LaunchedTaskTrigger

__all__ = ["LAUNCH_ON_WORKER", "launch_in_triggerer", "to_worker"]


def to_worker(detail: str) -> TriggerEvent:
    """The event that resumes the task on a worker, which then launches it itself."""
    return TriggerEvent({"state": LAUNCH_ON_WORKER, "detail": detail})


async def launch_in_triggerer(trigger: LaunchedTaskTrigger) -> TriggerEvent | None:
    """Launch ``trigger``'s task and set its handle (and deadline); an event instead when the task must not be
    watched: it goes to a worker, its launch failed, or it does not wait for its container."""
    ti = trigger.task_instance
    if ti is None or not hasattr(ti, "get_template_context"):
        return to_worker("no task context in the triggerer")
    try:
        spec = await resolve_launch_spec(trigger.launch or {}, ti)
    except CannotStartHere as exc:
        trigger.log.info("launching from a worker instead: %s", exc)
        return to_worker(str(exc))
    trigger.apply_settings(spec.settings)
    # Airflow's triggerer built the context to render the trigger with (``render_template_fields``): the same one.
    context = trigger.template_context if trigger.template_context is not None else ti.get_template_context()
    jinja_env = trigger.template_env if trigger.template_env is not None else trigger.get_template_env()
    task = str(trigger.render_template(spec.task, context, jinja_env))
    try:
        request = launch_request(
            context,
            task,
            trigger.render_template(spec.parameters, context, jinja_env),
            trigger.render_template(spec.overrides, context, jinja_env),
            spec.include_dag_params,
            spec.cache,
        )
        trigger.identity = request.identity  # from now on a kill can stop it, even before the handle comes
        trigger.launch_requested_at = utcnow()
        handle = await trigger.hook.alaunch(request)
    except (InvalidRequest, LauncherError, TypeError, ValueError) as exc:
        return TriggerEvent({"state": "launch_failed", "detail": f"cannot launch catalog task {task!r}: {exc}"})
    trigger.log.info(launched_message(task, handle))
    await _push_links(trigger, request.identity, handle, task)
    if not spec.wait_for_completion:  # as the operator does; a watched task's XComs come at its end
        await aset_xcom(request.identity, HANDLE_XCOM_KEY, handle.to_dict())
        await aset_xcom(request.identity, "return_value", handle.to_dict())
        return TaskSuccessEvent()
    trigger.handle = handle
    if spec.execution_timeout is not None:
        started = getattr(ti, "start_date", None)  # a triggerer restart must not extend the timeout
        begin = started.timestamp() if started is not None else time.time()
        trigger.deadline = begin + spec.execution_timeout
    return None


async def _push_links(trigger: Any, identity: RunIdentity, handle: Handle, task: str) -> None:
    """The operator's extra links for a task no worker ever runs: Airflow builds links on the worker, so a task
    launched here would show none. A failure costs the links only."""
    try:
        for key, url in link_xcoms(handle.to_dict(), task).items():
            await aset_xcom(identity, key, url)
    except Exception as exc:
        trigger.log.warning("cannot push the extra links from the triggerer (%s)", exc)
