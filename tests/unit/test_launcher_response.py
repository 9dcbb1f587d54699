"""How the hook reads the launcher's answers: its own refusals, and Lambda's error shape."""

from __future__ import annotations

import pytest

from airlaunch.providers.airflow.hooks.launcher import LauncherError, parse_response
from airlaunch.providers.airflow.hooks.retry import is_transient


def test_a_refusal_names_its_type_field_and_message_and_is_final_unless_the_launcher_says_so() -> None:
    refusal = b'{"ok": false, "error": {"type": "InvalidRequest", "field": "task", "message": "unknown task"}}'
    with pytest.raises(LauncherError, match=r"refused the request: InvalidRequest \[task\]: unknown task") as caught:
        parse_response(refusal, None)
    assert not is_transient(caught.value)


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
        parse_response(payload, function_error)
    assert words in str(caught.value) and "None: None" not in str(caught.value)
    assert is_transient(caught.value)  # every launcher action is idempotent
    assert parse_response(b'{"ok": true, "handle": {}}', None) == {"ok": True, "handle": {}}
