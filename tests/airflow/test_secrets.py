"""A secret through Airflow, once, on the Docker stack: the diagnostic DAG runs a catalog entry that has a secret and
prints it; the Airflow task log (which streams the log the runtime uploaded) shows the mask, and the value is in
no XCom, no S3 object of the run, no log file of Airflow's or the launcher's."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airlaunch.airflow_rest import AirflowRest
from airlaunch.protocol import MASK
from airlaunch.stack import Stack
from tests.airflow.conftest import run_dag
from tests.conftest import TEST_CATALOG
from tests.secrets_stack import LocalSecrets, catalog_entries, fingerprint, launcher_log, objects_holding, secret_entry

DAG = "airlaunch_diagnostic"


@pytest.fixture(scope="module")
def entry(stack: Stack) -> Iterator[tuple[str, str]]:
    store = LocalSecrets.for_stack(stack)
    name, value = store.name("airflow"), store.value()
    store.set_json_key(name, "password", value)
    entries = {"diagnostic_secret": secret_entry(DIAG_PASSWORD={"secretsmanager": name, "json_key": "password"})}
    with catalog_entries(TEST_CATALOG, entries):
        yield name, value


def test_the_task_log_shows_the_mask_and_nothing_airflow_keeps_holds_the_value(
    stack: Stack, airflow_api: AirflowRest, entry: tuple[str, str], s3: Any
) -> None:
    _, value = entry
    since = str(int(time.time()) - 1)
    logs_before = {p: p.stat().st_size for p in stack.cfg.state_dir.glob("airflow-*.log")}
    run_id, run = run_dag(airflow_api, DAG, {"task": "diagnostic_secret", "action": "secret"})
    assert run["state"] == "success", airflow_api.task_instances(DAG, run_id)
    log = airflow_api.log(DAG, run_id, "diagnostic")
    assert f"secret DIAG_PASSWORD = {MASK}" in log, log[-2000:]
    result = airflow_api.xcom(DAG, run_id, "diagnostic")
    assert result["secrets"]["DIAG_PASSWORD"] == {"present": True, "fingerprint": fingerprint(value)}
    where = airflow_api.xcom(DAG, run_id, "diagnostic", "airlaunch")
    assert value not in json.dumps(result) + json.dumps(where), "not in XCom"
    assert value not in log, "not in the Airflow task log"
    task_logs = list((stack.cfg.airflow_home / "logs" / f"dag_id={DAG}").glob(f"run_id={run_id}/**/*"))
    assert task_logs and not [p for p in task_logs if p.is_file() and value.encode() in p.read_bytes()]
    for path, size in logs_before.items():  # Airflow's processes' own logs since the run began
        with path.open("rb") as handle:
            handle.seek(size)
            assert value.encode() not in handle.read(), path
    run_prefix = f"runs/{DAG}/{run_id}/"
    assert objects_holding(s3, where["bucket"], [run_prefix, f"runs-sessions/{DAG}/{run_id}/"], value) == []
    assert s3.list_objects_v2(Bucket=where["bucket"], Prefix=run_prefix)["KeyCount"] >= 5, "timings.json among them"
    assert value not in launcher_log(stack, since), "nor the launcher's log"
