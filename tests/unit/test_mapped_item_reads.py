"""How a mapped task launched from the triggerer reads its item of an unmapped upstream's list (issue 22).

Each read is a request the triggerer's supervisor serves one per turn of its loop, in the queue the XCom pushes
that end tasks wait in: the triggers of a fan-out that start together share one read; one that starts after
that read has come back reads again, so no value is kept between batches."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.execution_time.xcom import XCom
from airflow.serialization.definitions.xcom_arg import SchedulerPlainXComArg

from airlaunch.providers.airflow.triggers.launch_spec import _mapped_item

ITEMS = [{"item": i} for i in range(3)]


class HeldXComReads:
    """XCom.aget_one as the triggerer's comms serve it: answered only when the test says so."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.reads: list[dict[str, Any]] = []
        self.answered = asyncio.Event()

    async def aget_one(self, **where: Any) -> Any:
        self.reads.append(where)
        await self.answered.wait()
        return self.value


def _source(mapped: bool = False) -> SchedulerPlainXComArg:
    return SchedulerPlainXComArg(SimpleNamespace(task_id="items", is_mapped=mapped), "return_value")  # type: ignore[arg-type]


def _ti(map_index: int) -> SimpleNamespace:
    return SimpleNamespace(dag_id="d", run_id="r", map_index=map_index)


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> HeldXComReads:
    reads = HeldXComReads(ITEMS)
    monkeypatch.setattr(XCom, "aget_one", reads.aget_one)
    return reads


def test_triggers_that_start_together_share_one_read_of_the_upstream_list(held: HeldXComReads) -> None:
    async def scenario() -> list[Any]:
        pending = [asyncio.ensure_future(_mapped_item(_source(), _ti(i))) for i in range(3)]
        for _ in range(10):  # turns of the loop: every trigger has asked by then
            await asyncio.sleep(0)
        held.answered.set()
        return list(await asyncio.gather(*pending))

    items = asyncio.run(scenario())

    assert items == ITEMS  # each its own element
    assert held.reads == [{"key": "return_value", "dag_id": "d", "task_id": "items", "run_id": "r", "map_index": -1}]


def test_a_read_that_starts_after_the_last_one_came_back_reads_again(held: HeldXComReads) -> None:
    held.answered.set()

    async def scenario() -> list[Any]:
        first = await _mapped_item(_source(), _ti(0))
        held.value = [{"item": "changed"}, {"item": "changed"}]
        return [first, await _mapped_item(_source(), _ti(1))]

    assert asyncio.run(scenario()) == [{"item": 0}, {"item": "changed"}]
    assert len(held.reads) == 2


def test_a_cancelled_trigger_leaves_the_shared_read_to_the_others(held: HeldXComReads) -> None:
    async def scenario() -> Any:
        leaving = asyncio.ensure_future(_mapped_item(_source(), _ti(0)))
        staying = asyncio.ensure_future(_mapped_item(_source(), _ti(2)))
        for _ in range(10):
            await asyncio.sleep(0)
        leaving.cancel()
        await asyncio.sleep(0)
        held.answered.set()
        return await staying

    assert asyncio.run(scenario()) == {"item": 2}
    assert len(held.reads) == 1


def test_a_mapped_upstream_is_read_per_map_index(held: HeldXComReads) -> None:
    held.answered.set()
    held.value = {"item": "own"}

    assert asyncio.run(_mapped_item(_source(mapped=True), _ti(1))) == {"item": "own"}
    assert held.reads[0]["map_index"] == 1
