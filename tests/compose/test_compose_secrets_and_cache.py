"""Secrets and the result cache on the compose stack, as a user works with them: catalog entries added to the
catalog the launcher serves (AIRLAUNCH_CATALOG_DIR, read live), a value set with `airlaunch secret set` against
the stack's LocalStack (`eval "$(make -s compose-env)"`), DAG runs through Airflow's REST API on the Celery
worker, and the cache looked at and cleared with `airlaunch cache`.

The rules themselves are proven on the embedded stack (tests/stack/test_secrets.py, test_result_cache.py) and
in the ECS mode; here they are shown to hold in the compose deployment's own wiring: the launcher reading
secrets from the `localstack` service, the task containers on the stack's network, the cache entries written by
the launcher's Docker watcher in its container.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airlaunch.protocol import MASK
from tests.airflow.conftest import run_dag, status_at
from tests.cache_stack import cache_entries, wait_until_cached
from tests.compose.conftest import ComposeStack
from tests.secrets_stack import (
    COMMAND,
    IMAGE,
    LocalSecrets,
    catalog_entries,
    container_log,
    fingerprint,
    objects_holding,
    secret_entry,
)

pytestmark = [pytest.mark.stack, pytest.mark.compose, pytest.mark.timeout(1500)]

DAG = "airlaunch_diagnostic"
CACHED = "diagnostic_cached"
# Whose logs must not hold a secret's value: the launcher and every Airflow process.
LOGGED = ("launcher", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
          "airflow-worker")  # fmt: skip


@pytest.fixture(scope="module")
def cli_env(compose_stack: ComposeStack) -> dict[str, str]:
    return compose_stack.cli_env()


def _airlaunch(cli_env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The airlaunch CLI as a user runs it after `eval "$(make -s compose-env)"`."""
    env = {**os.environ, **cli_env}
    result = subprocess.run([sys.executable, "-m", "airlaunch.cli", *args], input=stdin, env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, f"airlaunch {' '.join(args)}: {result.stdout}{result.stderr}"
    return result


@pytest.fixture(scope="module")
def secret(compose_stack: ComposeStack, cli_env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """A Secrets Manager secret set with `airlaunch secret set --json-key` against the compose LocalStack, and the
    catalog entries of this module: one that names it, one that is cacheable."""
    store = LocalSecrets(cli_env["AWS_ENDPOINT_URL"], cli_env["AWS_DEFAULT_REGION"])
    name, value = store.name("compose"), store.value()
    stored = _airlaunch(cli_env, "secret", "set", name, "--json-key", "password", stdin=value + "\n")
    assert "created Secrets Manager secret" in stored.stdout and value not in stored.stdout + stored.stderr
    entries = {
        "diagnostic_secret": secret_entry(DIAG_PASSWORD={"secretsmanager": name, "json_key": "password"}),
        CACHED: {"image": IMAGE, "command": COMMAND, "description": "the diagnostic task, cached", "cache": True},
    }
    with catalog_entries(compose_stack.catalog, entries):
        checked = _airlaunch(cli_env, "secret", "check", "diagnostic_secret", "--catalog", str(compose_stack.catalog))
        expected = f"diagnostic_secret  DIAG_PASSWORD  Secrets Manager secret {name!r}, JSON key 'password'  ok"
        assert checked.stdout.splitlines() == [expected], checked.stdout
        yield name, value


def test_a_secret_set_with_the_cli_reaches_its_task_and_is_masked_everywhere_else(
    compose_stack: ComposeStack, cli_env: dict[str, str], secret: tuple[str, str]
) -> None:
    _, value = secret
    api, s3, bucket = compose_stack.api(), compose_stack.s3(), cli_env["AIRLAUNCH_BUCKET"]
    since = str(int(time.time()) - 1)

    run_id, run = run_dag(api, DAG, {"task": "diagnostic_secret", "action": "secret"}, timeout=600)

    assert run["state"] == "success", api.task_instances(DAG, run_id)
    result = api.xcom(DAG, run_id, "diagnostic")
    assert result["secrets"]["DIAG_PASSWORD"] == {"present": True, "fingerprint": fingerprint(value)}, result
    where = api.xcom(DAG, run_id, "diagnostic", "airlaunch")
    assert value not in json.dumps(result) + json.dumps(where), "not in XCom"
    uploaded = s3.get_object(Bucket=bucket, Key=where["prefix"] + "log.txt")["Body"].read().decode()
    assert f"secret DIAG_PASSWORD = {MASK}" in uploaded, uploaded[-2000:]
    task_log = api.log(DAG, run_id, "diagnostic")
    assert f"secret DIAG_PASSWORD = {MASK}" in task_log and value not in task_log, task_log[-2000:]
    run_prefix = f"runs/{DAG}/{run_id}/"
    assert objects_holding(s3, bucket, [run_prefix, f"runs-sessions/{DAG}/{run_id}/"], value) == []
    assert s3.list_objects_v2(Bucket=bucket, Prefix=run_prefix)["KeyCount"] >= 4, "it did search something"
    for service in LOGGED:
        [container] = compose_stack.containers(service)
        assert value not in container_log(container, since), f"not in the {service} container's log"
    [worker] = compose_stack.containers("airflow-worker")  # Airflow's task log files, in the airflow-logs volume
    run_logs = f"/opt/airflow/logs/dag_id={DAG}/run_id={run_id}"
    files = subprocess.run(["docker", "exec", worker, "find", run_logs, "-type", "f"], capture_output=True,
                           text=True, check=True).stdout.split()  # fmt: skip
    holding = subprocess.run(["docker", "exec", "-i", worker, "grep", "-rlF", "-f", "-", run_logs], input=value,
                             capture_output=True, text=True)  # fmt: skip
    assert files and holding.returncode == 1 and holding.stdout == "", (files, holding)


def _created_containers() -> subprocess.Popen[str]:
    """A stream of the run ids of task containers as Docker creates them (the engine keeps only its last 256
    events, so it is read live, not with `docker events --since` afterwards)."""
    return subprocess.Popen(
        ["docker", "events", "--filter", "event=create", "--filter", "label=airlaunch.run_id",
         "--format", '{{index .Actor.Attributes "airlaunch.run_id"}}'],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def _ran(api: Any, run_id: str) -> dict[str, Any]:
    where: dict[str, Any] = api.xcom(DAG, run_id, "diagnostic", "airlaunch")
    assert where["task_ref"] and "cached_from" not in where, where
    return where


@pytest.mark.usefixtures("secret")
def test_an_identical_launch_is_served_from_the_cache_and_a_changed_param_runs(
    compose_stack: ComposeStack, cli_env: dict[str, str]
) -> None:
    api, s3, bucket = compose_stack.api(), compose_stack.s3(), cli_env["AIRLAUNCH_BUCKET"]
    conf = {"task": CACHED, "action": "echo", "message": f"cache-{time.time_ns()}"}
    creates = _created_containers()
    try:
        first_run, first = run_dag(api, DAG, conf, timeout=600)
        assert first["state"] == "success"
        ran = _ran(api, first_run)
        wait_until_cached(s3, bucket, [CACHED], {ran["prefix"]})

        second_run, second = run_dag(api, DAG, conf, timeout=600)

        assert second["state"] == "success"
        served = api.xcom(DAG, second_run, "diagnostic", "airlaunch")
        assert served["task_ref"] == "" and served["cached_from"] == ran["prefix"], served
        status = status_at(s3, served)
        assert status["state"] == "succeeded" and status["cached_from"] == ran["prefix"], status
        assert status["written_by"] == "cache" and "usage" not in status, status
        assert api.xcom(DAG, second_run, "diagnostic") == api.xcom(DAG, first_run, "diagnostic")
        assert "served from the result cache" in api.log(DAG, second_run, "diagnostic")

        changed_run, changed = run_dag(api, DAG, {**conf, "message": "changed"}, timeout=600)
        assert changed["state"] == "success"
        _ran(api, changed_run)
        assert api.xcom(DAG, changed_run, "diagnostic")["echo"] == "changed"

        listed = json.loads(_airlaunch(cli_env, "cache", "ls", "--task", CACHED, "--json").stdout)
        assert ran["prefix"] in {entry["prefix"] for entry in listed["entries"]}, listed
        _airlaunch(cli_env, "cache", "clear", "--task", CACHED)
        assert cache_entries(s3, bucket, CACHED) == []
        cleared_run, cleared = run_dag(api, DAG, conf, timeout=600)
        assert cleared["state"] == "success"
        _ran(api, cleared_run)  # the same conf again, its entry cleared: a container again
    finally:
        creates.terminate()
    created = creates.communicate()[0].splitlines()
    counts = {run: created.count(run) for run in (first_run, second_run, changed_run, cleared_run)}
    assert counts == {first_run: 1, second_run: 0, changed_run: 1, cleared_run: 1}, created
