"""What a task started in the triggerer (``start_from_trigger``) launches, resolved there.

The scheduler defers such a task with trigger kwargs fixed when the DAG was parsed. For a
plain task they hold the whole launch (the operator wrote it). A mapped task has one set of
kwargs for every map index, so the triggerer resolves its index's ``parameters`` from the
serialized task: a literal list, or the output of one upstream task. Other expand forms
raise ``CannotStartHere`` and the task launches from a worker instead, as does a launch
whose templates pull XComs (Airflow 3.3's triggerer cannot serve those pulls).

An unmapped upstream's list is read once for the triggers that ask for it at the same moment (a
fan-out's triggers start in batches; ``TriggererLoop.shared_read``): each read is a request the
triggerer's supervisor serves one per turn of its loop, in the same queue as the XCom pushes that end
tasks. A read that starts after the shared one has come back reads again, so nothing is kept between
batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow.sdk import Context
from airflow.sdk.definitions.xcom_arg import XComArg

from airlaunch.protocol import LaunchRequest, Overrides, RunIdentity

LAUNCH_ON_WORKER = "launch_on_worker"
"""The event state that resumes a task on a worker, which then launches it itself."""

TRIGGER_SETTINGS = ("function_name", "aws_conn_id", "region_name", "poll_interval", "max_xcom_bytes")
"""Trigger kwargs that a mapped task's ``partial()`` may set."""


def identity_of(context: Context) -> RunIdentity:
    """This task try's identity; Airflow gives every try its own task-instance id (``ti.id``)."""
    return identity_of_ti(context["ti"])


def identity_of_ti(ti: Any) -> RunIdentity:
    map_index = ti.map_index if ti.map_index is not None else -1
    ti_id = str(ti.id) if getattr(ti, "id", None) else ""
    return RunIdentity(ti.dag_id, ti.run_id, ti.task_id, map_index, ti.try_number, ti_id)


def launch_request(
    context: Context,
    task: str,
    parameters: dict[str, Any],
    overrides: dict[str, Any],
    include_dag_params: bool,
    cache: bool | None = None,
) -> LaunchRequest:
    """The request a worker or the triggerer sends: the DAG's params updated with the task's
    (rendered) parameters, and the run's identity; ``cache`` False turns the result cache off for
    this launch (None: as the catalog entry says). Raises InvalidRequest naming a bad field."""
    params = dict(context["params"]) if include_dag_params else {}
    params.update(parameters)
    overrides_ = Overrides.from_dict(overrides)
    return LaunchRequest(task=task, identity=identity_of(context), params=params, overrides=overrides_, cache=cache)


class CannotStartHere(Exception):
    """The launch needs a worker (its inputs cannot be resolved in the triggerer)."""


@dataclass
class LaunchSpec:
    task: str
    parameters: Any = field(default_factory=dict)
    overrides: Any = field(default_factory=dict)
    include_dag_params: bool = True
    wait_for_completion: bool = True
    execution_timeout: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    cache: bool | None = None  # absent from trigger kwargs serialized before the cache: the entry's setting


async def resolve_launch_spec(launch: dict[str, Any], ti: Any) -> LaunchSpec:
    if not launch.get("mapped"):
        return LaunchSpec(**launch)
    task = getattr(ti, "task", None)
    expand_input = getattr(task, "expand_input", None)
    if expand_input is None or not isinstance(getattr(expand_input, "value", None), dict):
        raise CannotStartHere("the mapped task's expand input is not available in the triggerer")
    if set(expand_input.value) != {"parameters"}:
        raise CannotStartHere(f"only expand(parameters=...) starts in the triggerer, not {sorted(expand_input.value)}")
    partial = dict(getattr(task, "partial_kwargs", {}))
    timeout = partial.get("execution_timeout")
    spec = LaunchSpec(
        task=partial["task"],
        parameters=await _mapped_item(expand_input.value["parameters"], ti),
        overrides=partial.get("overrides") or {},
        include_dag_params=partial.get("include_dag_params", True),
        wait_for_completion=partial.get("wait_for_completion", True),
        execution_timeout=timeout.total_seconds() if timeout is not None else None,
        settings={name: partial[name] for name in TRIGGER_SETTINGS if partial.get(name) is not None},
        cache=partial.get("cache"),
    )
    if pulls_xcoms((spec.parameters, spec.overrides)):
        raise CannotStartHere("its parameters or overrides pull XComs in a template")
    return spec


async def _mapped_item(source: Any, ti: Any) -> Any:
    """This map index's element of a literal list or of one upstream task's list output."""
    # Here, not at import: the operator imports this module wherever a DAG file is parsed, which needs neither.
    from airflow.sdk.execution_time.xcom import XCom
    from airflow.serialization.definitions.xcom_arg import SchedulerPlainXComArg

    from airlaunch.providers.airflow.triggerer import TriggererLoop  # the triggerer's only: no AWS SDK at parse

    if isinstance(source, list):
        return source[ti.map_index]
    if not isinstance(source, SchedulerPlainXComArg):  # .map(), zip(), concat() need a worker
        raise CannotStartHere(f"cannot resolve a {type(source).__name__} in the triggerer")
    upstream, key = source.operator, source.key
    where = {"key": key, "dag_id": ti.dag_id, "task_id": upstream.task_id, "run_id": ti.run_id}
    if getattr(upstream, "is_mapped", False):  # one element per upstream map index
        return await XCom.aget_one(**where, map_index=ti.map_index)
    read = ("xcom", *sorted(where.items()))
    items = await TriggererLoop.current().shared_read(read, lambda: XCom.aget_one(**where, map_index=-1))
    if not isinstance(items, list):
        raise CannotStartHere(f"{upstream.task_id}'s {key} is a {type(items).__name__}, not a list")
    return items[ti.map_index]


def pulls_xcoms(value: Any) -> bool:
    """An XComArg, or a template that pulls XComs, anywhere in value."""
    if isinstance(value, XComArg):
        return True
    if isinstance(value, str):
        return "xcom_pull" in value
    if isinstance(value, dict):
        return any(pulls_xcoms(item) for item in value.values())
    if isinstance(value, (list, tuple, set)):
        return any(pulls_xcoms(item) for item in value)
    return False
