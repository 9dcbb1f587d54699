"""One TriggererLoop per event loop: what a triggerer's triggers share (sweeps per launcher, the read budget,
listeners); the clients it shares: tests/unit/test_shared_client.py."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from airlaunch.providers.airflow import triggerer
from airlaunch.providers.airflow.triggerer import TriggererLoop, TriggererSettings
from airlaunch.providers.airflow.triggers import orphan_sweep


class Hook:
    """What a sweep needs of a LauncherHook: which launcher it reaches."""

    def __init__(self, function_name: str, aws_conn_id: str, region_name: str | None = None) -> None:
        self.function_name = function_name
        self.aws_conn_id = aws_conn_id
        self._region_name = region_name


def _shared(sweep_seconds: float = 0.01, reads_per_second: float = 20) -> TriggererLoop:
    """The running loop's TriggererLoop, with these settings instead of the triggerer's configuration."""
    shared = TriggererLoop.current()
    shared.__dict__["settings"] = TriggererSettings(sweep_seconds, reads_per_second)
    return shared


def test_each_event_loop_has_one_and_forgets_it_when_the_loop_ends() -> None:
    async def main() -> tuple[TriggererLoop, bool]:
        first = TriggererLoop.current()
        return first, all(TriggererLoop.current() is first for _ in range(3))

    one, same = asyncio.run(main())
    other, _ = asyncio.run(main())
    assert same and one is not other
    assert not TriggererLoop._loops  # both loops ended: nothing of theirs is kept


def test_every_launcher_function_and_connection_is_swept(monkeypatch: pytest.MonkeyPatch) -> None:
    """A triggerer whose tasks use two launcher functions, or one function through two connections, sweeps each
    of them with its own hook, not only the first trigger's."""
    swept: list[tuple[str, str]] = []

    async def sweep_once(hook: Hook) -> list[str]:
        swept.append((hook.function_name, hook.aws_conn_id))
        return []

    monkeypatch.setattr(orphan_sweep, "sweep_once", sweep_once)
    launchers = {("launcher-a", "aws_default"), ("launcher-b", "aws_default"), ("launcher-a", "other_account")}

    async def main() -> set[tuple[str, str | None, str | None]]:
        shared = _shared()
        for function_name, conn_id in sorted(launchers) * 3:  # many triggers, three launchers
            shared.ensure_sweep(Hook(function_name, conn_id))  # type: ignore[arg-type]
        while not launchers <= set(swept):
            await asyncio.sleep(0.01)
        return set(shared.sweeps)

    keys = asyncio.run(asyncio.wait_for(main(), 30))
    assert keys == {(function_name, conn_id, None) for function_name, conn_id in launchers}


def test_a_region_of_its_own_is_another_launcher_and_no_interval_sweeps_nothing() -> None:
    async def main(sweep_seconds: float) -> int:
        shared = _shared(sweep_seconds=sweep_seconds)
        shared.ensure_sweep(Hook("launcher", "aws_default", "eu-west-1"))  # type: ignore[arg-type]
        shared.ensure_sweep(Hook("launcher", "aws_default", "us-east-1"))  # type: ignore[arg-type]
        shared.ensure_sweep(Hook("launcher", "aws_default", "us-east-1"))  # type: ignore[arg-type]
        return len(shared.sweeps)

    assert asyncio.run(main(3600)) == 2
    assert asyncio.run(main(0)) == 0


def test_the_read_budget_spreads_the_periodic_reads_of_many_watching_triggers() -> None:
    """Two periodic reads per log_every ticks each: 50 triggers at 5 ticks of 1 s make the budget's 20 a second."""

    class Trigger:
        pass

    async def main() -> list[int]:
        shared = _shared(reads_per_second=20)
        triggers = [Trigger() for _ in range(101)]
        stretches = []
        for count in (1, 50, 51, 101):
            with contextlib.ExitStack() as watching:
                for trigger in triggers[:count]:
                    watching.enter_context(shared.watched(trigger))
                stretches.append(shared.stretch(log_every=5, poll_interval=1))
        stretches.append(shared.stretch(log_every=5, poll_interval=1))  # all left
        return stretches

    assert asyncio.run(main()) == [1, 1, 2, 3, 1]


def test_one_listener_per_queue_connection_and_region(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[Any, ...]] = []

    class Listener:
        def __init__(self, *source: Any) -> None:
            made.append(source)

    monkeypatch.setattr(triggerer, "StatusListener", Listener)

    async def main() -> None:
        shared = _shared()
        assert shared.listener("q", "aws_default", None) is shared.listener("q", "aws_default", None)
        shared.listener("q", "other", None)
        shared.listener("other-queue", "aws_default", None)

    asyncio.run(main())
    assert made == [("q", "aws_default", None), ("q", "other", None), ("other-queue", "aws_default", None)]
