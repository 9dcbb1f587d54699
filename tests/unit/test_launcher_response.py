"""How the hook reads the launcher's answers: its own refusals, Lambda's error shape, and malformed ones."""

from __future__ import annotations

import pytest

from airlaunch.protocol import Handle, LaunchCall, LaunchRequest, PingCall, RunIdentity
from airlaunch.providers.airflow.hooks.launcher import LauncherError, launched_message, reply_or_raise
from airlaunch.providers.airflow.hooks.retry import is_transient

LAUNCH = LaunchCall(LaunchRequest(task="diagnostic", identity=RunIdentity("d", "r", "t")))


def test_a_refusal_names_its_type_field_and_message_and_is_final_unless_the_launcher_says_so() -> None:
    refusal = b'{"ok": false, "error": {"type": "InvalidRequest", "field": "task", "message": "unknown task"}}'
    with pytest.raises(LauncherError, match=r"refused the request: InvalidRequest \[task\]: unknown task") as caught:
        reply_or_raise(LAUNCH, refusal, None)
    assert not is_transient(caught.value)
    retryable = b'{"ok": false, "error": {"type": "LaunchError", "message": "no capacity", "retryable": true}}'
    with pytest.raises(LauncherError, match="LaunchError: no capacity") as caught:
        reply_or_raise(LAUNCH, retryable, None)
    assert is_transient(caught.value)


@pytest.mark.parametrize(
    ("payload", "function_error", "words"),
    [
        # the local pool could not start an execution environment (seen as "None: None" before)
        (b'{"errorMessage": "execution environment did not start", "errorType": "PoolError"}', None, "(PoolError)"),
        (b'{"errorMessage": "Task timed out after 300.00 seconds", "errorType": "Sandbox.Timedout"}', "Unhandled", ""),
    ],
)
def test_lambdas_error_shape_is_named_and_retried(payload: bytes, function_error: str | None, words: str) -> None:
    with pytest.raises(LauncherError, match="the launcher Lambda failed") as caught:
        reply_or_raise(LAUNCH, payload, function_error)
    assert words in str(caught.value) and "None: None" not in str(caught.value)
    assert is_transient(caught.value)  # every launcher action is idempotent
    assert reply_or_raise(PingCall(), b'{"ok": true, "backend": "docker", "tasks": []}', None).backend == "docker"


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"<html>bad gateway</html>", "non-JSON"),
        (b'{"ok": true, "handle": {}}', r"reply\.handle\.backend: is required"),
        (b'{"handle": {}}', "reply.ok"),
    ],
)
def test_a_malformed_answer_names_what_is_off_and_is_not_retried(payload: bytes, words: str) -> None:
    with pytest.raises(LauncherError, match=f"answer to launch is malformed: .*{words}") as caught:
        reply_or_raise(LAUNCH, payload, None)
    assert not is_transient(caught.value)


@pytest.mark.parametrize(
    ("task_ref", "launched", "words"),
    [
        ("c0ffee", True, "launched task_two (docker c0ffee)"),
        ("c0ffee", False, "found already running task_two (docker c0ffee)"),
        # the launcher found this try's status.json and started nothing: there is no container to name
        ("", False, "task_two: this try already ended (its status.json exists), nothing launched"),
    ],
)
def test_the_launch_line_says_what_the_launcher_did(task_ref: str, launched: bool, words: str) -> None:
    handle = Handle("docker", task_ref, "results", "airlaunch/d/r/task_two/1", launched)
    assert launched_message("task_two", handle).startswith(words)
    assert "s3://results/airlaunch/d/r/task_two/1" in launched_message("task_two", handle)
