"""Airflow's floor: a deferrable operator that costs Airflow nothing but its own machinery.

``EndAtOnceOperator`` defers to ``EndAtOnceTrigger``, which fires at once and ends the task in the
triggerer (``TaskSuccessEvent``, pushing one XCom as an airlaunch task pushes its result), so no
worker resumes it. With ``start_from_trigger=True`` the scheduler defers it without a worker (as
``LaunchContainerOperator(start_from_trigger=True)`` is); without, a worker runs ``execute``, which
defers. No container, no S3, no launcher: what is left is what Airflow itself spends on a task ended
by a trigger, the floor ``make bench PARTS=floors`` holds our orchestration cost against.

A module of its own, outside the DAG folder's files, so the triggerer can import the trigger by its
class path (``bench.floor_operator``; the benchmark's Airflow has the repository on PYTHONPATH).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseTrigger, StartTriggerArgs, TaskSuccessEvent, TriggerEvent

TRIGGER_CLASSPATH = "bench.floor_operator.EndAtOnceTrigger"
RESULT = {"sleep_seconds": 0.0}  # what collect reads, as from task_two


class EndAtOnceTrigger(BaseTrigger):
    """Fires at once and ends its task successfully, with one XCom (the task's return value)."""

    def __init__(self, **_: Any) -> None:
        super().__init__()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return TRIGGER_CLASSPATH, {}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        xcoms: dict[str, Any] = {"return_value": RESULT}
        yield TaskSuccessEvent(xcoms=xcoms)


class EndAtOnceOperator(BaseOperator):
    """Defers to ``EndAtOnceTrigger``: from the scheduler (``start_from_trigger=True``) or from a worker."""

    start_trigger_args = StartTriggerArgs(
        trigger_cls=TRIGGER_CLASSPATH, trigger_kwargs={}, next_method="execute_complete"
    )
    start_from_trigger = False

    def __init__(self, *, parameters: dict[str, Any] | None = None, start_from_trigger: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.parameters = parameters or {}
        self.start_from_trigger = start_from_trigger

    def execute(self, context: Any) -> None:
        self.defer(trigger=EndAtOnceTrigger(), method_name="execute_complete")

    def execute_complete(self, context: Any, event: Any = None) -> Any:  # never called: the trigger ends the task
        return RESULT
