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
from airlaunch.runtime.signed_s3 import Endpoint, Keys

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


class _Clock:
    """A timezone-aware now that a test moves."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at


def test_the_runtimes_own_keys_look_for_a_renewal_only_near_the_end_and_at_most_once_a_minute() -> None:
    """RunSessionKeys (the runtime's own S3 client's): the session as given while more than 15 minutes are
    left; then renewal.json, read with the session held, at most once a minute, taken only when newer."""
    clock = _Clock()
    reads: list[str] = []
    renewal: list[dict[str, str]] = []

    def read_renewal(current: dict[str, str]) -> dict[str, str] | None:
        reads.append(current["AccessKeyId"])
        return renewal[0] if renewal else None

    keys = credentials.RunSessionKeys(_session(30), read_renewal, clock)
    assert keys().access_key == "ASIAOLD" and reads == [], "30 minutes left: nothing read"
    clock.at += timedelta(minutes=16)  # 14 minutes left
    assert keys().access_key == "ASIAOLD" and reads == ["ASIAOLD"], "none yet: the session held is kept"
    renewal.append({**_session(75), "AccessKeyId": "ASIANEW", "SecretAccessKey": "new", "SessionToken": "new"})
    clock.at += timedelta(seconds=30)
    assert keys().access_key == "ASIAOLD" and len(reads) == 1, "not again within the minute"
    clock.at += timedelta(seconds=31)
    fresh = keys()
    assert (fresh.access_key, fresh.secret_key, fresh.token) == ("ASIANEW", "new", "new") and len(reads) == 2
    clock.at += timedelta(minutes=5)
    assert keys().access_key == "ASIANEW" and len(reads) == 2, "the renewed session has an hour left"


def test_the_runtimes_own_keys_raise_a_failed_renewal_only_in_the_mandatory_window() -> None:
    clock = _Clock()

    def read_renewal(current: dict[str, str]) -> dict[str, str] | None:
        raise OSError("S3 unreachable")

    keys = credentials.RunSessionKeys(_session(12), read_renewal, clock)
    assert keys().access_key == "ASIAOLD", "12 minutes left: a failed read is reported, the session kept"
    clock.at += timedelta(minutes=3)
    with pytest.raises(OSError, match="S3 unreachable"):
        keys()


def test_explicit_keys_are_the_run_session_else_the_environments_else_none() -> None:
    endpoint = Endpoint("http://127.0.0.1:1", "us-east-1", path_style=True)
    environ = {"AIRLAUNCH_RUN_CREDENTIALS": json.dumps(_session(60)), "AWS_ACCESS_KEY_ID": "AKIAENV",
               "AWS_SECRET_ACCESS_KEY": "env"}  # fmt: skip
    session = credentials.explicit_keys(environ, endpoint)
    assert isinstance(session, credentials.RunSessionKeys) and session().access_key == "ASIAOLD"
    static = credentials.explicit_keys(
        {"AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "env", "AWS_SESSION_TOKEN": "t"}, endpoint
    )
    assert static is not None and static() == Keys("AKIAENV", "env", "t")
    assert credentials.explicit_keys({"AWS_PROFILE": "p"}, endpoint) is None, "botocore's chain decides"
