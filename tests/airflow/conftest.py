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

# The e2e servers run with parallelism 2, so the slot test can show that waiting holds no slot.
# Set before anything starts the stack's supervisor, which starts Airflow with its environment.
E2E_PARALLELISM = 2
os.environ["AIRLAUNCH_AIRFLOW_PARALLELISM"] = str(E2E_PARALLELISM)
# Airflow reads its configuration when first imported, so this process's Airflow (for
# dag.test()) is configured before any test module imports it. The servers get their own home.
_CFG = StackConfig()
DAG_TEST_HOME = _CFG.state_dir / "airflow-dagtest"
os.environ.update({**_CFG.client_env(), **_CFG.airflow_env(), "AIRFLOW_HOME": str(DAG_TEST_HOME)})


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated metadata database for dag.test()."""
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
