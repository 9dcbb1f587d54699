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
    assert one.ecs is not None and one.ecs.task_definition == "airlaunch-reference-tasks"


def test_unknown_task_lists_known_ones() -> None:
    with pytest.raises(InvalidRequest, match=r"'nope' is not in the task catalog \(known: a\)"):
        Catalog.from_dict({"tasks": {"a": {"image": "i", "command": ["x"]}}}).get("nope")


def test_overrides_apply_only_to_allowed_fields() -> None:
    spec = Catalog.from_dict({"tasks": {"a": {"image": "i", "command": ["x"], "env": {"A": "1"}}}}).get("a")
    changed = spec.with_overrides(Overrides(env={"B": "2"}, cpu=2, memory_mib=1024, timeout_seconds=5))
    assert (changed.image, changed.command) == (spec.image, spec.command)
    assert changed.env == {"A": "1", "B": "2"}
    assert (changed.cpu, changed.memory_mib, changed.timeout_seconds) == (2, 1024, 5)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"command": ["x"]}, "'image' is required"),
        ({"image": "i"}, "exactly one of 'command'"),
        ({"image": "i", "command": ["x"], "notebook": "n"}, "exactly one of 'command'"),
        ({"image": "i", "command": "x"}, "non-empty list"),
        ({"image": "i", "command": ["x"], "privileged": True}, "unknown field"),
        ({"image": "i", "command": ["x"], "cpu": 100}, "cpu must be"),
        ({"image": "i", "command": ["x"], "ecs": {"cluster": "c"}}, "'ecs' must be"),
    ],
)
def test_catalog_mistakes_are_named(entry: dict, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        Catalog.from_dict({"tasks": {"t": entry}})
