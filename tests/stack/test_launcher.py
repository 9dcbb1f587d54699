"""The launcher core, end to end: boto3 -> Lambda (RIE) -> Docker -> task runtime -> LocalStack S3.

The launcher's own rules (one container per try, stops, describe, the requests it refuses) are proven on
an in-memory platform in tests/unit/test_launcher_logic.py; the tests here prove what only Docker and a
real runtime show: container names and labels, exit codes, the runtime's SIGTERM handling, the watcher."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
import yaml

from airlaunch.protocol import Handle
from airlaunch.stack import task_containers
from tests.conftest import LauncherClient

pytestmark = pytest.mark.stack


def test_task_one_says_its_name(launcher: LauncherClient, identity: dict[str, Any]) -> None:
    identity["task_id"] = "do_task_one"
    handle = launcher.launch("task_one", identity)
    assert handle.launched and handle.backend == "docker"
    status = launcher.wait_status(handle)

    assert status.state == "succeeded" and status.exit_code == 0
    assert status.reason == "exit" and status.error is None
    assert status.host == handle.task_ref[:12]  # the hostname Docker gives the container
    assert json.loads(launcher.read(handle.layout, "result.json")) == {
        "message": "my name is do_task_one",
        "map_index": -1,
    }
    assert "my name is do_task_one" in launcher.read(handle.layout, "log.txt").decode()
    params = yaml.safe_load(launcher.read(handle.layout, "params.yaml"))
    assert params["run"]["task_id"] == "do_task_one" and params["run"]["task"] == "task_one"
    assert status.result_keys == {
        "params": handle.layout.params_key,
        "result": handle.layout.result_key,
        "log": handle.layout.log_key,
    }
    assert handle.prefix == f"runs/launcher_tests/{identity['run_id']}/do_task_one/-1/1/"


def test_task_three_computes_with_task_two_value(launcher: LauncherClient, identity: dict[str, Any]) -> None:
    two = launcher.launch("task_two", {**identity, "task_id": "do_task_two"}, {"min_seconds": 0.2, "max_seconds": 1.5})
    two_status = launcher.wait_status(two)
    assert two_status.state == "succeeded"
    slept = json.loads(launcher.read(two.layout, "result.json"))["sleep_seconds"]
    assert 0.2 <= slept <= 1.5
    assert f"slept {slept} s" in launcher.read(two.layout, "log.txt").decode()

    three = launcher.launch("task_three", {**identity, "task_id": "read_xcoms"}, {"task_two_value": slept, "factor": 3})
    assert launcher.wait_status(three).state == "succeeded"
    result = json.loads(launcher.read(three.layout, "result.json"))
    assert result == {"task_two_value": slept, "factor": 3.0, "product": round(slept * 3, 3)}
    assert yaml.safe_load(launcher.read(three.layout, "params.yaml"))["params"]["task_two_value"] == slept


def test_notebook_leaves_executed_notebook_with_injected_parameters(
    launcher: LauncherClient, identity: dict[str, Any]
) -> None:
    handle = launcher.launch("report_notebook", identity, {"name": "airflow", "values": [5, 7], "factor": 10})
    status = launcher.wait_status(handle, timeout=180)
    assert status.state == "succeeded", status.log_tail
    assert status.result_keys["notebook"] == handle.layout.notebook_key

    notebook = json.loads(launcher.read(handle.layout, "output.ipynb"))
    injected = [c for c in notebook["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1
    source = "".join(injected[0]["source"])
    assert 'name = "airflow"' in source and "factor = 10" in source and "values = [5, 7]" in source
    outputs = "".join("".join(o.get("text", "")) for c in notebook["cells"] for o in c.get("outputs", []))
    assert "hello airflow" in outputs and "scaled: [50, 70]" in outputs
    assert json.loads(launcher.read(handle.layout, "result.json")) == {
        "name": "airflow",
        "total": 120,
        "scaled": [50, 70],
    }


def test_nonzero_exit_fails_with_code_and_log_tail(launcher: LauncherClient, identity: dict[str, Any]) -> None:
    handle = launcher.launch("diagnostic", identity, {"action": "exit", "code": 7})
    status = launcher.wait_status(handle)
    assert status.state == "failed" and status.exit_code == 7 and status.reason == "exit"
    assert "exiting with code 7" in status.log_tail
    assert status.error == "exit code 7: exiting with code 7"
    assert "result" not in status.result_keys


def test_raising_task_fails_with_traceback_in_log_tail(launcher: LauncherClient, identity: dict[str, Any]) -> None:
    handle = launcher.launch("diagnostic", identity, {"action": "raise", "message": "the sky fell"})
    status = launcher.wait_status(handle)
    assert status.state == "failed" and status.exit_code == 1
    assert status.log_tail[-1] == "RuntimeError: the sky fell"
    assert any(line.startswith("Traceback") for line in status.log_tail)
    assert status.error == "exit code 1: RuntimeError: the sky fell"


def test_a_malformed_result_fails_the_task_and_keeps_the_log(
    launcher: LauncherClient, identity: dict[str, Any]
) -> None:
    handle = launcher.launch("diagnostic", identity, {"action": "bad_result"})
    status = launcher.wait_status(handle)
    assert status.state == "failed" and status.reason == "error" and status.exit_code == 70
    assert status.error is not None and status.error.startswith("airlaunch runtime: publishing results failed:")
    assert "result" not in status.result_keys and status.result_keys["log"] == handle.layout.log_key
    assert "publishing results failed" in launcher.read(handle.layout, "log.txt").decode()


def test_stop_ends_task_as_failed_stopped(launcher: LauncherClient, identity: dict[str, Any]) -> None:
    """A real runtime records Docker's SIGTERM (exit 143), and the watcher removes the container (the logic:
    tests/unit/test_launcher_logic.py::test_a_stopped_try_ends_failed_saying_who_stopped_it_and_why)."""
    handle = launcher.launch("diagnostic", identity, {"action": "sleep", "seconds": 120})
    wait_for_log_line(launcher, handle, "sleeping: 1 of")
    response = launcher.invoke({"action": "stop", "handle": handle.to_dict(), "reason": "test"})
    assert response["ok"]
    status = launcher.wait_status(handle, timeout=30)
    assert status.state == "failed" and status.reason == "stopped" and status.exit_code == 143
    assert any(line.startswith("sleeping: ") for line in status.log_tail)
    assert response["description"]["state"] == "failed"
    gone_by = time.monotonic() + 5  # the launcher's watcher removes it once its end is recorded
    while handle.task_ref[:12] in task_containers() and time.monotonic() < gone_by:
        time.sleep(0.1)
    assert handle.task_ref[:12] not in task_containers()


def test_stop_right_after_launch_still_leaves_a_status(launcher: LauncherClient, identity: dict[str, Any]) -> None:
    """A stop may land before the runtime has a SIGTERM handler; then the launcher records it (each outcome on
    its own: tests/unit/test_launcher_logic.py::test_a_stopped_try_ends_failed_saying_who_stopped_it_and_why)."""
    handle = launcher.launch("diagnostic", identity, {"action": "sleep", "seconds": 120})
    response = launcher.invoke({"action": "stop", "handle": handle.to_dict(), "reason": "right away"})
    assert response["description"]["state"] == "failed"
    status = launcher.wait_status(handle, timeout=30)
    assert status.state == "failed" and status.reason == "stopped"
    assert "right away" in (status.error or "")  # the reason given, whoever wrote status.json
    assert status.exit_code == 143 or status.written_by == "launcher"


def test_describe_reports_running_then_finished(launcher: LauncherClient, identity: dict[str, Any]) -> None:
    """Docker's container states through describe (the logic: tests/unit/test_launcher_logic.py, describe)."""
    handle = launcher.launch("diagnostic", identity, {"action": "sleep", "seconds": 3})
    running = launcher.invoke({"action": "describe", "handle": handle.to_dict()})["description"]
    assert running["state"] in ("pending", "running") and running["status"] is None
    launcher.wait_status(handle)
    done = launcher.invoke({"action": "describe", "handle": handle.to_dict()})["description"]
    assert done["state"] == "succeeded" and done["status"]["exit_code"] == 0


