"""Changes reach the running launcher: a task added to the catalog launches at once (after the documented
`make reload`, which rebuilds only what changed), while a task launched before keeps running and succeeds;
a broken catalog edit is refused with the file's own error and the next good save is taken."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from airlaunch.stack import Stack
from tests.conftest import TEST_CATALOG, LauncherClient

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]


def _save(path: Path, text: str) -> None:
    """As an editor saves: a new file renamed over the old one."""
    tmp = path.with_suffix(".swp")
    tmp.write_text(text)
    tmp.replace(path)


@pytest.fixture
def catalog() -> Iterator[dict[str, Any]]:
    original = TEST_CATALOG.read_text()
    yield yaml.safe_load(original)
    _save(TEST_CATALOG, original)


def test_a_task_added_to_the_catalog_launches_while_an_earlier_one_runs_on(
    stack: Stack, launcher: LauncherClient, identity: dict[str, Any], catalog: dict[str, Any]
) -> None:
    earlier = launcher.launch("diagnostic", {**identity, "task_id": "earlier"}, {"action": "sleep", "seconds": 8})
    refused = launcher.invoke({"action": "launch", "request": {"task": "greeter", "identity": identity}})
    assert not refused["ok"] and "'greeter' is not in the task catalog" in refused["error"]["message"]

    catalog["tasks"]["greeter"] = {
        "description": "added while the stack runs",
        "command": ["python", "/opt/tasks/task_one.py"],
    }
    _save(TEST_CATALOG, yaml.safe_dump(catalog))
    started = time.monotonic()
    reload = subprocess.run(["make", "--no-print-directory", "reload"], cwd=REPO, capture_output=True, text=True)
    assert reload.returncode == 0, reload.stdout + reload.stderr
    print(f"make reload took {time.monotonic() - started:.1f} s: {reload.stdout.strip().splitlines()[-1]}")

    added = launcher.launch("greeter", {**identity, "task_id": "greeter"})
    assert launcher.wait_status(added).state == "succeeded"
    assert b"my name is greeter" in launcher.read(added.layout, "log.txt")
    status = launcher.wait_status(earlier)
    assert status.state == "succeeded" and status.exit_code == 0


def test_a_broken_catalog_edit_is_refused_by_name_and_the_next_good_save_is_taken(
    launcher: LauncherClient, identity: dict[str, Any], catalog: dict[str, Any]
) -> None:
    good = TEST_CATALOG.read_text()
    _save(TEST_CATALOG, good.replace("tasks:", "tasks: [oops", 1))
    broken = launcher.invoke({"action": "launch", "request": {"task": "task_one", "identity": identity}})
    assert not broken["ok"] and broken["error"]["type"] == "CatalogError"
    assert "is not valid YAML" in broken["error"]["message"]
    assert launcher.invoke({"action": "ping"})["catalog_error"]

    _save(TEST_CATALOG, good)
    assert launcher.wait_status(launcher.launch("task_one", identity)).state == "succeeded"
