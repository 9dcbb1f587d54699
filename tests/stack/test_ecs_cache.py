"""The result cache in the stack's ECS mode: the key's image digest from the emulated account's ECR, the entry
written when ECS's task-stopped event reaches the launcher, and a hit that starts no ECS task at all.

task_one is made cacheable in the stack's copy of the catalog for this module (the launcher reads it again
when it changes); the emulated account already has its task definition.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import yaml

from airlaunch.protocol import CacheEntry, Handle, Status
from airlaunch.stack import Stack
from airlaunch.stack.ecs_account import STACK_NAME
from tests.cache_stack import cache_entries
from tests.conftest import TEST_CATALOG, LauncherClient

pytestmark = pytest.mark.stack


def _cache_task_one(on: bool) -> None:
    catalog = yaml.safe_load(TEST_CATALOG.read_text())
    entry = catalog["tasks"]["task_one"]
    if on:
        entry["cache"] = True
    else:
        entry.pop("cache", None)
    tmp = TEST_CATALOG.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(catalog, sort_keys=False))
    tmp.replace(TEST_CATALOG)


@pytest.fixture(scope="module")
def ecs(ecs_mode: Stack) -> Iterator[Stack]:
    _cache_task_one(True)
    yield ecs_mode
    _cache_task_one(False)


def _entry_of(launcher: LauncherClient, handle: Handle, timeout: float = 90) -> CacheEntry:
    """The entry the launcher writes once ECS's task-stopped event for the try has reached it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for _, entry in cache_entries(launcher.s3, launcher.bucket, "task_one"):
            if entry.prefix == handle.prefix:
                return entry
        time.sleep(0.5)
    raise AssertionError(f"no cache entry for {handle.prefix} within {timeout} s")


def test_a_hit_starts_no_ecs_task(ecs: Stack, launcher: LauncherClient, identity: dict[str, Any]) -> None:
    ecs_api = boto3.client("ecs", endpoint_url=ecs.cfg.ecs_url, region_name=ecs.cfg.region)
    params = {"nonce": identity["run_id"]}  # the stack's S3 outlives the session: params of this test only
    first = launcher.launch("task_one", {**identity, "run_id": identity["run_id"] + "_a"}, params)
    assert first.backend == "ecs" and first.task_ref.startswith("arn:aws:ecs:"), first
    assert launcher.wait_status(first).state == "succeeded"
    entry = _entry_of(launcher, first)
    [task] = ecs_api.describe_tasks(cluster=STACK_NAME, tasks=[first.task_ref])["tasks"]
    assert entry.image == task["containers"][0]["imageDigest"], "the key holds the image ECS reports it ran"

    second_identity = {**identity, "run_id": identity["run_id"] + "_b"}
    second = launcher.launch("task_one", second_identity, params)

    assert second.cached_from == first.prefix and second.task_ref == "" and not second.launched, second
    status = Status.from_json(launcher.read(second.layout, "status.json"))
    assert status.state == "succeeded" and status.cached_from == first.prefix and status.written_by == "cache"
    assert json.loads(launcher.read(second.layout, "result.json")) == json.loads(
        launcher.read(first.layout, "result.json")
    )
    started = [arn for state in ("RUNNING", "STOPPED")
               for arn in ecs_api.list_tasks(cluster=STACK_NAME, desiredStatus=state)["taskArns"]]  # fmt: skip
    described = ecs_api.describe_tasks(cluster=STACK_NAME, tasks=started, include=["TAGS"])["tasks"] if started else []
    runs = {tag["value"] for t in described for tag in t.get("tags", []) if tag["key"] == "airlaunch.run_id"}
    assert second_identity["run_id"] not in runs and identity["run_id"] + "_a" in runs, "no ECS task for the hit"