def test_same_identity_starts_one_container(launcher: LauncherClient, identity: dict[str, Any]) -> None:
    """On Docker, by the container's name and labels (the logic: tests/unit/test_launcher_logic.py, one
    container per try)."""
    first = launcher.launch("diagnostic", identity, {"action": "sleep", "seconds": 4})
    second = launcher.launch("diagnostic", identity, {"action": "sleep", "seconds": 4})
    assert first.launched and not second.launched
    assert second.task_ref == first.task_ref
    running = _containers_for(identity)
    assert len(running) == 1
    launcher.wait_status(first)
    # Finished: a relaunch of the same try reports the finished task and starts nothing.
    third = launcher.launch("diagnostic", identity, {"action": "sleep", "seconds": 4})
    assert not third.launched and third.task_ref in ("", first.task_ref)
    assert set(_containers_for(identity)) <= {first.task_ref[:12]}  # at most the first, still exiting
    # The next try is a new task.
    retry = launcher.launch("diagnostic", {**identity, "try_number": 2}, {"action": "echo"})
    assert retry.launched and retry.prefix.endswith("/-1/2/")
    launcher.wait_status(retry)


def test_list_shows_each_live_task_with_its_results_prefix(launcher: LauncherClient, identity: dict[str, Any]) -> None:
    """What the orphan sweep sees: one listing (labels, no inspect per container) names where each try writes."""
    handle = launcher.launch("diagnostic", identity, {"action": "sleep", "seconds": 4})
    before = time.time()
    [listed] = [t for t in launcher.invoke({"action": "list"})["tasks"] if t["task_ref"] == handle.task_ref]
    assert (listed["bucket"], listed["prefix"]) == (handle.bucket, handle.prefix)
    assert before - 30 < listed["started_at"] <= before + 1
    launcher.wait_status(handle)


