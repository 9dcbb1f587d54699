"""LaunchedTaskTrigger on its own, against real containers: cost, timeout, kill, lost containers, a log burst's
bounded reads (decoding S3's notifications: tests/unit/test_status_notifications.py)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import pytest

from airlaunch.protocol import Handle
from airlaunch.providers.airflow.settings import AirflowSettings
from airlaunch.providers.airflow.triggers import completing, log_follower, watching
from airlaunch.providers.airflow.triggers.launched_task import LaunchedTaskTrigger
from airlaunch.stack import task_containers
from tests.conftest import LauncherClient
from tests.stack.test_launcher import wait_for_log_line

pytestmark = pytest.mark.stack  # the trigger in this process, against the stack's launcher and S3


def _trigger(handle: Handle, identity: dict[str, Any], **kwargs: Any) -> LaunchedTaskTrigger:
    return LaunchedTaskTrigger(
        handle=handle.to_dict(), identity=identity, function_name="function", aws_conn_id="airlaunch_aws", **kwargs
    )


def _first_event(trigger: LaunchedTaskTrigger, timeout: float = 120) -> Any:
    async def run() -> Any:
        async for event in trigger.run():
            return event

    return asyncio.run(asyncio.wait_for(run(), timeout))


@pytest.fixture
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every S3 request the trigger makes goes through `aread` (the watch's status reads, the completion's
    result read) or the log follower's `read_range`; record their keys."""
    keys: list[str] = []
    real, real_range = watching.aread, log_follower.read_range

    async def counting(client: Any, bucket: str, key: str, byte_range: str | None = None) -> bytes | None:
        keys.append(key)
        return await real(client, bucket, key, byte_range)

    async def counting_range(client: Any, bucket: str, key: str, first: int, last: int | None) -> Any:
        keys.append(key)
        return await real_range(client, bucket, key, first, last)

    monkeypatch.setattr(watching, "aread", counting)
    monkeypatch.setattr(completing, "aread", counting)
    monkeypatch.setattr(log_follower, "read_range", counting_range)
    return keys


def test_one_get_per_poll_never_a_list_and_the_log_streams(
    launcher: LauncherClient, identity: dict[str, Any], counted_reads: list[str], capfd: pytest.CaptureFixture[str]
) -> None:
    handle = launcher.launch("diagnostic", identity, {"action": "sleep", "seconds": 4})
    started = time.monotonic()
    event = _first_event(_trigger(handle, identity, poll_interval=0.25, log_every=4))
    elapsed = time.monotonic() - started

    assert event.payload["state"] == "succeeded"  # outside a triggerer it cannot push XComs: resumes instead
    assert event.payload["result"] == {"slept": 4.0}
    polls = elapsed / 0.25
    # One request per tick, plus the final log read and the result read.
    assert len(counted_reads) <= polls + 3, (len(counted_reads), polls)
    parts = [key for key in counted_reads if key.startswith(handle.layout.key("log/"))]
    others = {handle.layout.status_key, handle.layout.log_key, handle.layout.result_key}
    assert set(counted_reads) - set(parts) <= others
    assert len(parts) >= 2  # the log was read, part by part, while the task ran
    assert "[container] sleeping: 3 of 4 s" in capfd.readouterr().out  # Airflow's structlog writes to stdout


def test_deadline_stops_the_container(launcher: LauncherClient, identity: dict[str, Any]) -> None:
    handle = launcher.launch("diagnostic", identity, {"action": "sleep", "seconds": 120})
    event = _first_event(_trigger(handle, identity, poll_interval=0.5, deadline=time.time() + 3))
    assert event.payload["state"] == "timeout"
    status = launcher.wait_status(handle, timeout=30)
    assert status.state == "failed" and status.reason == "stopped"


