"""Run sessions: credentials that let one ECS task touch its own run's files, until its own end at the latest.

ECS cannot tell runs apart on a task role (no session tags, a session named after the task id),
so the launcher assumes the stack's files role (AIRLAUNCH_RUN_ROLE_ARN) for each try, with
session tags that spell the run (aws_names.RUN_TAG_KEYS); the role's policy builds the one
allowed prefix from them. What this module guarantees:

* **Nothing else shows them.** A session travels as an ECS environment file: an S3 object
  ``<prefix>-sessions/<dag>/<run>/<task>/<map>/<try>/session.env`` holding one line
  ``AIRLAUNCH_RUN_CREDENTIALS=<json>``, which the ECS agent reads with the task execution role
  when the container starts. RunTask, DescribeTasks, ECS's events and CloudTrail carry only the
  object's ARN; Airflow's role reads ``<prefix>/`` only. The launcher deletes it once the task
  has stopped; the bucket's lifecycle rule expires the whole ``<prefix>-sessions/`` after a day.
* **No session outlives its try.** Every session carries an inline session policy allowing
  nothing after the try's deadline (``aws:CurrentTime`` before its launch + its timeout +
  DEADLINE_ALLOWANCE_SECONDS), and lasts min(1 h, max(15 min, time to the deadline)): 1 h is the
  most STS grants a chained role session, 15 min the least it grants at all.
* **A leak cannot renew itself.** Only the launcher may assume the role (its trust policy);
  the task's runtime never calls STS. The launcher's reaper writes a fresh session, well before
  the current one expires, to ``.../renewal.json``, the one object of that prefix the run's own
  session may read (so the task's runtime reads it with the session it has); a leaked session
  can read its successor only while it is itself valid, and never past the deadline.

The objects carry their session's expiry and the try's deadline as S3 metadata, so the reaper
knows when to renew without reading any secret.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from airlaunch.aws_errors import is_missing
from airlaunch.aws_names import RUN_TAG_KEYS, run_session_tags
from airlaunch.protocol import ENV_RUN_CREDENTIALS, ResultLayout, RunIdentity, identity_of_prefix

SESSION_SECONDS_MAX = 3600  # the longest a chained role session may last (the Lambda's role -> RunFilesRole)
SESSION_SECONDS_MIN = 900  # the shortest STS grants
# Past the try's timeout, counted from its launch: pulling the image and starting the container (the
# runtime's timeout counts from its own start), SIGTERM and the kill grace, and the final uploads, which
# the runtime retries for up to AIRLAUNCH_S3_RETRY_SECONDS (300 s by default).
DEADLINE_ALLOWANCE_SECONDS = 1800
# The reaper runs every 5 minutes; botocore refreshes 15 minutes before expiry (10: mandatory). Renewing
# once fewer than 25 minutes are left gives two reaper runs before the runtime starts to look.
RENEW_WITHIN_SECONDS = 1500
ENV_FILE = "session.env"
RENEWAL_FILE = "renewal.json"


def sessions_root(key_prefix: str) -> str:
    """The top-level prefix of run sessions, beside (never under) the runs' own prefix."""
    root = key_prefix.strip("/")
    return f"{root}-sessions" if root else "airlaunch-sessions"


@dataclass(frozen=True)
class SessionFiles:
    """Where one try's run sessions live: the environment file ECS reads, and the renewal the task reads."""

    bucket: str
    prefix: str

    @classmethod
    def of(cls, bucket: str, key_prefix: str, identity: RunIdentity) -> SessionFiles:
        """The try's folder of the result layout, under the sessions' root instead of the runs'."""
        return cls(bucket, ResultLayout.for_identity(bucket, sessions_root(key_prefix), identity).prefix)

    @property
    def env_file(self) -> str:
        return self.prefix + ENV_FILE

    @property
    def renewal(self) -> str:
        return self.prefix + RENEWAL_FILE

    @property
    def env_file_arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket}/{self.env_file}"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def deadline_policy(deadline: float) -> str:
    """The session policy: the role's own permissions (a session policy only limits), until ``deadline``."""
    statement = {
        "Effect": "Allow",
        "Action": ["s3:GetObject", "s3:PutObject"],
        "Resource": "*",
        "Condition": {"DateLessThan": {"aws:CurrentTime": _iso(deadline)}},
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, separators=(",", ":"))


def duration_seconds(now: float, deadline: float) -> int:
    """Up to the deadline (rounded up: a session ending a moment early would be renewed for 15 minutes)."""
    return math.ceil(min(SESSION_SECONDS_MAX, max(SESSION_SECONDS_MIN, deadline - now)))


