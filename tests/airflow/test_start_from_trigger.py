"""start_from_trigger: what the scheduler defers with, and what the triggerer resolves (no stack needed)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import DAG, task
from airflow.serialization.serialized_objects import BaseSerialization, DagSerialization

from airlaunch.providers.airflow.operators.launch import TRIGGER_CLASSPATH, LaunchContainerOperator
from airlaunch.providers.airflow.triggers.launch_spec import CannotStartHere, resolve_launch_spec


def _serialized(dag: DAG, task_id: str) -> Any:
    """The task as the scheduler and the triggerer see it: through the serialized DAG."""
    return DagSerialization.from_dict(DagSerialization.to_dict(dag)).get_task(task_id)


def _resolve(launch: dict[str, Any], serialized_task: Any, map_index: int = -1) -> Any:
    ti = SimpleNamespace(task=serialized_task, map_index=map_index, dag_id="d", run_id="r")
    return asyncio.run(resolve_launch_spec(launch, ti))


def test_a_plain_task_defers_with_its_whole_launch() -> None:
    with DAG("d", start_date=datetime(2026, 1, 1), schedule=None) as dag:
        LaunchContainerOperator(
            task_id="t",
            task="task_two",
            parameters={"x": "{{ run_id }}"},
            start_from_trigger=True,
            execution_timeout=timedelta(minutes=5),
        )
    serialized = _serialized(dag, "t")
    assert serialized.start_from_trigger is True
    args = serialized.start_trigger_args
    assert args.trigger_cls == TRIGGER_CLASSPATH and args.next_method == "execute_complete"
    kwargs = BaseSerialization.deserialize(args.trigger_kwargs)  # as the triggerer gets them
    assert kwargs["function_name"] and kwargs["aws_conn_id"]
    spec = _resolve(kwargs["launch"], serialized)
    assert (spec.task, spec.parameters, spec.execution_timeout) == ("task_two", {"x": "{{ run_id }}"}, 300.0)


def test_a_mapped_task_resolves_its_own_element_in_the_triggerer() -> None:
    with DAG("d", start_date=datetime(2026, 1, 1), schedule=None) as dag:
        LaunchContainerOperator.partial(
            task_id="m", task="task_two", include_dag_params=False, start_from_trigger=True, poll_interval=2
        ).expand(parameters=[{"i": 0}, {"i": 1}, {"i": 2}])
    serialized = _serialized(dag, "m")
    assert serialized.start_from_trigger is True
    spec = _resolve({"mapped": True}, serialized, map_index=2)
    assert spec.parameters == {"i": 2} and spec.include_dag_params is False
    assert spec.settings == {"poll_interval": 2}


def test_expand_forms_the_triggerer_cannot_resolve_go_to_a_worker() -> None:
    with DAG("d", start_date=datetime(2026, 1, 1), schedule=None) as dag:

        @task
        def items() -> list[dict]:
            return [{"i": 0}]

        LaunchContainerOperator.partial(task_id="m", task="task_two", start_from_trigger=True).expand(
            parameters=items().map(lambda item: item)
        )
        LaunchContainerOperator.partial(task_id="two", task="task_two", start_from_trigger=True).expand(
            parameters=[{"i": 0}], overrides=[{"timeout_seconds": 5}]
        )
        LaunchContainerOperator.partial(task_id="pull", task="task_two", start_from_trigger=True).expand(
            parameters=[{"i": "{{ ti.xcom_pull(task_ids='items') }}"}]
        )
    for task_id in ("m", "two", "pull"):
        with pytest.raises(CannotStartHere):
            _resolve({"mapped": True}, _serialized(dag, task_id), map_index=0)


def test_mapped_tasks_launch_from_workers_unless_asked() -> None:
    with DAG("d", start_date=datetime(2026, 1, 1), schedule=None) as dag:
        LaunchContainerOperator.partial(task_id="m", task="task_two").expand(parameters=[{"i": 0}])
    assert _serialized(dag, "m").start_from_trigger is False


def test_upstream_results_cannot_start_from_the_triggerer() -> None:
    with DAG("d", start_date=datetime(2026, 1, 1), schedule=None):

        @task
        def value() -> int:
            return 1

        for number, parameters in enumerate(({"v": value()}, {"v": ["{{ ti.xcom_pull(task_ids='value') }}"]})):
            with pytest.raises(ValueError, match="start_from_trigger=True cannot take upstream results"):
                LaunchContainerOperator(
                    task_id=f"t{number}", task="task_three", parameters=parameters, start_from_trigger=True
                )


def test_cache_false_reaches_the_launch_request_from_a_worker_and_from_the_triggerer() -> None:
    """The call's cache=False is the request's ``cache``; without it the field stays absent (the entry decides)."""
    with DAG("d", start_date=datetime(2026, 1, 1), schedule=None) as dag:
        off = LaunchContainerOperator(task_id="off", task="task_three", cache=False)
        LaunchContainerOperator(task_id="off_t", task="task_three", cache=False, start_from_trigger=True)
        LaunchContainerOperator(task_id="default_t", task="task_three", start_from_trigger=True)
        LaunchContainerOperator.partial(task_id="m", task="task_three", cache=False, start_from_trigger=True).expand(
            parameters=[{"i": 0}]
        )
    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="off", map_index=-1, try_number=1, id=None)
    request = off.build_request({"params": {}, "ti": ti})  # type: ignore[arg-type]
    assert request.cache is False and request.to_dict()["cache"] is False
    for task_id, expected in (("off_t", False), ("default_t", None)):
        serialized = _serialized(dag, task_id)
        kwargs = BaseSerialization.deserialize(serialized.start_trigger_args.trigger_kwargs)
        assert _resolve(kwargs["launch"], serialized).cache is expected
    assert _resolve({"mapped": True}, _serialized(dag, "m"), map_index=0).cache is False
    assert (
        "cache"
        not in LaunchContainerOperator(task_id="x", task="t")
        .build_request(
            {"params": {}, "ti": ti}  # type: ignore[arg-type]
        )
        .to_dict()
    )