BAD_REQUESTS = [
    ({"task": "no_such_task"}, "task", "not in the task catalog"),
    ({"task": "task_one", "params": ["not", "a", "mapping"]}, "params", "expected dict"),
    ({"task": "task_one", "params": "name=x"}, "params", "expected dict"),
    ({"task": "task_one", "identity_patch": {"dag_id": "a/b"}}, "identity.dag_id", "must not contain '/'"),
    ({"task": "task_one", "identity_patch": {"run_id": "..", "task_id": "x"}}, "identity.run_id", "'..'"),
    ({"task": "task_one", "identity_patch": {"task_id": "../../etc"}}, "identity.task_id", "'..'"),
    ({"task": "task_one", "params": {"blob": "x" * 200_000}}, "params", "over the 131072-byte limit"),
    (
        {"task": "task_one", "overrides": {"env": {"AWS_SECRET_ACCESS_KEY": "x"}}},
        "overrides.env.AWS_SECRET_ACCESS_KEY",
        "reserved",
    ),
    ({"task": "task_one", "overrides": {"memory_mib": 10**9}}, "overrides.memory_mib", "must be in"),
    ({"task": "task_one", "overrides": {"image": "evil:latest"}}, "overrides", "unknown field"),
]


# Each of BAD_REQUESTS goes through the handler and the real service in tests/unit/test_launcher_logic.py
# (test_bad_requests_are_refused_naming_the_field_and_leave_nothing); on the wire, one the protocol refuses
# and one the catalog refuses show that a refusal reaches the caller and that no container starts.
ON_THE_WIRE = [BAD_REQUESTS[0], BAD_REQUESTS[1]]  # no such catalog task; params not a mapping


@pytest.mark.parametrize(("request_patch", "field", "message"), ON_THE_WIRE)
def test_bad_request_is_refused_and_starts_nothing(
    launcher: LauncherClient, identity: dict[str, Any], request_patch: dict[str, Any], field: str, message: str
) -> None:
    patch = dict(request_patch)
    request = {"identity": {**identity, **patch.pop("identity_patch", {})}, "params": {}, **patch}
    before = set(task_containers())
    response = launcher.invoke({"action": "launch", "request": request})
    assert response["ok"] is False, response
    assert response["error"]["type"] == "InvalidRequest"
    assert response["error"]["field"] == field
    assert message in response["error"]["message"]
    assert set(task_containers()) - before == set()  # nothing new started


def test_unknown_action_is_refused(launcher: LauncherClient) -> None:
    response = launcher.invoke({"action": "explode"})
    assert response == {
        "ok": False,
        "error": {
            "type": "InvalidRequest",
            "message": "unknown action 'explode'; expected launch, describe, stop, list, reap or ping",
            "field": "action",
            "retryable": False,
        },
    }


def test_ping_names_backend_and_catalog(launcher: LauncherClient) -> None:
    response = launcher.invoke({"action": "ping"})
    assert response["ok"] and response["backend"] == "docker"
    assert {"task_one", "task_two", "task_three", "report_notebook", "diagnostic"} <= set(response["tasks"])


def test_no_task_container_is_left_running(launcher: LauncherClient) -> None:
    deadline = time.monotonic() + 30
    while task_containers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert task_containers() == []


def _containers_for(identity: dict[str, Any]) -> list[str]:
    from airlaunch.protocol import RunIdentity

    digest = RunIdentity.from_dict(identity).digest
    out = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=airlaunch.identity={digest}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def wait_for_log_line(launcher: LauncherClient, handle: Handle, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in launcher.live_log(handle.layout):
            return
        time.sleep(0.3)
    raise AssertionError(f"{text!r} not in the live log after {timeout} s")