def test_on_kill_stops_the_container(launcher: LauncherClient, identity: dict[str, Any]) -> None:
    handle = launcher.launch("diagnostic", identity, {"action": "sleep", "seconds": 120})
    wait_for_log_line(launcher, handle, "sleeping: 0 of")
    asyncio.run(_trigger(handle, identity).on_kill())
    status = launcher.wait_status(handle, timeout=30)
    assert status.state == "failed" and status.reason == "stopped" and status.exit_code == 143
    assert "marked failed or success, or cleared" in (status.error or "")  # who stopped it, in words
    gone_by = time.monotonic() + 5  # the launcher's watcher removes it once its end is recorded
    while handle.task_ref[:12] in task_containers() and time.monotonic() < gone_by:
        time.sleep(0.1)
    assert handle.task_ref[:12] not in task_containers()


def test_a_container_gone_without_status_fails_with_the_launchers_record(
    launcher: LauncherClient, identity: dict[str, Any]
) -> None:
    handle = launcher.launch("diagnostic", identity, {"action": "sleep", "seconds": 120})
    wait_for_log_line(launcher, handle, "sleeping: 0 of")
    subprocess.run(["docker", "rm", "-f", handle.task_ref], check=True, capture_output=True)  # no status.json
    event = _first_event(_trigger(handle, identity, poll_interval=0.2, describe_every=3), timeout=30)
    status = event.payload["status"]
    assert event.payload["state"] == "failed" and status["written_by"] == "launcher"
    assert status["reason"] in ("killed", "lost") and "no status.json from the task" in status["error"]