def session_name(identity: RunIdentity) -> str:
    return f"al-{identity.digest}"


class RunSessions:
    """Mints, hands over, renews and removes the run sessions of one launcher (ECS backend only)."""

    def __init__(self, sts: Any, s3: Any, role_arn: str, bucket: str, key_prefix: str) -> None:
        self.sts, self.s3, self.role_arn = sts, s3, role_arn
        self.bucket, self.key_prefix = bucket, key_prefix
        self.clock = time.time  # an attribute, so that a test runs a try's hours on a clock of its own

    def files(self, identity: RunIdentity) -> SessionFiles:
        return SessionFiles.of(self.bucket, self.key_prefix, identity)

    def _mint(self, identity: RunIdentity, files: SessionFiles, deadline: float) -> tuple[str, dict[str, str]]:
        """A session tagged with the run, limited to the deadline: its JSON and the object's metadata.
        ValueError when an id holds a character session tags cannot carry."""
        response = self.sts.assume_role(
            RoleArn=self.role_arn,
            RoleSessionName=session_name(identity),
            DurationSeconds=duration_seconds(self.clock(), deadline),
            Tags=run_session_tags(identity),
            TransitiveTagKeys=list(RUN_TAG_KEYS),
            Policy=deadline_policy(deadline),
        )
        credentials = response["Credentials"]
        expiration = _iso(credentials["Expiration"].timestamp())
        value = json.dumps(
            {
                "AccessKeyId": credentials["AccessKeyId"],
                "SecretAccessKey": credentials["SecretAccessKey"],
                "SessionToken": credentials["SessionToken"],
                "Expiration": expiration,
                "Bucket": files.bucket,
                "RenewalKey": files.renewal,
            }
        )
        return value, {"expiration": expiration, "deadline": _iso(deadline)}

    def start(self, identity: RunIdentity, timeout_seconds: int, first_start: bool) -> str:
        """Write the try's environment file and return its ARN (RunTask's ``environmentFiles``).

        A try's first start keeps an environment file already there (a launch repeated while the task
        it started is not yet listed gets that same task from ECS, which read that file); a start again
        after a failed start writes a new one, with a deadline counted from now."""
        files = self.files(identity)
        deadline = math.ceil(self.clock()) + timeout_seconds + DEADLINE_ALLOWANCE_SECONDS  # whole seconds, as written
        value, metadata = self._mint(identity, files, deadline)
        condition = {"IfNoneMatch": "*"} if first_start else {}
        try:
            self.s3.put_object(
                Bucket=files.bucket, Key=files.env_file, Body=f"{ENV_RUN_CREDENTIALS}={value}\n".encode(),
                ContentType="text/plain", Metadata=metadata, **condition,
            )  # fmt: skip
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
                raise
        return files.env_file_arn

    def renew(self, layout: ResultLayout) -> bool:
        """Give a live try a fresh session if its current one ends within RENEW_WITHIN_SECONDS and before
        its deadline; True when one was written. Tries without a run session are left alone."""
        identity = identity_of_prefix(layout.prefix)
        if identity is None or layout.bucket != self.bucket:
            return False
        files = self.files(identity)
        metadata = self._metadata(files.renewal) or self._metadata(files.env_file)
        if not metadata or "expiration" not in metadata or "deadline" not in metadata:
            return False
        now, expiration, deadline = self.clock(), _epoch(metadata["expiration"]), _epoch(metadata["deadline"])
        if expiration >= deadline or now >= deadline or expiration - now > RENEW_WITHIN_SECONDS:
            return False
        value, fresh = self._mint(identity, files, deadline)
        self.s3.put_object(
            Bucket=files.bucket, Key=files.renewal, Body=value.encode(), ContentType="application/json",
            Metadata=fresh,
        )  # fmt: skip
        return True

    def end(self, layout: ResultLayout) -> None:
        """Remove a try's session files once its task has stopped (or never started)."""
        identity = identity_of_prefix(layout.prefix)
        if identity is not None and layout.bucket == self.bucket:
            files = self.files(identity)
            for key in (files.env_file, files.renewal):
                self.s3.delete_object(Bucket=files.bucket, Key=key)

    def _metadata(self, key: str) -> dict[str, str] | None:
        try:
            found: dict[str, str] = self.s3.head_object(Bucket=self.bucket, Key=key).get("Metadata", {})
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        return found
