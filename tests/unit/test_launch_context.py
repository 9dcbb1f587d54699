"""A task launched from the triggerer renders its launch with the context Airflow's triggerer already built.

Airflow 3.3's trigger runner builds the task instance's template context for every trigger started from the
triggerer (``create_triggers``: ``runtime_ti.get_template_context()``, which validates the DAG's params against
their schemas) and renders the trigger with it (``render_template_fields``). The launch built it a second time,
per task (in the profile of a 200-task fan-out, about 1 % of the triggerer's busy samples; docs/benchmarks.md).
Counted here, no timing: the launch asks the task instance for no context of its own when Airflow gave one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airlaunch.protocol import Handle, LaunchRequest
from airlaunch.providers.airflow.triggers import launching
from airlaunch.providers.airflow.triggers.launched_task import LaunchedTaskTrigger

TI_ID = "0199aa3e-7c1f-7b2e-9d4a-5f6e7a8b9c0d"
HANDLE = Handle("docker", "c0ffee", "b", f"runs/d/r/launch/-1/1-{TI_ID}/", True)
SETTINGS: dict[str, Any] = {
    "function_name": "launcher",
    "aws_conn_id": "aws",
    "poll_interval": 1.0,
    "max_xcom_bytes": 4096,
    "status_queue": "",
    "outage_seconds": 60.0,
    "retry_seconds": 1.0,
    "retry_max_backoff": 1.0,
    "log_read_bytes": 65536,
}


class TaskInstance:
    """The runner's RuntimeTaskInstance, as far as a launch reads it; counts the contexts it is asked for."""

    dag_id, run_id, task_id, map_index, try_number, id, start_date = "d", "r", "launch", -1, 1, TI_ID, None

    def __init__(self) -> None:
        self.contexts = 0

    def get_template_context(self) -> dict[str, Any]:
        self.contexts += 1
        return {"params": {"who": "dag"}, "ti": self, "ds": "2026-12-06"}


class Hook:
    def __init__(self) -> None:
        self.requests: list[LaunchRequest] = []

    async def alaunch(self, request: LaunchRequest) -> Handle:
        self.requests.append(request)
        return HANDLE


def _launch(monkeypatch: pytest.MonkeyPatch, rendered_by_airflow: bool) -> tuple[TaskInstance, Hook]:
    pushed: list[str] = []

    async def aset_xcom(identity: Any, key: str, value: Any) -> None:
        pushed.append(key)

    monkeypatch.setattr(launching, "aset_xcom", aset_xcom)
    trigger = LaunchedTaskTrigger(launch={"task": "task_two", "parameters": {"day": "{{ ds }}"}}, **SETTINGS)
    ti, hook = TaskInstance(), Hook()
    trigger.task_instance = ti  # type: ignore[assignment]
    monkeypatch.setattr(LaunchedTaskTrigger, "hook", property(lambda _: hook))
    if rendered_by_airflow:  # what Airflow's trigger runner does before it runs the trigger
        trigger.render_template_fields(context=ti.get_template_context())
    assert asyncio.run(launching.launch_in_triggerer(trigger)) is None
    assert trigger.handle == HANDLE
    return ti, hook


def test_the_launch_uses_the_context_airflow_rendered_the_trigger_with(monkeypatch: pytest.MonkeyPatch) -> None:
    ti, hook = _launch(monkeypatch, rendered_by_airflow=True)
    assert ti.contexts == 1  # Airflow's own, none for the launch (two before)
    assert hook.requests[0].params == {"who": "dag", "day": "2026-12-06"}


def test_without_airflow_s_context_the_launch_builds_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    ti, hook = _launch(monkeypatch, rendered_by_airflow=False)
    assert ti.contexts == 1
    assert hook.requests[0].params == {"who": "dag", "day": "2026-12-06"}
