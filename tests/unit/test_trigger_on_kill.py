"""A trigger's on_kill stops its container for a user's action, and only then (issue 22, two triggerers).

Airflow 3.3 cancels every trigger no longer assigned to a triggerer as it cancels one for a user's action, and
calls on_kill for both (apache/airflow#73454): a trigger moved to another triggerer (its first triggerer's
heartbeat lapsed while it still ran) would stop the container the new triggerer watches. The trigger asks
the task instance's state through the triggerer's supervisor first: still deferred, it stops nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from airflow.sdk.execution_time import task_runner
from airflow.sdk.execution_time.comms import GetTaskStates, TaskStatesResult

from airlaunch.protocol import Handle, RunIdentity
from airlaunch.providers.airflow.triggers.launched_task import LaunchedTaskTrigger

TI_ID = "0199aa3e-7c1f-7b2e-9d4a-5f6e7a8b9c0d"
IDENTITY = RunIdentity("etl", "manual__1", "load", map_index=3, try_number=1, ti_id=TI_ID)
HANDLE = Handle("docker", "c0ffee", "b", f"runs/etl/manual__1/load/3/1-{TI_ID}/", True)


class Supervisor:
    """The triggerer's supervisor as the trigger runner's comms reach it: answers GetTaskStates."""

    def __init__(self, state: str | None = None, fails: bool = False) -> None:
        self.state, self.fails = state, fails
        self.asked: list[Any] = []

    async def asend(self, msg: Any) -> Any:
        self.asked.append(msg)
        if self.fails:
            raise ConnectionError("supervisor gone")
        states = {"load_3": self.state, "load_4": "failed"} if self.state else {}
        return TaskStatesResult(task_states={"manual__1": states})


def _killed(monkeypatch: pytest.MonkeyPatch, supervisor: Supervisor) -> list[str]:
    """on_kill of a trigger watching HANDLE; the reasons its stop was asked with."""
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", supervisor, raising=False)
    trigger = LaunchedTaskTrigger(handle=HANDLE.to_dict(), identity=IDENTITY.to_dict())
    stops: list[str] = []

    async def stop(reason: str, budget: float = 0) -> bool:
        stops.append(reason)
        return True

    monkeypatch.setattr(trigger, "stop", stop)
    asyncio.run(trigger.on_kill())
    return stops


def test_a_trigger_moved_to_another_triggerer_stops_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    supervisor = Supervisor("deferred")
    assert _killed(monkeypatch, supervisor) == []
    assert supervisor.asked == [GetTaskStates(dag_id="etl", map_index=3, task_ids=["load"], run_ids=["manual__1"])]


@pytest.mark.parametrize("state", ["failed", "success", "scheduled", None])
def test_a_task_a_user_ended_or_cleared_has_its_container_stopped(
    monkeypatch: pytest.MonkeyPatch, state: str | None
) -> None:
    assert _killed(monkeypatch, Supervisor(state)) == ["the Airflow task was marked failed or success, or cleared"]


def test_a_state_that_cannot_be_read_stops_the_container_as_a_user_action_asks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert len(_killed(monkeypatch, Supervisor(fails=True))) == 1