def test_a_describe_the_launcher_is_slow_to_answer_does_not_hold_up_the_watch(
    launcher: LauncherClient, identity: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a fan-out the launcher answers a describe only after the launches queued before it (minutes):
    meanwhile the task's own status.json must still end the watch."""
    asked = []

    async def queued_for_ever(self: LaunchedTaskTrigger) -> None:
        asked.append(time.monotonic())
        await asyncio.sleep(3600)

    monkeypatch.setattr(LaunchedTaskTrigger, "_ended_unrecorded", queued_for_ever)
    handle = launcher.launch("diagnostic", identity, {"action": "sleep", "seconds": 3})
    event = _first_event(_trigger(handle, identity, poll_interval=0.2, describe_every=2), timeout=30)
    assert event.payload["state"] == "succeeded" and event.payload["result"] == {"slept": 3.0}
    assert asked, "the trigger never asked the launcher"


def test_trigger_round_trips_through_serialize(launcher: LauncherClient, identity: dict[str, Any]) -> None:
    handle = launcher.launch("diagnostic", identity, {"action": "echo"})
    classpath, kwargs = _trigger(handle, identity, deadline=time.time() + 600).serialize()
    assert classpath == "airlaunch.providers.airflow.triggers.launched_task.LaunchedTaskTrigger"
    again = LaunchedTaskTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert _first_event(again).payload["state"] == "succeeded"


def test_a_status_notification_wakes_the_trigger_before_its_next_poll(
    launcher: LauncherClient, identity: dict[str, Any], counted_reads: list[str]
) -> None:
    """S3 → SQS → the listener: with a 120 s poll, only the notification can end this within 60 s."""
    handle = launcher.launch("diagnostic", identity, {"action": "sleep", "seconds": 2})
    trigger = _trigger(handle, identity, poll_interval=120, status_queue="airlaunch-status")
    event = _first_event(trigger, timeout=60)
    assert event.payload["state"] == "succeeded" and event.payload["result"] == {"slept": 2.0}
    # the first look (not there yet), the look after the notification, then the log and the result
    assert counted_reads.count(handle.layout.status_key) == 2, counted_reads
    assert trigger._listener is not None and not trigger._listener.waiters  # nothing watched once it ended


def test_one_listener_serves_tasks_one_after_another(launcher: LauncherClient, identity: dict[str, Any]) -> None:
    """The listener outlives each task: a long poll cancelled with its last task would swallow the next message."""

    async def one_after_another() -> list[Any]:
        events = []
        for number in range(3):
            handle = launcher.launch("diagnostic", {**identity, "map_index": number}, {"action": "sleep", "seconds": 1})
            trigger = _trigger(handle, identity, poll_interval=120, status_queue="airlaunch-status")
            async for event in trigger.run():
                events.append((event, trigger._listener))
                break
        return events

    events = asyncio.run(asyncio.wait_for(one_after_another(), 100))  # a missed notification costs 120 s)
    assert [event.payload["state"] for event, _ in events] == ["succeeded"] * 3
    assert len({id(listener) for _, listener in events}) == 1


def test_without_notifications_the_trigger_falls_back_to_polling(
    launcher: LauncherClient, identity: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    handle = launcher.launch("diagnostic", identity, {"action": "sleep", "seconds": 3})
    trigger = _trigger(handle, identity, poll_interval=0.5, status_queue="no-such-queue")
    event = _first_event(trigger, timeout=60)
    assert event.payload["state"] == "succeeded"
    assert trigger._listener is not None and trigger._listener.degraded
    assert "status notifications failed" in caplog.text and "poll S3 meanwhile" in caplog.text


def _wait_until(condition: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.3)


def test_a_100_mb_log_burst_costs_its_trigger_bounded_reads_beside_a_short_task(
    launcher: LauncherClient,
    identity: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Two triggers on one event loop, as in a triggerer: a task printing 100 MB and a 2 s task. Every log
    read is at most AIRLAUNCH_LOG_READ_BYTES and shows a bounded number of lines, whatever the log's size."""
    read_bytes = AirflowSettings().log_read_bytes
    reads: list[tuple[str, int]] = []
    real = log_follower.read_range

    async def counting(client: Any, bucket: str, key: str, first: int, last: int | None) -> Any:
        found = await real(client, bucket, key, first, last)
        reads.append((key, len(found[0]) if found else 0))
        return found

    monkeypatch.setattr(log_follower, "read_range", counting)
    burst = launcher.launch("diagnostic", {**identity, "task_id": "burst"}, {"action": "log", "log_mib": 100})
    _wait_until(lambda: _has(launcher, burst, "log/000002"), "the burst's third log part", 120)
    short = launcher.launch("diagnostic", {**identity, "task_id": "short"}, {"action": "sleep", "seconds": 2})

    async def watch(handle: Handle) -> Any:
        trigger = LaunchedTaskTrigger(
            handle=handle.to_dict(), function_name="function", aws_conn_id="airlaunch_aws", poll_interval=0.25
        )
        async for event in trigger.run():
            return event

    async def both() -> list[Any]:
        return list(await asyncio.gather(watch(burst), watch(short)))

    burst_event, short_event = asyncio.run(asyncio.wait_for(both(), 300))

    assert short_event.payload["state"] == "succeeded" and short_event.payload["result"] == {"slept": 2.0}
    assert burst_event.payload["state"] == "succeeded"
    assert burst_event.payload["result"] == {"log_lines": 100 * 2**20 // 100}
    burst_reads = [size for key, size in reads if key.startswith(burst.prefix)]
    assert burst_reads and max(burst_reads) <= read_bytes, max(burst_reads)
    assert sum(burst_reads) < 10 * 2**20  # of 100 MB, a bounded part is read
    shown = capfd.readouterr().out.count("[container] burst line")  # Airflow's structlog writes to stdout
    assert 0 < shown <= 200 * len(burst_reads)  # at most 200 lines per read, the rest is a marker
    print(f"\nburst: {len(burst_reads)} log reads, {sum(burst_reads) / 2**20:.1f} MiB read, {shown} lines shown")


def _has(launcher: LauncherClient, handle: Handle, name: str) -> bool:
    try:
        launcher.read(handle.layout, name)
    except launcher.s3.exceptions.NoSuchKey:
        return False
    return True
