"""The runtime's run session: concealed from the task's command, renewed from S3 only when the launcher left one."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from airlaunch.runtime import credentials

PR_GET_DUMPABLE = 3


def test_conceal_takes_the_session_out_of_the_environment_and_makes_the_process_non_dumpable() -> None:
    """In a process of its own: a non-dumpable pytest would be harmless, but it is not this test's to change."""
    script = (
        "import ctypes, os; from airlaunch.runtime.credentials import conceal; "
        "os.environ['AIRLAUNCH_RUN_CREDENTIALS'] = '{\"x\": 1}'; before = ctypes.CDLL(None).prctl(3, 0, 0, 0, 0); "
        "value = conceal(os.environ); "
        "print(before, ctypes.CDLL(None).prctl(3, 0, 0, 0, 0), value, 'AIRLAUNCH_RUN_CREDENTIALS' in os.environ)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["1", "0", '{"x":', "1}", "False"]


def _session(minutes: int) -> dict[str, str]:
    expiration = (datetime.now(UTC) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"AccessKeyId": "ASIAOLD", "SecretAccessKey": "old", "SessionToken": "old", "Expiration": expiration,
            "Bucket": "b", "RenewalKey": "runs-sessions/d/r/t/-1/1/renewal.json"}  # fmt: skip


@pytest.mark.parametrize("code", ["AccessDenied", "NoSuchKey"])
def test_no_renewal_yet_keeps_the_current_session_even_in_the_mandatory_window(
    monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    """S3 answers a missing renewal.json with 403 to a session without s3:ListBucket: not an error."""
    session = credentials.run_session({"AIRLAUNCH_RUN_CREDENTIALS": json.dumps(_session(5))})
    reads: list[str] = []

    class _S3:
        def get_object(self, **kwargs: Any) -> Any:
            reads.append(kwargs["Key"])
            raise ClientError({"Error": {"Code": code, "Message": "no"}}, "GetObject")

    monkeypatch.setattr(credentials, "renewal_client", lambda current: _S3())
    frozen = session.get_credentials().get_frozen_credentials()  # 5 minutes left: a mandatory refresh
    assert frozen.access_key == "ASIAOLD" and reads == ["runs-sessions/d/r/t/-1/1/renewal.json"]


def test_a_newer_renewal_replaces_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = {**_session(60), "AccessKeyId": "ASIANEW", "SecretAccessKey": "new", "SessionToken": "new"}
    monkeypatch.setattr(credentials, "_read_renewal", lambda current: fresh)
    session = credentials.run_session({"AIRLAUNCH_RUN_CREDENTIALS": json.dumps(_session(12))})
    assert session.get_credentials().get_frozen_credentials().access_key == "ASIANEW"
