"""The result cache's rules, on the launcher service with moto's S3 and a platform that runs nothing.

Each test launches tries through ``Launcher.launch`` and ends them as a platform and a runtime would
(``_Platform.finish``: the runtime's files, then the end the watcher records through ``Launcher.ended``),
on a clock of the test's own; a container is "started" when the fake platform's ``start`` is called, so
counting starts counts containers. The stack tests (tests/stack/test_result_cache.py) run the same rules
on Docker and LocalStack.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
import yaml

from airlaunch.catalog import Catalog
from airlaunch.launcher.backends.base import BackendState, LiveTask, Started
from airlaunch.launcher.cache_key import S3_CONTENT, ObjectResolver, cache_key
from airlaunch.launcher.service import Launcher
from airlaunch.launcher.settings import LauncherSettings
from airlaunch.protocol import (
    ENV_CACHE_CLAIM,
    CacheEntry,
    Handle,
    LaunchRequest,
    Overrides,
    RunIdentity,
    Status,
    StopReason,
    TaskState,
    entry_key,
)

BUCKET, ROOT = "cache-test", "runs"
IMAGE_A, IMAGE_B = "sha256:" + "a" * 64, "sha256:" + "b" * 64
TI = "0190d5b1-0000-7000-8000-{:012x}"


def _catalog(**entry: Any) -> Catalog:
    base = {"image": "airlaunch/reference-tasks:latest", "command": ["python", "/opt/tasks/task_three.py"]}
    plain = {"image": "airlaunch/reference-tasks:latest", "command": ["python", "/opt/tasks/task_two.py"]}
    return Catalog.from_dict({"tasks": {"compute": {**base, "cache": True, **entry}, "plain": plain}})


class _Platform:
    """Starts nothing; remembers each start, the env it got and the image it would have run."""

    name = "fake"

    def __init__(self) -> None:
        self.image = IMAGE_A  # what the engine resolves the entry's tag to now
        self.starts: list[tuple[str, dict[str, str], str]] = []  # (ref, env, image it ran)
        self.ended: dict[str, BackendState] = {}

    def image_digest(self, spec: Any) -> str | None:
        return self.image

    def live(self, identity: RunIdentity) -> list[LiveTask]:
        return []

    def live_tasks(self) -> list[LiveTask]:
        return []

    def start(self, spec: Any, identity: RunIdentity, env: dict[str, str]) -> Started:
        ref = f"c{len(self.starts)}"
        self.starts.append((ref, env, self.image))
        return Started(ref, launched=True)

    def describe(self, task_ref: str) -> BackendState:
        return self.ended.get(task_ref, BackendState(TaskState.RUNNING))

    def stop(self, task_ref: str, reason: str) -> bool:
        return False

    def forget(self, task_ref: str) -> None:
        pass

    def stopped_task(self, task_ref: str) -> None:
        return None


class _Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def platform() -> _Platform:
    return _Platform()


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


@pytest.fixture
def launcher(moto_s3: Any, platform: _Platform, clock: _Clock) -> Launcher:
    moto_s3.create_bucket(Bucket=BUCKET)
    settings = LauncherSettings(bucket=BUCKET, key_prefix=ROOT)
    launcher = Launcher(settings, _catalog(), platform, moto_s3, {})  # type: ignore[arg-type]
    launcher.cache.clock = clock
    return launcher


def _identity(run: str, task_id: str = "compute", number: int = 0, map_index: int = -1) -> RunIdentity:
    return RunIdentity("dag", run, task_id, map_index, 1, TI.format(abs(hash((run, task_id, number))) % 10**12))


def _launch(launcher: Launcher, run: str, params: dict[str, Any], **request: Any) -> Handle:
    identity, task = _identity(run, **request.pop("at", {})), request.pop("task", "compute")
    return launcher.launch(LaunchRequest(task=task, identity=identity, params=params, **request))


def finish(launcher: Launcher, platform: _Platform, handle: Handle, result: Any, *, succeeded: bool = True) -> Status:
    """The runtime's files, then the platform's end as the watcher records it (Launcher.ended)."""
    s3, layout = launcher.s3, handle.layout
    ref, env, image = next(start for start in platform.starts if start[0] == handle.task_ref)
    keys = {"params": layout.params_key, "log": layout.log_key}
    s3.put_object(Bucket=BUCKET, Key=layout.log_key, Body=b"computing\n")
    if succeeded:
        s3.put_object(Bucket=BUCKET, Key=layout.result_key, Body=json.dumps(result).encode())
        keys["result"] = layout.result_key
    status = Status(
        state=TaskState.SUCCEEDED if succeeded else TaskState.FAILED, exit_code=0 if succeeded else 1,
        reason=StopReason.EXIT, started_at="2027-01-01T00:00:00+00:00", ended_at="2027-01-01T00:00:01+00:00",
        execution_id=layout.prefix, result_keys=keys,
    )  # fmt: skip
    s3.put_object(Bucket=BUCKET, Key=layout.status_key, Body=status.to_json().encode())
    platform.ended[ref] = BackendState(TaskState.LOST, exit_code=status.exit_code, image=image)
    task = LiveTask(ref, "", layout, cache=env.get(ENV_CACHE_CLAIM, ""))
    launcher.ended(task)
    return status


def _read(launcher: Launcher, key: str) -> Any:
    return json.loads(launcher.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def _entries(launcher: Launcher) -> list[str]:
    found = launcher.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{ROOT}-cache/")
    return [o["Key"] for o in found.get("Contents", [])]


def _ran_then_again(
    launcher: Launcher, platform: _Platform, first: dict[str, Any], second: dict[str, Any], runs: str = "r1 r2"
) -> Handle:
    one, two = runs.split()
    handle = _launch(launcher, one, first)
    finish(launcher, platform, handle, {"answer": 42})
    return _launch(launcher, two, second)


# -- hits -----------------------------------------------------------------------------------------


def test_the_same_params_twice_start_one_container(launcher: Launcher, platform: _Platform) -> None:
    first = _launch(launcher, "r1", {"x": 1, "y": [1, 2]})
    finish(launcher, platform, first, {"answer": 42})

    second = _launch(launcher, "r2", {"y": [1, 2], "x": 1})  # the same params, in another order

    assert len(platform.starts) == 1
    assert second.cached_from == first.prefix and second.task_ref == "" and not second.launched
    status = Status.from_json(launcher.s3.get_object(Bucket=BUCKET, Key=second.layout.status_key)["Body"].read())
    assert status.state is TaskState.SUCCEEDED and status.cached_from == first.prefix
    assert status.written_by == "cache" and status.exit_code == 0 and status.usage is None
    assert status.result_keys == {
        "params": second.layout.params_key, "result": second.layout.result_key, "log": second.layout.log_key,
    }  # fmt: skip
    assert _read(launcher, second.layout.result_key) == {"answer": 42}  # its own copy, under its own prefix
    log = launcher.s3.get_object(Bucket=BUCKET, Key=second.layout.log_key)["Body"].read().decode()
    assert "served from the result cache" in log and first.prefix in log and "computing" in log
    params = yaml.safe_load(launcher.s3.get_object(Bucket=BUCKET, Key=second.layout.params_key)["Body"].read())
    assert params["params"] == {"y": [1, 2], "x": 1} and params["run"]["run_id"] == "r2"  # its own params.yaml


def test_a_hit_is_served_again_and_always_names_the_try_that_computed_it(
    launcher: Launcher, platform: _Platform
) -> None:
    first = _ran_then_again(launcher, platform, {"x": 1}, {"x": 1})
    third = _launch(launcher, "r3", {"x": 1})
    assert len(platform.starts) == 1 and third.cached_from == first.cached_from


def test_a_relaunch_of_a_served_try_is_that_try(launcher: Launcher, platform: _Platform) -> None:
    """A retried Lambda invocation of the launch that was served finds its status.json: nothing new."""
    served = _ran_then_again(launcher, platform, {"x": 1}, {"x": 1})
    again = _launch(launcher, "r2", {"x": 1})
    assert again.prefix == served.prefix and again.cached_from is None and len(platform.starts) == 1


# -- misses: what the key holds ---------------------------------------------------------------------


def test_a_changed_param_runs_again(launcher: Launcher, platform: _Platform) -> None:
    second = _ran_then_again(launcher, platform, {"x": 1}, {"x": 2})
    assert second.cached_from is None and len(platform.starts) == 2


def test_an_int_and_a_float_param_are_different_inputs(launcher: Launcher, platform: _Platform) -> None:
    second = _ran_then_again(launcher, platform, {"x": 1}, {"x": 1.0})
    assert second.cached_from is None and len(platform.starts) == 2


def test_a_new_image_under_the_same_tag_runs_again(launcher: Launcher, platform: _Platform) -> None:
    first = _launch(launcher, "r1", {"x": 1})
    finish(launcher, platform, first, {"answer": 42})
    platform.image = IMAGE_B  # rebuilt and tagged airlaunch/reference-tasks:latest again

    second = _launch(launcher, "r2", {"x": 1})

    assert second.cached_from is None and len(platform.starts) == 2
    finish(launcher, platform, second, {"answer": 43})
    third = _launch(launcher, "r3", {"x": 1})
    assert third.cached_from == second.prefix and _read(launcher, third.layout.result_key) == {"answer": 43}


def test_a_changed_command_env_or_override_runs_again(launcher: Launcher, platform: _Platform) -> None:
    first = _launch(launcher, "r1", {"x": 1})
    finish(launcher, platform, first, {"answer": 42})

    launcher.catalog = launcher.cache.catalog = _catalog(command=["python", "/opt/tasks/task_three.py", "--v2"])
    assert _launch(launcher, "r2", {"x": 1}).cached_from is None
    launcher.catalog = launcher.cache.catalog = _catalog(env={"MODE": "fast"})
    assert _launch(launcher, "r3", {"x": 1}).cached_from is None
    launcher.catalog = launcher.cache.catalog = _catalog()
    overrides = Overrides(env={"MODE": "slow"})
    assert _launch(launcher, "r4", {"x": 1}, overrides=overrides).cached_from is None
    assert len(platform.starts) == 4
    assert _launch(launcher, "r5", {"x": 1}, overrides=Overrides(memory_mib=400)).cached_from == first.prefix


def test_the_run_is_not_in_the_key_but_the_place_in_the_dag_is(launcher: Launcher, platform: _Platform) -> None:
    first = _launch(launcher, "r1", {"x": 1})
    finish(launcher, platform, first, {"answer": 42})

    assert _launch(launcher, "manual__2027-02-02", {"x": 1}, at={"number": 7}).cached_from == first.prefix
    # task_one's result says its task_id and map index: another place in the DAG is another result
    assert _launch(launcher, "r3", {"x": 1}, at={"task_id": "elsewhere"}).cached_from is None
    assert _launch(launcher, "r4", {"x": 1}, at={"map_index": 0}).cached_from is None


def test_an_upstream_result_counts_by_its_content(launcher: Launcher, platform: _Platform) -> None:
    """A param naming another try's result.json counts by that object's content (its ETag), not its key:
    an upstream that ran again and wrote the same bytes is the same input; other bytes are not."""
    s3 = launcher.s3

    def upstream(run: str, body: bytes) -> str:
        key = f"{ROOT}/dag/{run}/up/-1/1-{TI.format(1)}/result.json"
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        return key

    first = _launch(launcher, "r1", {"input": upstream("r1", b'{"rows": 3}')})
    finish(launcher, platform, first, {"answer": 42})

    same = _launch(launcher, "r2", {"input": f"s3://{BUCKET}/" + upstream("r2", b'{"rows": 3}')})
    changed = _launch(launcher, "r3", {"input": upstream("r3", b'{"rows": 4}')})

    assert same.cached_from == first.prefix
    assert changed.cached_from is None and len(platform.starts) == 2


def test_what_names_no_try_object_is_a_plain_string(moto_s3: Any) -> None:
    moto_s3.create_bucket(Bucket=BUCKET)
    key = f"{ROOT}/dag/r/up/-1/1-{TI.format(1)}/result.json"
    moto_s3.put_object(Bucket=BUCKET, Key=key, Body=b"1")
    resolver = ObjectResolver(moto_s3, BUCKET, ROOT)
    resolved = resolver.resolve({"a": [key], "b": f"s3://other/{key}", "c": "runs/not/a/try.json", "d": key + "x"})
    assert resolved["a"][0] == {S3_CONTENT: moto_s3.head_object(Bucket=BUCKET, Key=key)["ETag"]}
    assert resolved["b"] == f"s3://other/{key}" and resolved["c"] == "runs/not/a/try.json"
    assert resolved["d"] == key + "x"  # names no object: as it is


def test_secret_names_are_in_the_key_never_values() -> None:
    class Ref:
        service, name, json_key = "secretsmanager", "prod/db", "password"

    spec = replace(_catalog().get("compute"))
    object.__setattr__(spec, "secrets", {"DB_PASSWORD": Ref()})  # as the catalog's secrets: references
    request = LaunchRequest(task="compute", identity=_identity("r"), params={})
    key = cache_key(request, spec, IMAGE_A, {})
    assert key.inputs["secrets"] == {"DB_PASSWORD": {"service": "secretsmanager", "name": "prod/db",
                                                     "json_key": "password"}}  # fmt: skip
    assert key.key != cache_key(request, _catalog().get("compute"), IMAGE_A, {}).key


# -- what is never cached ---------------------------------------------------------------------------


def test_a_failed_try_is_not_reused(launcher: Launcher, platform: _Platform) -> None:
    first = _launch(launcher, "r1", {"x": 1})
    finish(launcher, platform, first, None, succeeded=False)
    assert _entries(launcher) == []
    assert _launch(launcher, "r2", {"x": 1}).cached_from is None and len(platform.starts) == 2


def test_a_try_that_ran_another_image_than_its_key_holds_is_not_cached(launcher: Launcher, platform: _Platform) -> None:
    """The tag moved between the key (image A) and the container's start (image B)."""
    first = _launch(launcher, "r1", {"x": 1})
    ref, env, _ = platform.starts[0]
    platform.starts[0] = (ref, env, IMAGE_B)
    finish(launcher, platform, first, {"answer": 42})
    assert _entries(launcher) == []


