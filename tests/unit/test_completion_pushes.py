"""How a trigger pushes a finished try's XComs from the triggerer (issue 22's completion latency).

The triggerer's supervisor serves its runner's requests one per turn of its loop, in the order they came: the
trigger sends both end XComs before waiting for either answer, so when many tries end at once each try waits
that queue once, not once per XCom. A push that fails still resumes the task on a worker, which pushes both."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.triggers.base import TaskSuccessEvent

from airlaunch.protocol import Handle, RunIdentity, Status, StopReason, TaskState
from airlaunch.providers.airflow.triggers import completing
from airlaunch.providers.airflow.triggers.completing import Completion
from airlaunch.providers.airflow.xcoms import SUMMARY_XCOM_KEY

PREFIX = "runs/d/r/t/-1/1/"
IDENTITY = RunIdentity("d", "r", "t")


class HeldComms:
    """The triggerer's comms as the trigger sees them: each push is answered only when the test says so."""

    def __init__(self, failing: str | None = None) -> None:
        self.sent: list[str] = []
        self.answered = asyncio.Event()
        self.failing = failing

    async def aset_xcom(self, identity: RunIdentity, key: str, value: Any) -> None:
        assert identity == IDENTITY
        self.sent.append(key)
        await self.answered.wait()
        if key == self.failing:
            raise RuntimeError("API server error")


class NoS3:
    async def put_object(self, **request: Any) -> dict[str, Any]:
        return {}


def _completion() -> Completion:
    trigger = SimpleNamespace(
        watched=Handle("docker", "abc", "bucket", PREFIX, True, {}),
        watched_identity=IDENTITY,
        log=logging.getLogger("completion"),
        end_from_trigger=True,
        retry_seconds=1,
        retry_max_backoff=1,
        max_xcom_bytes=49152,
        task_instance=SimpleNamespace(start_date=None),
        launch_requested_at=None,
    )
    follower = SimpleNamespace(finish=lambda s3, status=None, closing=None: asyncio.sleep(0))
    return Completion(trigger, NoS3(), follower)


def _succeeded() -> Status:
    return Status(
        TaskState.SUCCEEDED,
        0,
        StopReason.EXIT,
        "t0",
        "t1",
        "d/r/t/-1/1",
        result_keys={"result": PREFIX + "result.json"},
        result_json='{"answer": 42}',
    )


async def _until_settled(comms: HeldComms, pending: asyncio.Task[Any]) -> list[str]:
    """What was sent while no push had been answered yet; then every push is answered."""
    for _ in range(20):  # turns of the loop, not time: the pushes are sent as soon as the task runs
        await asyncio.sleep(0)
    sent_before_any_answer = list(comms.sent)
    comms.answered.set()
    await pending
    return sent_before_any_answer


def test_both_end_xcoms_are_sent_before_either_is_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    comms = HeldComms()
    monkeypatch.setattr(completing, "aset_xcom", comms.aset_xcom)

    async def scenario() -> tuple[list[str], Any]:
        pending = asyncio.ensure_future(_completion().finished(_succeeded()))
        sent = await _until_settled(comms, pending)
        return sent, pending.result()

    sent, event = asyncio.run(scenario())

    assert sorted(sent) == sorted(["return_value", SUMMARY_XCOM_KEY])
    assert isinstance(event, TaskSuccessEvent)  # the task ends in the triggerer, its XComs stored


def test_a_failed_push_resumes_the_task_on_a_worker_with_its_result(monkeypatch: pytest.MonkeyPatch) -> None:
    comms = HeldComms(failing=SUMMARY_XCOM_KEY)
    monkeypatch.setattr(completing, "aset_xcom", comms.aset_xcom)

    async def scenario() -> Any:
        pending = asyncio.ensure_future(_completion().finished(_succeeded()))
        await _until_settled(comms, pending)
        return pending.result()

    event = asyncio.run(scenario())

    assert not isinstance(event, TaskSuccessEvent)
    assert event.payload["state"] == "succeeded" and event.payload["result"] == {"answer": 42}
    assert sorted(comms.sent) == sorted(["return_value", SUMMARY_XCOM_KEY])


class UnlaunchedTrigger(SimpleNamespace):
    """A trigger given a handle to watch, without its task's identity (as LaunchedTaskTrigger.watched_identity)."""

    @property
    def watched_identity(self) -> RunIdentity:
        raise RuntimeError("no task launched yet")


def test_a_trigger_without_the_task_identity_resumes_the_task_on_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    comms = HeldComms()
    comms.answered.set()
    monkeypatch.setattr(completing, "aset_xcom", comms.aset_xcom)
    completion = _completion()
    fields = {name: value for name, value in vars(completion.trigger).items() if name != "watched_identity"}
    completion.trigger = UnlaunchedTrigger(**fields)

    event = asyncio.run(completion.finished(_succeeded()))

    assert not isinstance(event, TaskSuccessEvent) and event.payload["result"] == {"answer": 42}
    assert comms.sent == []


def test_a_try_without_a_result_pushes_no_return_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a worker (the Task SDK pushes no return_value for None): each push is an execution API request and a
    turn of the triggerer supervisor's loop, so a try with no result (or one over max_xcom_bytes) pushes only
    its summary (two before)."""
    comms = HeldComms()
    comms.answered.set()
    monkeypatch.setattr(completing, "aset_xcom", comms.aset_xcom)
    status = _succeeded()
    no_result = Status(status.state, 0, status.reason, status.started_at, status.ended_at, status.execution_id)

    event = asyncio.run(_completion().finished(no_result))

    assert isinstance(event, TaskSuccessEvent)
    assert comms.sent == [SUMMARY_XCOM_KEY]
