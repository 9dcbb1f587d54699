"""The task catalog: the shipped one loads, and mistakes in one are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from airlaunch.catalog import Catalog, CatalogError
from airlaunch.protocol import InvalidRequest, Overrides

CATALOG = Path(__file__).resolve().parents[2] / "tasks" / "catalog.yaml"


def test_shipped_catalog_has_the_reference_tasks() -> None:
    catalog = Catalog.load(CATALOG)
    assert {"task_one", "task_two", "task_three", "report_notebook", "diagnostic"} <= set(catalog.tasks)
    one = catalog.get("task_one")
    assert one.image == "airlaunch/reference-tasks:latest"
    assert one.runtime_args() == ["--", "python", "/opt/tasks/task_one.py"]
    assert catalog.get("report_notebook").runtime_args() == ["--notebook", "/opt/tasks/report.ipynb"]
    assert one.build is not None and one.build.dockerfile == "tasks/reference/Dockerfile"
    assert (one.architecture, one.cpu_cap, one.memory_cap, one.timeout_cap) == ("x86_64", 2, 4096, 3600)


def test_unknown_task_lists_known_ones() -> None:
    with pytest.raises(InvalidRequest, match=r"'nope' is not in the task catalog \(known: a\)"):
        Catalog.from_dict({"tasks": {"a": {"image": "i", "command": ["x"]}}}).get("nope")


def test_overrides_apply_only_to_allowed_fields() -> None:
    entry = {"image": "i", "command": ["x"], "env": {"A": "1"}, "max_cpu": 2, "max_memory_mib": 1024}
    spec = Catalog.from_dict({"tasks": {"a": entry}}).get("a")
    changed = spec.with_overrides(Overrides(env={"B": "2"}, cpu=2, memory_mib=1024, timeout_seconds=5))
    assert (changed.image, changed.command) == (spec.image, spec.command)
    assert changed.env == {"A": "1", "B": "2"}
    assert (changed.cpu, changed.memory_mib, changed.timeout_seconds) == (2, 1024, 5)


@pytest.mark.parametrize(
    ("overrides", "field", "cap"),
    [
        (Overrides(cpu=2.5), "overrides.cpu", "max_cpu"),
        (Overrides(memory_mib=4097), "overrides.memory_mib", "max_memory_mib"),
        (Overrides(timeout_seconds=3601), "overrides.timeout_seconds", "max_timeout_seconds"),
    ],
)
def test_overrides_stop_at_the_catalog_caps(overrides: Overrides, field: str, cap: str) -> None:
    spec = Catalog.load(CATALOG).get("task_one")  # max_cpu 2, max_memory_mib 4096, max_timeout_seconds 3600
    with pytest.raises(InvalidRequest, match=f"over what catalog task 'task_one' allows.*raise its {cap}") as raised:
        spec.with_overrides(overrides)
    assert raised.value.field == field


def test_without_caps_a_launch_may_only_ask_for_less() -> None:
    spec = Catalog.from_dict({"tasks": {"a": {"image": "i", "command": ["x"], "cpu": 1}}}).get("a")
    assert spec.with_overrides(Overrides(cpu=0.25)).cpu == 0.25
    with pytest.raises(InvalidRequest, match=r"1.5 is over what catalog task 'a' allows \(1\)"):
        spec.with_overrides(Overrides(cpu=1.5))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"command": ["x"]}, "'image' is required"),
        ({"image": "i"}, "exactly one of 'command'"),
        ({"image": "i", "command": ["x"], "notebook": "n"}, "exactly one of 'command'"),
        ({"image": "i", "command": "x"}, "non-empty list"),
        ({"image": "i", "command": ["x"], "privileged": True}, "unknown field"),
        ({"image": "i", "command": ["x"], "cpu": 100}, "cpu must be"),
        ({"image": "i", "command": ["x"], "ecs": {"cluster": "c"}}, "unknown field"),
        ({"image": "i", "command": ["x"], "build": {"context": "."}}, "'build' must be"),
        ({"image": "i", "command": ["x"], "architecture": "aarch64"}, "architecture must be one of"),
        ({"image": "i", "command": ["x"], "cpu": 1, "max_cpu": 0.5}, r"max_cpu \(0.5\) is below cpu"),
        ({"image": "i", "command": ["x"], "max_memory_mib": 10**9}, "memory_mib in"),
    ],
)
def test_catalog_mistakes_are_named(entry: dict, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        Catalog.from_dict({"tasks": {"t": entry}})