def test_cache_false_on_the_call_runs_and_writes_nothing(launcher: Launcher, platform: _Platform) -> None:
    first = _launch(launcher, "r1", {"x": 1}, cache=False)
    assert ENV_CACHE_CLAIM not in platform.starts[0][1]
    finish(launcher, platform, first, {"answer": 42})
    assert _entries(launcher) == []

    second = _ran_then_again(launcher, platform, {"x": 1}, {"x": 1}, runs="r5 r6")
    assert second.cached_from is not None
    assert _launch(launcher, "r9", {"x": 1}, cache=False).cached_from is None and len(platform.starts) == 3


def test_an_entry_without_cache_in_the_catalog_is_never_cached(launcher: Launcher, platform: _Platform) -> None:
    first = _launch(launcher, "r1", {"x": 1}, task="plain", cache=True)
    finish(launcher, platform, first, {"answer": 42})
    assert _entries(launcher) == [] and ENV_CACHE_CLAIM not in platform.starts[0][1]


# -- expiry, and entries that cannot be served ------------------------------------------------------


def test_an_entry_expires_after_its_ttl_on_the_launchers_clock(
    launcher: Launcher, platform: _Platform, clock: _Clock
) -> None:
    launcher.catalog = launcher.cache.catalog = _catalog(cache={"ttl_seconds": 3600})
    first = _launch(launcher, "r1", {"x": 1})
    finish(launcher, platform, first, {"answer": 42})

    clock.now += 3600
    assert _launch(launcher, "r2", {"x": 1}).cached_from == first.prefix
    clock.now += 1
    expired = _launch(launcher, "r3", {"x": 1})
    assert expired.cached_from is None and len(platform.starts) == 2

    finish(launcher, platform, expired, {"answer": 43})  # replaces the expired entry
    assert _launch(launcher, "r4", {"x": 1}).cached_from == expired.prefix


