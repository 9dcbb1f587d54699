"""Secrets in the ECS mode, through the launcher Lambda: the task definition names them (valueFrom in ECS's forms,
the full ARN the deploy code looked up), the launcher only checks them, the Fargate stand-in fetches them from
LocalStack as ECS's agent does, at each start; no value is in RunTask's request, the task definition's plain
environment, any S3 object of the run or the launcher's log; a missing secret fails the launch before any task."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from airlaunch.protocol import MASK, Handle
from airlaunch.stack import Stack
from airlaunch.stack.ecs_account import ACCOUNT_ID, STACK_NAME
from tests.conftest import TEST_CATALOG, LauncherClient, redeploy_ecs_account
from tests.secrets_stack import LocalSecrets, catalog_entries, fingerprint, launcher_log, objects_holding, secret_entry

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def ecs_secrets(ecs_mode: Stack) -> Iterator[dict[str, Any]]:
    """The secrets set in LocalStack, entries naming them in the catalog, and the stack in the ECS mode with a
    new account deployed from that catalog; back to Docker and the catalog as it was afterwards."""
    stack = ecs_mode
    store = LocalSecrets.for_stack(stack)
    names = {"db": store.name("db"), "token": "/" + store.name("token"), "gone": "/" + store.name("gone")}
    values = {"password": store.value(), "token": store.value()}
    arn = store.set_json_key(names["db"], "password", values["password"])
    store.set_parameter(names["token"], values["token"])
    entries = {
        "diagnostic_secret": secret_entry(
            DIAG_PASSWORD={"secretsmanager": names["db"], "json_key": "password"}, DIAG_TOKEN={"ssm": names["token"]}
        ),
        "diagnostic_gone": secret_entry(GONE={"ssm": names["gone"]}),
    }
    with catalog_entries(TEST_CATALOG, entries):
        redeploy_ecs_account(stack)  # the running account was deployed without these entries
        ecs = boto3.client("ecs", endpoint_url=stack.cfg.ecs_url, region_name=stack.cfg.region)
        yield {"store": store, "names": names, "values": values, "arn": arn, "ecs": ecs}


def _launch(launcher: LauncherClient, identity: dict[str, Any], task: str) -> dict[str, Any]:
    return launcher.invoke({"action": "launch", "request": {"task": task, "identity": identity,
                                                            "params": {"action": "secret"}}})  # fmt: skip


def _run(launcher: LauncherClient, identity: dict[str, Any]) -> tuple[Handle, dict[str, Any]]:
    reply = _launch(launcher, identity, "diagnostic_secret")
    assert reply["ok"], reply
    handle = Handle.from_dict(reply["handle"])
    assert handle.backend == "ecs", handle
    status = launcher.wait_status(handle, timeout=180)
    assert status.state.value == "succeeded", status
    return handle, json.loads(launcher.read(handle.layout, "result.json"))


def test_the_agent_injects_them_and_nothing_else_holds_a_value(
    stack: Stack, launcher: LauncherClient, identity: dict[str, Any], ecs_secrets: dict[str, Any], s3: Any
) -> None:
    since = str(int(time.time()) - 1)
    handle, result = _run(launcher, identity)
    values, names = ecs_secrets["values"], ecs_secrets["names"]
    assert result["secrets"] == {
        "DIAG_PASSWORD": {"present": True, "fingerprint": fingerprint(values["password"])},
        "DIAG_TOKEN": {"present": True, "fingerprint": fingerprint(values["token"])},
    }
    assert f"secret DIAG_TOKEN = {MASK}" in launcher.read(handle.layout, "log.txt").decode()
    task = ecs_secrets["ecs"].describe_tasks(cluster=STACK_NAME, tasks=[handle.task_ref])["tasks"][0]
    [override] = task["overrides"]["containerOverrides"]
    environment = {e["name"]: e["value"] for e in override["environment"]}
    assert environment["AIRLAUNCH_SECRET_NAMES"] == "DIAG_PASSWORD,DIAG_TOKEN"
    assert not {"DIAG_PASSWORD", "DIAG_TOKEN"} & set(environment), "RunTask names them, never carries them"
    definition = ecs_secrets["ecs"].describe_task_definition(taskDefinition=task["taskDefinitionArn"])
    [container] = definition["taskDefinition"]["containerDefinitions"]
    assert container["secrets"] == [
        {"name": "DIAG_PASSWORD", "valueFrom": f"{ecs_secrets['arn']}:password::"},
        {"name": "DIAG_TOKEN", "valueFrom": f"arn:aws:ssm:{stack.cfg.region}:{ACCOUNT_ID}:parameter{names['token']}"},
    ]
    everything = json.dumps([task, definition], default=str)
    assert not [v for v in values.values() if v in everything], "not in ECS's task nor its definition"
    run = f"runs/{identity['dag_id']}/{identity['run_id']}/"
    sessions = f"runs-sessions/{identity['dag_id']}/{identity['run_id']}/"
    assert objects_holding(s3, launcher.bucket, [run, sessions], *values.values()) == []
    assert not [v for v in values.values() if v in launcher_log(stack, since)], "nor the launcher's log"


def test_a_rotated_value_is_fetched_at_the_next_start_and_a_missing_one_fails_the_launch(
    launcher: LauncherClient, identity: dict[str, Any], ecs_secrets: dict[str, Any], s3: Any
) -> None:
    store, names = ecs_secrets["store"], ecs_secrets["names"]
    rotated = store.value()
    store.set_json_key(names["db"], "password", rotated)
    _, result = _run(launcher, identity)
    assert result["secrets"]["DIAG_PASSWORD"]["fingerprint"] == fingerprint(rotated), "no redeploy needed"
    for task, gone, why in (
        ("diagnostic_gone", f"GONE (SSM parameter '{names['gone']}')", "does not exist"),
        ("diagnostic_secret", f"DIAG_PASSWORD (Secrets Manager secret '{names['db']}', JSON key 'password')",
         "does not exist"),
    ):  # fmt: skip
        if task == "diagnostic_secret":
            store.secretsmanager.delete_secret(SecretId=names["db"], ForceDeleteWithoutRecovery=True)
        missing = {**identity, "task_id": f"missing_{task}"}
        refused = _launch(launcher, missing, task)
        assert not refused["ok"], refused
        assert refused["error"]["message"] == f"catalog task {task!r} cannot start: secret {gone} {why}"
        prefix = f"runs/{identity['dag_id']}/{identity['run_id']}/missing_{task}/"
        assert s3.list_objects_v2(Bucket=launcher.bucket, Prefix=prefix).get("KeyCount", 0) == 0, "no params.yaml"
        started = ecs_secrets["ecs"].list_tasks(cluster=STACK_NAME, family=f"{STACK_NAME}-{task}")["taskArns"]
        assert task != "diagnostic_gone" or started == [], "no ECS task"
