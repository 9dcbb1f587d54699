"""The CLI on a cache the launcher service filled (moto's S3): ``cache ls``, ``cache clear``, and a served
try in ``tasks``, ``show`` and ``report``, as for a fresh run plus ``cached_from`` and no Fargate cost."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airlaunch import cli
from airlaunch.launcher.service import Launcher
from airlaunch.launcher.settings import LauncherSettings
from airlaunch.protocol import Handle
from tests.unit.test_result_cache import BUCKET, ROOT, _catalog, _Clock, _launch, _Platform, finish


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main([*args, "--bucket", BUCKET, "--prefix", ROOT])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def served(moto_s3: Any) -> tuple[Launcher, Handle, Handle]:
    """Run r1 computed x=1 (and x=2); run r2 was served x=1 from the cache."""
    moto_s3.create_bucket(Bucket=BUCKET)
    platform = _Platform()
    launcher = Launcher(LauncherSettings(bucket=BUCKET, key_prefix=ROOT), _catalog(), platform, moto_s3, {})  # type: ignore[arg-type]
    launcher.cache.clock = _Clock()
    first = _launch(launcher, "r1", {"x": 1})
    finish(launcher, platform, first, {"answer": 42})
    other = _launch(launcher, "r1", {"x": 2}, at={"task_id": "other"})
    finish(launcher, platform, other, {"answer": 43})
    second = _launch(launcher, "r2", {"x": 1})
    assert second.cached_from == first.prefix
    return launcher, first, second


def test_ls_lists_each_entry_with_the_try_it_serves(
    served: tuple[Launcher, Handle, Handle], capsys: pytest.CaptureFixture[str]
) -> None:
    _, first, _ = served
    code, out, _ = run(capsys, "cache", "ls")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["TASK", "KEY", "AGE", "TTL", "RESULT", "OF"]
    assert len(lines) == 3 and first.prefix.removeprefix(f"{ROOT}/").rstrip("/") in out

    code, out, _ = run(capsys, "cache", "ls", "--json")
    entries = json.loads(out)["entries"]
    assert {e["prefix"] for e in entries} >= {first.prefix} and all(len(e["key"]) == 64 for e in entries)
    assert all(e["task"] == "compute" and e["ttl_seconds"] is None for e in entries)
    assert run(capsys, "cache", "ls", "--task", "plain")[1].startswith("no cache entries under")


def test_a_served_try_reads_as_a_run_with_cached_from_and_no_fargate_cost(
    served: tuple[Launcher, Handle, Handle], capsys: pytest.CaptureFixture[str]
) -> None:
    _, first, _ = served
    code, out, _ = run(capsys, "tasks", "dag", "r2")
    assert code == 0 and "succeeded (cached)" in out and "params,result,log" in out
    tries = json.loads(run(capsys, "tasks", "dag", "r2", "--json")[1])["tries"]
    assert tries[0]["state"] == "succeeded" and tries[0]["cached_from"] == first.prefix

    shown = json.loads(run(capsys, "show", "dag", "r2", "compute", "--json")[1])
    assert shown["result"] == {"answer": 42} and shown["status"]["cached_from"] == first.prefix
    out = run(capsys, "show", "dag", "r2", "compute")[1]
    assert f"cached from: s3://{BUCKET}/{first.prefix}" in out

    report = json.loads(run(capsys, "report", "dag", "r2", "--json")[1])
    [served_try] = report["tries"]
    assert served_try["cost"]["fargate"] == 0 and 0 < served_try["cost"]["total"] < 0.0001
    assert [p["phase"] for p in served_try["phases"]] == ["cache"]
    assert "succeeded (cached)" in run(capsys, "report", "dag", "r2")[1]
    ran = json.loads(run(capsys, "report", "dag", "r1", "--json")[1])["tries"]
    assert all(t["cost"]["fargate"] > 0 for t in ran)


def test_clear_by_key_by_task_and_all(
    served: tuple[Launcher, Handle, Handle], capsys: pytest.CaptureFixture[str]
) -> None:
    launcher, _, _ = served
    keys = [e["key"] for e in json.loads(run(capsys, "cache", "ls", "--json")[1])["entries"]]
    assert len(keys) == 2

    assert run(capsys, "cache", "clear", "--key", keys[0][:8]) == (0, "cleared 1 cache entry\n", "")
    assert [e["key"] for e in json.loads(run(capsys, "cache", "ls", "--json")[1])["entries"]] == keys[1:]
    code, _, err = run(capsys, "cache", "clear", "--key", keys[0][:8])
    assert code == 2 and "no cache entry has a key starting" in err
    assert run(capsys, "cache", "clear", "--key", "xyz")[0] == 2  # not hex

    assert run(capsys, "cache", "clear", "--task", "plain")[1] == "cleared 0 cache entries\n"
    assert run(capsys, "cache", "clear", "--task", "compute")[1] == "cleared 1 cache entry\n"
    assert run(capsys, "cache", "ls")[1].startswith("no cache entries")
    with pytest.raises(SystemExit) as usage:  # argparse: one of them is required
        run(capsys, "cache", "clear")
    assert usage.value.code == 2 and "one of the arguments --task --key --all is required" in capsys.readouterr().err
    assert run(capsys, "cache", "clear", "--all")[1] == "cleared 0 cache entries\n"
    # the runs themselves are untouched: clearing turns hits into misses, nothing else
    assert launcher.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{ROOT}/dag/")["KeyCount"] > 0
