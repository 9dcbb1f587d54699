"""The result cache on the real stack: the launcher Lambda, Docker, the task runtime and LocalStack's S3.

The module adds cacheable entries to the stack's copy of the catalog (the launcher reads it again when it
changes) and takes them out after. Each rule is one test; a container counts as started when the launch
returns a handle with a task_ref, and a hit as a handle with ``cached_from``, no task_ref, and a status.json
of its own. A first try's entry is written when the launcher's watcher records its container's end, so a
test waits for that record (the container removed after it) before the launch that should hit or miss.
They mirror tests/unit/test_result_cache.py, which runs the same rules on the launcher service alone.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from airlaunch.protocol import CacheEntry, Handle, Status
from airlaunch.stack import Stack
from tests.cache_stack import cache_entries
from tests.conftest import TEST_CATALOG, LauncherClient

pytestmark = pytest.mark.stack

IMAGE = "airlaunch/cache-test:latest"  # this module's own tag, rebuilt by one test (never a shared image's)
THREE = ["python", "/opt/tasks/task_three.py"]
DIAGNOSTIC = ["python", "/opt/tasks/diagnostic.py"]
ENTRIES = {
    "cache_three": {"command": THREE, "cache": True},
    "cache_image": {"image": IMAGE, "command": THREE, "cache": True},
    "cache_ttl": {"command": DIAGNOSTIC, "cache": {"ttl_seconds": 3600}},
    "cache_diagnostic": {"command": DIAGNOSTIC, "cache": True},
}


def _build(label: str) -> str:
    """airlaunch/cache-test:latest FROM the reference tasks with a label of its own: another image id."""
    dockerfile = f"FROM airlaunch/reference-tasks:latest\nLABEL airlaunch.cache-test={label}\n"
    subprocess.run(["docker", "build", "-q", "-t", IMAGE, "-"], input=dockerfile, text=True, check=True,
                   capture_output=True)  # fmt: skip
    return subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", IMAGE], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


def _edit_catalog(change: Any) -> None:
    catalog = yaml.safe_load(TEST_CATALOG.read_text())
    change(catalog["tasks"])
    tmp = TEST_CATALOG.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(catalog, sort_keys=False))
    tmp.replace(TEST_CATALOG)


@pytest.fixture(scope="module")
def cacheable(stack: Stack) -> Iterator[None]:
    _build("1")
    _edit_catalog(lambda tasks: tasks.update(ENTRIES))
    yield
    _edit_catalog(lambda tasks: [tasks.pop(name, None) for name in ENTRIES])
    subprocess.run(["docker", "image", "rm", "-f", IMAGE], capture_output=True)


def _run(launcher: LauncherClient, task: str, identity: dict[str, Any], run: str, params: dict[str, Any],
         **extra: Any) -> Handle:  # fmt: skip
    """A launch in run ``run`` of this test; the params carry the test's own nonce, since the stack's S3 (and
    so its cache) outlives a test session: the same params in an earlier session would hit."""
    nonce = identity["run_id"]
    return launcher.launch(task, {**identity, "run_id": f"{nonce}_{run}"}, {**params, "nonce": nonce}, **extra)


def _recorded(handle: Handle, timeout: float = 60) -> None:
    """The launcher has recorded the end of the try's container (and so cached it, if it would): it removes
    the container right after."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["docker", "ps", "-aq", "--filter", f"id={handle.task_ref}"], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
        if not out.strip():
            return
        time.sleep(0.2)
    raise AssertionError(f"the end of {handle.task_ref} was not recorded within {timeout} s")


def _ran(launcher: LauncherClient, handle: Handle) -> Status:
    """A try that started a container, to its end as the launcher records it."""
    assert handle.launched and handle.task_ref and handle.cached_from is None, handle
    status = launcher.wait_status(handle)
    _recorded(handle)
    return status


def _entries(launcher: LauncherClient, task: str) -> list[tuple[str, CacheEntry]]:
    return cache_entries(launcher.s3, launcher.bucket, task)


def _served(launcher: LauncherClient, handle: Handle, source: Handle) -> Status:
    assert handle.cached_from == source.prefix and handle.task_ref == "" and not handle.launched, handle
    status = Status.from_json(launcher.read(handle.layout, "status.json"))
    assert status.state == "succeeded" and status.cached_from == source.prefix and status.written_by == "cache"
    assert launcher.read(handle.layout, "result.json") == launcher.read(source.layout, "result.json")
    return status


