"""The reference pipeline run again with the result cache on: no container for the tasks whose inputs did not
change, through real Airflow processes (the REST API), the launcher Lambda and Docker.

For this module the reference tasks are made cacheable in the stack's copy of the catalog, all but task two
(it sleeps a random time: a cached value would freeze it), and their old entries are cleared so the first run
computes. Both runs ask task two for exactly one second: it runs again and returns the same value, so task
three's params are unchanged and it is served from the cache; the report notebook's params hold the run id,
so it runs again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from airlaunch.airflow_rest import AirflowRest
from airlaunch.stack import Stack
from tests.airflow.conftest import run_dag, status_at
from tests.cache_stack import cache_entries, wait_until_cached
from tests.conftest import TEST_CATALOG

DAG = "airlaunch_reference"
CACHED = {"diagnostic", "task_one", "task_three", "report_notebook"}  # catalog tasks made cacheable here
SERVED = ["test_docker", "do_task_one", "do_task_three"]  # Airflow tasks whose inputs do not change
RUN_AGAIN = ["do_task_two", "report"]  # not cacheable (two), or its params hold the run id (report)
CONF = {"min_seconds": 1, "max_seconds": 1}


def _set_cache(on: bool) -> None:
    catalog = yaml.safe_load(TEST_CATALOG.read_text())
    for name in CACHED:
        if on:
            catalog["tasks"][name]["cache"] = True
        else:
            catalog["tasks"][name].pop("cache", None)
    tmp = TEST_CATALOG.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(catalog, sort_keys=False))
    tmp.replace(TEST_CATALOG)


@pytest.fixture(scope="module")
def cache_on(stack: Stack, s3: Any) -> Iterator[None]:
    for name in CACHED:  # entries of earlier sessions would serve even the first run
        for key, _ in cache_entries(s3, stack.cfg.bucket, name):
            s3.delete_object(Bucket=stack.cfg.bucket, Key=key)
    _set_cache(True)
    yield
    _set_cache(False)


@pytest.mark.usefixtures("cache_on")
def test_a_rerun_starts_no_container_for_unchanged_tasks(airflow_api: AirflowRest, s3: Any, stack: Stack) -> None:
    first_run, first = run_dag(airflow_api, DAG, CONF)
    assert first["state"] == "success"
    ran = {task: airflow_api.xcom(DAG, first_run, task, "airlaunch") for task in SERVED + RUN_AGAIN}
    assert all(where["task_ref"] and "cached_from" not in where for where in ran.values()), ran
    wait_until_cached(s3, stack.cfg.bucket, CACHED, {ran[task]["prefix"] for task in SERVED})

    second_run, second = run_dag(airflow_api, DAG, CONF)

    assert second["state"] == "success"
    for task in SERVED:  # no container: the launcher started nothing, the try's files are copies
        where = airflow_api.xcom(DAG, second_run, task, "airlaunch")
        assert where["task_ref"] == "" and where["cached_from"] == ran[task]["prefix"], (task, where)
        status = status_at(s3, where)
        assert status["state"] == "succeeded" and status["written_by"] == "cache" and "usage" not in status
        assert airflow_api.xcom(DAG, second_run, task) == airflow_api.xcom(DAG, first_run, task)
        assert "served from the result cache" in airflow_api.log(DAG, second_run, task)
    for task in RUN_AGAIN:
        where = airflow_api.xcom(DAG, second_run, task, "airlaunch")
        assert where["task_ref"] and "cached_from" not in where, (task, where)
        assert status_at(s3, where)["host"] == where["task_ref"][:12]  # it ran in a container of its own
    assert airflow_api.xcom(DAG, second_run, "do_task_two")["sleep_seconds"] == 1.0  # the same value again
