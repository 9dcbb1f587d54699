"""The runtime's credentials for its own run's files (ECS), kept from the task's own command.

On ECS the launcher hands the runtime a run session (protocol.ENV_RUN_CREDENTIALS, through an
ECS environment file; airlaunch.launcher.run_credentials). What this module guarantees:

* The session is used for the run's files only and is renewed without STS: shortly before it
  expires (fewer than ``REFRESH_SECONDS`` left, botocore's advisory window), the runtime reads the
  fresh session the launcher's reaper left at the run's ``renewal.json`` (the one session object the
  run session may read), with the session it has, at most once a minute. It never assumes a role
  itself, so a leaked session cannot extend itself. ``RunSessionKeys`` does it for the runtime's own
  S3 client (airlaunch.runtime.signed_s3); ``run_session`` the same for botocore's.
* The task's own command cannot read it: ``conceal`` takes the variable out of the runtime's
  environment (so no child inherits it) and makes the runtime non-dumpable, which the kernel
  requires (besides the same uid) before another process may read its /proc/<pid>/environ or
  /mem or ptrace it, unless that process has CAP_SYS_PTRACE (proc(5), ptrace(2) "Ptrace access
  mode checking"); neither Docker's nor Fargate's defaults grant it. /proc/<pid>/environ shows a
  process's environment as it was at exec, so taking the variable out alone would not hide it.

Without that variable (Docker, LocalStack) the environment's keys are used where it has them
(``explicit_keys``), as botocore's chain would use them first; otherwise botocore's chain applies.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

from airlaunch.aws_errors import error_code, is_missing
from airlaunch.protocol import ENV_RUN_CREDENTIALS
from airlaunch.runtime.signed_s3 import Endpoint, Keys, SignedS3

PR_SET_DUMPABLE = 4  # <linux/prctl.h>
RENEWAL_READ_SECONDS = 60  # at most one read of renewal.json a minute while a session nears its end
REFRESH_SECONDS = 15 * 60  # botocore's advisory refresh window: renewal.json is looked for from then on
MANDATORY_SECONDS = 10 * 60  # botocore's mandatory one: a failed read of renewal.json is raised from then on


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


def explicit_keys(
    environ: Mapping[str, str], endpoint: Endpoint, clock: Callable[[], datetime] | None = None
) -> Callable[[], Keys] | None:
    """The credentials the environment gives outright: the run session (renewing itself), else the
    environment's keys; None when neither is there (botocore's chain must look further)."""
    raw = environ.get(ENV_RUN_CREDENTIALS)
    if raw:
        return RunSessionKeys(json.loads(raw), lambda current: _renewal(_renewal_s3(current, endpoint), current), clock)
    access_key, secret_key = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    if access_key and secret_key:
        keys = Keys(access_key, secret_key, environ.get("AWS_SESSION_TOKEN") or "")
        return lambda: keys
    return None


class RunSessionKeys:
    """The run session's keys for the next request, renewed from renewal.json as the module says; thread-safe.

    ``read_renewal`` reads renewal.json with the session held now (None while there is none); ``clock``
    (a timezone-aware now) lets a test run a task's hours in seconds."""

    def __init__(
        self,
        current: dict[str, str],
        read_renewal: Callable[[dict[str, str]], dict[str, str] | None],
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.current = current
        self.read_renewal = read_renewal
        self.now = clock or (lambda: datetime.now(UTC))
        self._last_read: datetime | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Keys:
        with self._lock:
            now = self.now()
            left = (_parse(self.current["Expiration"]) - now).total_seconds()
            due = self._last_read is None or (now - self._last_read).total_seconds() >= RENEWAL_READ_SECONDS
            if left < REFRESH_SECONDS and due:
                self._last_read = now
                try:
                    fresh = self.read_renewal(dict(self.current))
                except Exception as exc:
                    if left < MANDATORY_SECONDS:
                        raise
                    sys.stderr.write(f"airlaunch: reading the run session's renewal failed ({exc}); keeping it\n")
                    fresh = None
                if fresh is not None and _later(fresh["Expiration"], self.current["Expiration"]):
                    keys = ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")
                    self.current = {**self.current, **{k: fresh[k] for k in keys}}
            return Keys(self.current["AccessKeyId"], self.current["SecretAccessKey"], self.current["SessionToken"])


def _renewal_s3(current: dict[str, str], endpoint: Endpoint) -> SignedS3:
    """A client of its own with the session held now (the renewing keys must not be asked for keys while
    they renew)."""
    keys = Keys(current["AccessKeyId"], current["SecretAccessKey"], current["SessionToken"])
    return SignedS3(endpoint, lambda: keys)


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
    """renewal.json, read with the current session by botocore (``_renewal``)."""
    return _renewal(renewal_client(current), current)


def _renewal(s3: Any, current: dict[str, str]) -> dict[str, str] | None:
    """renewal.json, read with the current session (a client of its own); None while the launcher has
    written none. Without s3:ListBucket, S3 answers a missing key with 403 AccessDenied rather than 404,
    so both mean "none yet" (in the mandatory refresh window an error would fail the request the
    refresh was made for)."""
    try:
        body = s3.get_object(Bucket=current["Bucket"], Key=current["RenewalKey"])["Body"].read()
    except Exception as exc:  # botocore's ClientError or signed_s3's S3Error: the same response shape
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
