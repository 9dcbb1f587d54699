"""Secrets on the Docker backend, through the launcher Lambda: a catalog entry's secrets reach its container and
nothing else (no S3 object of its run, no reply, no launcher log line); a rotated value is used from the next
launch on; a task whose entry names no secret gets none; a launch cannot add or set one; a missing secret fails
the launch before anything is written or started. Values in the stack's LocalStack."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airlaunch.protocol import MASK, Handle, Status
from airlaunch.stack import Stack
from tests.conftest import TEST_CATALOG, LauncherClient
from tests.secrets_stack import LocalSecrets, catalog_entries, fingerprint, launcher_log, objects_holding, secret_entry

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def local(stack: Stack) -> Iterator[dict[str, Any]]:
    """Two secrets in LocalStack (a JSON key of a Secrets Manager secret, an SSM SecureString) and the entries
    that name them (and one whose parameter does not exist) in the stack's catalog."""
    store = LocalSecrets.for_stack(stack)
    names = {"db": store.name("db"), "token": store.name("token"), "gone": "/" + store.name("gone")}
    values = {"password": store.value(), "token": store.value()}
    store.set_json_key(names["db"], "password", values["password"])
    store.set_parameter("/" + names["token"], values["token"])
    entries = {
        "diagnostic_secret": secret_entry(
            DIAG_PASSWORD={"secretsmanager": names["db"], "json_key": "password"},
            DIAG_TOKEN={"ssm": "/" + names["token"]},
        ),
        "diagnostic_gone": secret_entry(GONE={"ssm": names["gone"]}),
    }
    with catalog_entries(TEST_CATALOG, entries):
        yield {"store": store, "names": names, "values": values}


def _launch(launcher: LauncherClient, identity: dict[str, Any], task: str, **params: Any) -> dict[str, Any]:
    request = {"task": task, "identity": identity, "params": params}
    return launcher.invoke({"action": "launch", "request": request})


def _result(launcher: LauncherClient, reply: dict[str, Any]) -> tuple[Status, dict[str, Any]]:
    assert reply["ok"], reply
    handle = Handle.from_dict(reply["handle"])
    status = launcher.wait_status(handle)
    return status, json.loads(launcher.read(handle.layout, "result.json"))


def test_a_secret_reaches_its_task_and_nothing_the_run_keeps(
    stack: Stack, launcher: LauncherClient, identity: dict[str, Any], local: dict[str, Any], s3: Any
) -> None:
    since = str(int(time.time()) - 1)
    reply = _launch(launcher, identity, "diagnostic_secret", action="secret")
    status, result = _result(launcher, reply)
    values = local["values"]
    assert status.state.value == "succeeded", status
    assert result["secrets"] == {
        "DIAG_PASSWORD": {"present": True, "fingerprint": fingerprint(values["password"])},
        "DIAG_TOKEN": {"present": True, "fingerprint": fingerprint(values["token"])},
    }
    log = launcher.read(Handle.from_dict(reply["handle"]).layout, "log.txt").decode()
    assert f"secret DIAG_PASSWORD = {MASK}" in log and f"secret DIAG_TOKEN = {MASK}" in log
    assert f"secret DIAG_PASSWORD = {MASK}" in status.log_tail
    run = f"runs/{identity['dag_id']}/{identity['run_id']}/"
    sessions = f"runs-sessions/{identity['dag_id']}/{identity['run_id']}/"
    assert objects_holding(s3, launcher.bucket, [run, sessions], *values.values()) == []
    assert len(s3.list_objects_v2(Bucket=launcher.bucket, Prefix=run)["Contents"]) >= 4, "it did search something"
    assert not [v for v in values.values() if v in json.dumps(reply)], "nor the launch's reply"
    assert not [v for v in values.values() if v in launcher_log(stack, since)], "nor the launcher's log"


def test_a_rotated_value_is_used_from_the_next_launch_on(
    launcher: LauncherClient, identity: dict[str, Any], local: dict[str, Any]
) -> None:
    _, first = _result(launcher, _launch(launcher, identity, "diagnostic_secret", action="secret"))
    rotated = local["store"].value()
    local["store"].set_json_key(local["names"]["db"], "password", rotated)
    again = {**identity, "try_number": 2, "ti_id": "01a23311-7a60-7689-879d-622cac4095b3"}
    _, second = _result(launcher, _launch(launcher, again, "diagnostic_secret", action="secret"))
    assert first["secrets"]["DIAG_PASSWORD"]["fingerprint"] == fingerprint(local["values"]["password"])
    assert second["secrets"]["DIAG_PASSWORD"]["fingerprint"] == fingerprint(rotated)
    local["values"]["password"] = rotated


def test_a_task_whose_entry_names_no_secret_gets_none_and_a_launch_cannot_add_one(
    launcher: LauncherClient, identity: dict[str, Any], local: dict[str, Any]
) -> None:
    _, result = _result(launcher, _launch(launcher, identity, "diagnostic", action="secret", name="DIAG_PASSWORD"))
    assert result == {"secrets": {"DIAG_PASSWORD": {"present": False, "fingerprint": fingerprint("")}},
                      "secret_names": []}  # fmt: skip
    for overrides, field in (
        ({"env": {"DIAG_PASSWORD": "mine"}}, "overrides.env.DIAG_PASSWORD"),
        ({"secrets": {"DIAG_PASSWORD": {"ssm": local["names"]["token"]}}}, "overrides"),
        ({"env": {"AIRLAUNCH_SECRET_NAMES": ""}}, "overrides.env.AIRLAUNCH_SECRET_NAMES"),
    ):
        request = {"task": "diagnostic_secret", "identity": identity, "overrides": overrides}
        refused = launcher.invoke({"action": "launch", "request": request})
        assert not refused["ok"] and refused["error"]["field"] == field, refused


def test_a_missing_secret_fails_the_launch_before_anything_starts(
    launcher: LauncherClient, identity: dict[str, Any], local: dict[str, Any], s3: Any
) -> None:
    refused = _launch(launcher, identity, "diagnostic_gone", action="secret")
    assert not refused["ok"] and not refused["error"]["retryable"], refused
    assert refused["error"]["message"] == (
        f"catalog task 'diagnostic_gone' cannot start: secret GONE (SSM parameter '{local['names']['gone']}') "
        "does not exist"
    )
    run = f"runs/{identity['dag_id']}/{identity['run_id']}/"
    assert s3.list_objects_v2(Bucket=launcher.bucket, Prefix=run).get("KeyCount", 0) == 0, "no params.yaml"
    started = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=airlaunch.run_id={identity['run_id']}"],
                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert started == [], "no container"
