"""Airflow for the tests: dag.test() in this process (its own SQLite home), and the real
api-server, scheduler, dag-processor and triggerer for end-to-end tests through the REST API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airlaunch.airflow_rest import AirflowRest
from airlaunch.stack import AIRFLOW, Stack, StackConfig
from tests.conftest import E2E_PARALLELISM

__all__ = ["E2E_PARALLELISM", "run_dag", "status_at"]

_CFG = StackConfig()
DAG_TEST_HOME = _CFG.state_dir / "airflow-dagtest"


def _reconfigure_airflow() -> None:
    """Point this process's Airflow at the database its configuration names now. Airflow reads its home and
    database when first imported (at collection, by whichever test module imports it first); the rest of its
    configuration (AIRFLOW__*, AIRFLOW_CONN_*) it reads at each use."""
    from airflow import settings

    settings.configure_vars()
    settings.reconfigure_orm()


@pytest.fixture(scope="package", autouse=True)
def airflow_here() -> Iterator[None]:
    """This process's Airflow configured as the stack's (its connection, DAGs folder, the stack's endpoints),
    with a home of its own for dag.test(), for the tests of this folder only: the environment is given back,
    and Airflow pointed at its database again, when they are done."""
    env = {
        **_CFG.client_env(),
        **_CFG.airflow_env(),
        "AIRFLOW_HOME": str(DAG_TEST_HOME),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{DAG_TEST_HOME / 'airflow.db'}",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        _reconfigure_airflow()
        yield
    _reconfigure_airflow()


@pytest.fixture(scope="package")
def airflow_db(airflow_here: None) -> None:
    """A migrated metadata database for dag.test() (in the home ``airflow_here`` gives this process)."""
    DAG_TEST_HOME.mkdir(parents=True, exist_ok=True)
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True, env=os.environ)


@pytest.fixture(scope="session")
def airflow_api(stack: Stack) -> Iterator[AirflowRest]:
    """The real Airflow processes under the stack's supervisor, started unless already up."""
    started = stack.up(only=AIRFLOW)
    yield AirflowRest.for_home(stack.cfg.airflow_url, stack.cfg.airflow_home)
    if started:
        stack.down(only=started)


def run_dag(
    api: AirflowRest, dag_id: str, conf: dict[str, Any] | None = None, timeout: float = 300
) -> tuple[str, dict]:
    """Trigger the DAG (parsed, unpaused) and wait until its run ends; (run id, run)."""
    api.wait_for_dag(dag_id)
    api.unpause(dag_id)
    run_id = api.trigger(dag_id, conf)
    return run_id, api.wait_for_run(dag_id, run_id, timeout)


def status_at(s3: Any, where: dict[str, Any]) -> dict[str, Any]:
    """The status.json of the try an ``airlaunch`` XCom (bucket, prefix) names."""
    return dict(json.loads(s3.get_object(Bucket=where["bucket"], Key=where["prefix"] + "status.json")["Body"].read()))
