"""The triggerer's warm-up plugin (airlaunch.providers.airflow.warm_up): armed in a triggerer only, run once in
the child of its first fork (the trigger runner), and a failure costs only the head start."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from airlaunch.providers.airflow import warm_up


@pytest.fixture(autouse=True)
def disarmed() -> Any:
    warm_up._Armed.value = False
    yield
    warm_up._Armed.value = False


def test_only_a_triggerer_process_counts_as_one() -> None:
    assert warm_up.is_triggerer(["/venv/bin/airflow", "triggerer"])
    assert not warm_up.is_triggerer(["/venv/bin/airflow", "scheduler"])
    assert not warm_up.is_triggerer(["python"])


def test_another_process_registers_nothing() -> None:
    registered: list[dict[str, Any]] = []
    listener = warm_up.TriggererWarmUp(["airflow", "dag-processor"], lambda **kw: registered.append(kw))
    listener.on_starting(component=object())
    assert registered == [] and not warm_up._Armed.value


def test_a_triggerer_arms_the_warm_up_and_registers_its_fork_handlers_once() -> None:
    registered: list[dict[str, Any]] = []
    listener = warm_up.TriggererWarmUp(["airflow", "triggerer"], lambda **kw: registered.append(kw))
    listener.on_starting(component=object())
    listener.on_starting(component=object())
    assert warm_up._Armed.value
    assert registered == [{"after_in_child": warm_up._in_trigger_runner, "after_in_parent": warm_up._disarm}]


def test_the_child_starts_the_warm_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    monkeypatch.setattr(warm_up, "warm_up_api", lambda: ran.append("api"))
    monkeypatch.setattr(warm_up, "import_trigger_modules", lambda: ran.append("imports"))
    warm_up._in_trigger_runner()  # not armed: nothing
    warm_up._Armed.value = True
    warm_up._in_trigger_runner()
    warm_up._in_trigger_runner()  # disarmed by the first
    import threading

    for thread in threading.enumerate():
        if thread.name.startswith("airlaunch-warm-up"):
            thread.join(timeout=10)
    assert sorted(ran) == ["api", "imports"]


def test_the_request_waits_for_the_runners_channel() -> None:
    channel: list[object | None] = [None, None, object()]
    requests: list[int] = []
    made = warm_up.warm_up_api(lambda: channel.pop(0), lambda: requests.append(1), wait_seconds=5, pause=0)
    assert made and requests == [1]


def test_no_channel_in_time_makes_no_request() -> None:
    requests: list[int] = []
    assert not warm_up.warm_up_api(lambda: None, lambda: requests.append(1), wait_seconds=0.05, pause=0.01)
    assert requests == []


def test_a_failed_request_costs_the_head_start_only() -> None:
    def fail() -> None:
        raise ConnectionError("supervisor gone")

    assert not warm_up.warm_up_api(lambda: object(), fail, wait_seconds=1, pause=0)


def test_imports_that_fail_are_returned_not_raised() -> None:
    assert warm_up.import_trigger_modules(("json", "airlaunch_no_such_module")) == ["airlaunch_no_such_module"]


def test_outside_a_trigger_runner_there_is_no_channel() -> None:
    assert warm_up.supervisor_channel() is None


# In a process of its own (fork handlers cannot be removed): the first fork after on_starting runs the warm-up in
# its child and disarms the parent; a second fork's child starts nothing.
FORKS = """
import json, os, sys, threading
from airlaunch.providers.airflow import warm_up
warm_up.warm_up_api = lambda: None
warm_up.import_trigger_modules = lambda: None
warm_up.TriggererWarmUp(["airflow", "triggerer"]).on_starting(component=None)
seen = []
for _ in range(2):
    started = threading.Thread.start
    names = []
    def spy(self, _start=started):
        names.append(self.name)
        return _start(self)
    threading.Thread.start = spy
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, json.dumps(names).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    os.close(write)
    seen.append({"child_threads": json.loads(os.read(read, 1000)), "parent_armed": warm_up._Armed.value})
    threading.Thread.start = started
print(json.dumps(seen))
"""


def test_the_first_fork_after_a_triggerer_starts_warms_up_in_the_child_only() -> None:
    done = subprocess.run([sys.executable, "-c", FORKS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, second = json.loads(done.stdout.splitlines()[-1])
    assert first == {"child_threads": ["airlaunch-warm-up-api", "airlaunch-warm-up-imports"], "parent_armed": False}
    assert second == {"child_threads": [], "parent_armed": False}


def test_airflow_finds_the_plugin_through_its_entry_point() -> None:
    """pyproject.toml's ``airflow.plugins`` entry point, as the installed package declares it to Airflow."""
    from importlib.metadata import entry_points

    from airflow.plugins_manager import is_valid_plugin

    (entry,) = [e for e in entry_points(group="airflow.plugins") if e.name == "airlaunch_triggerer_warm_up"]
    plugin = entry.load()
    assert plugin is warm_up.WarmUpPlugin and is_valid_plugin(plugin)
    assert [type(listener) for listener in plugin.listeners] == [warm_up.TriggererWarmUp]
