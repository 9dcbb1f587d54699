"""The task's credentials for its own run files, renewed before they expire (ECS only).

The launcher hands an ECS task a one-hour session of the stack's files role, tagged with
the run (protocol.ENV_RUN_CREDENTIALS; see airlaunch.launcher.run_credentials). A task may
run for days, so the runtime renews the session by assuming the same role with the current
credentials; the run's tags are transitive and carry over unchanged. Without that variable
(Docker, LocalStack) boto3's usual credential chain applies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from airlaunch.protocol import ENV_RUN_CREDENTIALS

SESSION_SECONDS = 3600


def run_session(environ: Mapping[str, str]) -> Any:
    """A boto3 Session for the run's files: renewing run credentials when given, else the default chain."""
    import boto3  # not at import: the runtime handles SIGTERM before anything slow

    raw = environ.get(ENV_RUN_CREDENTIALS)
    if not raw:
        return boto3.Session()
    from botocore.credentials import RefreshableCredentials
    from botocore.session import get_session

    current = json.loads(raw)
    role_arn, session_name = current["RoleArn"], current.get("SessionName", "airlaunch-run")

    def renew() -> dict[str, str]:
        # A client of its own with the current values: the refreshing credentials object must not
        # be asked for credentials while it refreshes.
        sts = boto3.client(
            "sts",
            aws_access_key_id=current["AccessKeyId"],
            aws_secret_access_key=current["SecretAccessKey"],
            aws_session_token=current["SessionToken"],
        )
        fresh = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name, DurationSeconds=SESSION_SECONDS)
        credentials = fresh["Credentials"]
        current.update(
            AccessKeyId=credentials["AccessKeyId"],
            SecretAccessKey=credentials["SecretAccessKey"],
            SessionToken=credentials["SessionToken"],
            Expiration=credentials["Expiration"].isoformat(),
        )
        return _metadata(current)

    credentials = RefreshableCredentials.create_from_metadata(
        metadata=_metadata(current), refresh_using=renew, method="airlaunch-run-session"
    )
    botocore_session = get_session()
    botocore_session._credentials = credentials  # botocore's documented way has no public setter
    return boto3.Session(botocore_session=botocore_session)


def _metadata(values: dict[str, str]) -> dict[str, str]:
    return {
        "access_key": values["AccessKeyId"],
        "secret_key": values["SecretAccessKey"],
        "token": values["SessionToken"],
        "expiry_time": values["Expiration"],
    }
