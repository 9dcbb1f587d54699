"""The runtime's credentials for its own run's files (ECS), kept from the task's own command.

On ECS the launcher hands the runtime a run session (protocol.ENV_RUN_CREDENTIALS, through an
ECS environment file; airlaunch.launcher.run_credentials). What this module guarantees:

* The session is used for the run's files only and is renewed without STS: shortly before it
  expires, the runtime reads the fresh session the launcher's reaper left at the run's
  ``renewal.json`` (the one session object the run session may read), with the session it has.
  It never assumes a role itself, so a leaked session cannot extend itself.
* The task's own command cannot read it: ``conceal`` takes the variable out of the runtime's
  environment (so no child inherits it) and makes the runtime non-dumpable, which the kernel
  requires (besides the same uid) before another process may read its /proc/<pid>/environ or
  /mem or ptrace it, unless that process has CAP_SYS_PTRACE (proc(5), ptrace(2) "Ptrace access
  mode checking"); neither Docker's nor Fargate's defaults grant it. /proc/<pid>/environ shows a
  process's environment as it was at exec, so taking the variable out alone would not hide it.

Without that variable (Docker, LocalStack) botocore's usual credential chain applies.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

from airlaunch.aws_errors import error_code, is_missing
from airlaunch.protocol import ENV_RUN_CREDENTIALS

PR_SET_DUMPABLE = 4  # <linux/prctl.h>
RENEWAL_READ_SECONDS = 60  # at most one read of renewal.json a minute while a session nears its end


def conceal(environ: MutableMapping[str, str]) -> str | None:
    """Take the run session out of ``environ`` (os.environ in the runtime) and make this process
    non-dumpable on Linux; the session's JSON, or None. Cheap: only ctypes is imported."""
    value = environ.pop(ENV_RUN_CREDENTIALS, None)
    if sys.platform == "linux":
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
    return value


def run_session(environ: Mapping[str, str], clock: Callable[[], datetime] | None = None) -> Any:
    """A botocore Session for the run's files: the run session renewing from S3 when given, else the default chain.

    botocore's, not boto3's: the runtime makes one client and needs nothing boto3 adds, whose import (its
    resources, s3transfer) cost every container start about a tenth of its start-up CPU.
    ``clock`` (botocore's time fetcher, a timezone-aware now) lets a test run a task's hours in seconds."""
    from botocore.session import get_session  # not at import: the runtime handles SIGTERM before anything slow

    raw = environ.get(ENV_RUN_CREDENTIALS)
    if not raw:
        return get_session()
    from botocore.credentials import RefreshableCredentials

    current = json.loads(raw)
    now = clock or (lambda: datetime.now(UTC))
    last_read: list[datetime] = []

    def renew() -> dict[str, str]:
        """The launcher's renewal, if it is newer than what we hold; else what we hold (botocore tries again)."""
        if not last_read or (now() - last_read[-1]).total_seconds() >= RENEWAL_READ_SECONDS:
            last_read[:] = [now()]
            fresh = _read_renewal(current)
            if fresh is not None and _later(fresh["Expiration"], current["Expiration"]):
                current.update({k: fresh[k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")})
        return _metadata(current)

    credentials = RefreshableCredentials(
        current["AccessKeyId"], current["SecretAccessKey"], current["SessionToken"], _parse(current["Expiration"]),
        renew, "airlaunch-run-session", time_fetcher=now,
    )  # fmt: skip
    botocore_session = get_session()
    botocore_session._credentials = credentials  # botocore has no public setter for a session's credentials
    return botocore_session


def renewal_client(current: dict[str, str]) -> Any:
    """An S3 client of its own with the session held now (the refreshing credentials must not be asked for
    credentials while they refresh)."""
    from botocore.session import get_session

    return get_session().create_client(
        "s3",
        aws_access_key_id=current["AccessKeyId"],
        aws_secret_access_key=current["SecretAccessKey"],
        aws_session_token=current["SessionToken"],
    )


def _read_renewal(current: dict[str, str]) -> dict[str, str] | None:
    """renewal.json, read with the current session (a client of its own: the refreshing credentials must
    not be asked for credentials while they refresh); None while the launcher has written none. Without
    s3:ListBucket, S3 answers a missing key with 403 AccessDenied rather than 404, so both mean "none yet"
    (in botocore's mandatory refresh window an error would fail the request the refresh was made for)."""
    from botocore.exceptions import ClientError

    s3 = renewal_client(current)
    try:
        body = s3.get_object(Bucket=current["Bucket"], Key=current["RenewalKey"])["Body"].read()
    except ClientError as exc:
        if is_missing(exc) or error_code(exc) in ("AccessDenied", "403"):
            return None
        raise
    fresh: dict[str, str] = json.loads(body)
    return fresh


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _later(first: str, second: str) -> bool:
    return _parse(first) > _parse(second)


def _metadata(values: dict[str, str]) -> dict[str, str]:
    return {
        "access_key": values["AccessKeyId"],
        "secret_key": values["SecretAccessKey"],
        "token": values["SessionToken"],
        "expiry_time": values["Expiration"],
    }