@pytest.mark.usefixtures("cacheable")
class TestResultCache:
    def test_the_same_params_twice_start_one_container(
        self, launcher: LauncherClient, identity: dict[str, Any]
    ) -> None:
        params = {"task_two_value": 1.5, "factor": 2}
        first = _run(launcher, "cache_three", identity, "a", params)
        assert _ran(launcher, first).state == "succeeded"

        second = _run(launcher, "cache_three", identity, "b", {"factor": 2, "task_two_value": 1.5})

        status = _served(launcher, second, first)
        assert json.loads(launcher.read(second.layout, "result.json"))["product"] == 3.0
        assert status.result_keys["result"] == second.layout.result_key  # its own copy: XCom reads it unchanged
        log = launcher.read(second.layout, "log.txt").decode()
        assert "served from the result cache" in log and "times 2.0 is 3.0" in log
        assert subprocess.run(["docker", "ps", "-aq", "--filter", f"label=airlaunch.run_id={identity['run_id']}_b"],
                              capture_output=True, text=True).stdout == ""  # fmt: skip

    def test_a_changed_param_starts_a_new_container(self, launcher: LauncherClient, identity: dict[str, Any]) -> None:
        first = _run(launcher, "cache_three", identity, "a", {"task_two_value": 2.5, "factor": 2})
        _ran(launcher, first)
        changed = _run(launcher, "cache_three", identity, "b", {"task_two_value": 2.5, "factor": 3})
        _ran(launcher, changed)
        assert json.loads(launcher.read(changed.layout, "result.json"))["product"] == 7.5

    def test_a_changed_upstream_result_starts_a_new_container(
        self, launcher: LauncherClient, identity: dict[str, Any]
    ) -> None:
        """A param naming an upstream try's result.json counts by that object's content, not by its key."""

        def upstream(run: str, body: bytes) -> str:
            key = f"runs/upstream/{identity['run_id']}_{run}/two/-1/1/result.json"
            launcher.s3.put_object(Bucket=launcher.bucket, Key=key, Body=body)
            return f"s3://{launcher.bucket}/{key}"

        params = {"task_two_value": 1, "factor": 2}
        first = _run(launcher, "cache_three", identity, "a", {**params, "input": upstream("x", b'{"v": 1}')})
        _ran(launcher, first)
        same = _run(launcher, "cache_three", identity, "b", {**params, "input": upstream("y", b'{"v": 1}')})
        _served(launcher, same, first)
        changed = _run(launcher, "cache_three", identity, "c", {**params, "input": upstream("z", b'{"v": 2}')})
        _ran(launcher, changed)

    def test_a_new_image_under_the_same_tag_starts_a_new_container(
        self, launcher: LauncherClient, identity: dict[str, Any]
    ) -> None:
        params = {"task_two_value": 4, "factor": 2}
        first = _run(launcher, "cache_image", identity, "a", params)
        _ran(launcher, first)
        _served(launcher, _run(launcher, "cache_image", identity, "b", params), first)

        _build(f"rebuilt-{time.time_ns()}")  # the same tag, another image id
        rebuilt = _run(launcher, "cache_image", identity, "c", params)
        _ran(launcher, rebuilt)
        _served(launcher, _run(launcher, "cache_image", identity, "d", params), rebuilt)

    def test_a_changed_command_starts_a_new_container(self, launcher: LauncherClient, identity: dict[str, Any]) -> None:
        params = {"task_two_value": 5, "factor": 2}
        first = _run(launcher, "cache_three", identity, "a", params)
        _ran(launcher, first)
        _edit_catalog(lambda tasks: tasks["cache_three"].update(command=[*THREE, "--again"]))
        try:
            _ran(launcher, _run(launcher, "cache_three", identity, "b", params))
        finally:
            _edit_catalog(lambda tasks: tasks["cache_three"].update(command=THREE))
        _served(launcher, _run(launcher, "cache_three", identity, "c", params), first)

    def test_a_failed_try_is_not_reused(self, launcher: LauncherClient, identity: dict[str, Any]) -> None:
        params = {"action": "exit", "code": 3}
        failed = _run(launcher, "cache_diagnostic", identity, "a", params)
        assert _ran(launcher, failed).state == "failed"
        again = _run(launcher, "cache_diagnostic", identity, "b", params)
        assert _ran(launcher, again).state == "failed"

    def test_an_entry_expires_after_its_ttl(self, launcher: LauncherClient, identity: dict[str, Any]) -> None:
        """The entry's time is the clock here: it is written back as cached 3000 s ago (within the 3600 s TTL:
        a hit), then 4000 s ago (expired: the task runs again)."""
        params = {"action": "echo", "message": "ttl"}
        first = _run(launcher, "cache_ttl", identity, "a", params)
        _ran(launcher, first)
        [(key, entry)] = [(k, e) for k, e in _entries(launcher, "cache_ttl") if e.prefix == first.prefix]

        def cached_ago(seconds: float) -> None:
            created = datetime.fromtimestamp(time.time() - seconds, UTC).isoformat()
            body = json.dumps({**json.loads(entry.to_json()), "created_at": created})
            launcher.s3.put_object(Bucket=launcher.bucket, Key=key, Body=body.encode())

        cached_ago(3000)
        _served(launcher, _run(launcher, "cache_ttl", identity, "b", params), first)
        cached_ago(4000)
        expired = _run(launcher, "cache_ttl", identity, "c", params)
        _ran(launcher, expired)
        [(_, replaced)] = [(k, e) for k, e in _entries(launcher, "cache_ttl") if k == key]
        assert replaced.prefix == expired.prefix  # the expired entry was replaced by the new result
        _served(launcher, _run(launcher, "cache_ttl", identity, "d", params), expired)

    def test_cache_false_on_the_call_runs(self, launcher: LauncherClient, identity: dict[str, Any]) -> None:
        params = {"action": "echo", "message": "off"}
        first = _run(launcher, "cache_diagnostic", identity, "a", params)
        _ran(launcher, first)
        off = _run(launcher, "cache_diagnostic", identity, "b", params, cache=False)
        _ran(launcher, off)
        assert [e.prefix for _, e in _entries(launcher, "cache_diagnostic") if e.prefix in (first.prefix, off.prefix)] \
            == [first.prefix]  # fmt: skip
        _served(launcher, _run(launcher, "cache_diagnostic", identity, "c", params), first)

    def test_two_identical_tries_launched_together_leave_one_entry(
        self, launcher: LauncherClient, identity: dict[str, Any]
    ) -> None:
        params = {"action": "sleep", "seconds": 3}
        one = _run(launcher, "cache_diagnostic", identity, "a", params)
        two = _run(launcher, "cache_diagnostic", identity, "b", params)  # while the first runs: both run
        _ran(launcher, one)
        _ran(launcher, two)
        mine = [e for _, e in _entries(launcher, "cache_diagnostic") if e.prefix in (one.prefix, two.prefix)]
        assert len(mine) == 1
        source = one if mine[0].prefix == one.prefix else two
        _served(launcher, _run(launcher, "cache_diagnostic", identity, "c", params), source)
