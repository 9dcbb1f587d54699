"""The local Lambda pool's health tells a busy pool from a hung one."""

from __future__ import annotations

import threading
from typing import Any

from airlaunch.launcher import local_pool
from airlaunch.launcher.local_pool import Pool


class Environment:
    """An execution environment whose launches end when the test says so."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def ensure_running(self) -> None:
        pass

    def invoke(self, path: str, body: bytes, timeout: float) -> tuple[int, dict[str, str], bytes]:
        if body == local_pool.PING:
            return 200, {}, b'{"ok": true, "backend": "docker", "tasks": ["diagnostic"]}'
        self.release.wait(10)
        return 200, {}, b'{"ok": true}'


def busy_pool(launches: int) -> tuple[Pool, Environment, list[threading.Thread]]:
    environment = Environment()
    pool = Pool([environment], timeout=30)  # type: ignore[list-item]
    threads = [threading.Thread(target=pool.invoke, args=(local_pool.INVOKE_PATH, b"{}")) for _ in range(launches)]
    for thread in threads:
        thread.start()
    while pool.pending < launches:
        threading.Event().wait(0.01)
    return pool, environment, threads


def test_idle_pool_is_healthy_when_an_environment_answers_a_ping() -> None:
    ok, state = Pool([Environment()], timeout=30).health()  # type: ignore[list-item]
    assert ok and state["ping"] == {"ok": True, "backend": "docker", "tasks": ["diagnostic"]}


def test_busy_pool_is_healthy_while_it_makes_progress_without_waiting_for_its_queue() -> None:
    pool, environment, threads = busy_pool(5)
    ok, state = pool.health()  # answered at once, not queued behind the five launches
    assert ok and state["pending"] == 5
    environment.release.set()
    for thread in threads:
        thread.join()
    assert pool.pending == 0


def test_busy_pool_without_progress_for_too_long_is_unhealthy(monkeypatch: Any) -> None:
    pool, environment, threads = busy_pool(2)
    monkeypatch.setattr(local_pool, "HANG_SECONDS", 0.05)
    threading.Event().wait(0.1)
    ok, state = pool.health()
    assert not ok and state["seconds_since_progress"] >= 0.05
    environment.release.set()
    for thread in threads:
        thread.join()