def test_a_shorter_ttl_in_the_catalog_applies_to_entries_already_written(
    launcher: Launcher, platform: _Platform, clock: _Clock
) -> None:
    first = _launch(launcher, "r1", {"x": 1})
    finish(launcher, platform, first, {"answer": 42})
    clock.now += 120
    launcher.catalog = launcher.cache.catalog = _catalog(cache={"ttl_seconds": 60})
    assert _launch(launcher, "r2", {"x": 1}).cached_from is None


@pytest.mark.parametrize("gone", ["status.json", "result.json"])
def test_an_entry_whose_try_is_gone_is_a_miss(launcher: Launcher, platform: _Platform, gone: str) -> None:
    first = _launch(launcher, "r1", {"x": 1})
    finish(launcher, platform, first, {"answer": 42})
    launcher.s3.delete_object(Bucket=BUCKET, Key=first.layout.key(gone))

    second = _launch(launcher, "r2", {"x": 1})

    assert second.cached_from is None and len(platform.starts) == 2
    finish(launcher, platform, second, {"answer": 42})
    assert _launch(launcher, "r3", {"x": 1}).cached_from == second.prefix  # the broken entry was replaced


def test_a_result_rewritten_since_it_was_cached_is_a_miss(launcher: Launcher, platform: _Platform) -> None:
    first = _launch(launcher, "r1", {"x": 1})
    finish(launcher, platform, first, {"answer": 42})
    launcher.s3.put_object(Bucket=BUCKET, Key=first.layout.result_key, Body=b'{"answer": 0}')
    second = _launch(launcher, "r2", {"x": 1})
    assert second.cached_from is None
    assert launcher.s3.list_objects_v2(Bucket=BUCKET, Prefix=second.layout.key("result"))["KeyCount"] == 0


def test_a_malformed_entry_is_a_miss_and_is_replaced(launcher: Launcher, platform: _Platform) -> None:
    first = _launch(launcher, "r1", {"x": 1})
    finish(launcher, platform, first, {"answer": 42})
    [key] = _entries(launcher)
    launcher.s3.put_object(Bucket=BUCKET, Key=key, Body=b'{"key": "half')

    second = _launch(launcher, "r2", {"x": 1})
    assert second.cached_from is None
    finish(launcher, platform, second, {"answer": 42})
    assert _launch(launcher, "r3", {"x": 1}).cached_from == second.prefix


def test_two_identical_tries_that_ran_together_leave_one_entry_the_first(
    launcher: Launcher, platform: _Platform
) -> None:
    one = _launch(launcher, "r1", {"x": 1})
    two = _launch(launcher, "r2", {"x": 1})  # launched before the first ended: both run
    assert len(platform.starts) == 2
    finish(launcher, platform, one, {"answer": 42})
    finish(launcher, platform, two, {"answer": 42})

    [key] = _entries(launcher)
    assert CacheEntry.from_json(launcher.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()).prefix == one.prefix
    assert key == entry_key(ROOT, "compute", key.rsplit("/", 1)[-1].removesuffix(".json"))
