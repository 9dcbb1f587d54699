"""The rules of run sessions as the least-privilege test judges them, on cases AWS's documentation settles.

Role chaining: a session that carries transitive session tags passes them on to any session it
starts, so that AssumeRole is also authorized as sts:TagSession (tests/iam/authorizations says
where AWS documents it). Session policies: the session's permissions are the intersection of
the role's and the session policy's, and ``DateLessThan`` on ``aws:CurrentTime`` ends them at a
deadline. A task that renews its run session by assuming the files role again (trust
``TaskRenewsItsRun``, identity ``RenewOwnSession``) with sts:AssumeRole allowed alone is denied
here, as AWS denies it: its session carries transitive tags, so the renewal also needs
sts:TagSession, and without it a task outliving its first hour would lose its run files.
"""

from __future__ import annotations

import json
from typing import Any

from airlaunch.aws_names import RUN_TAG_KEYS
from airlaunch.launcher.run_credentials import (
    DEADLINE_ALLOWANCE_SECONDS,
    SESSION_SECONDS_MAX,
    SESSION_SECONDS_MIN,
    deadline_policy,
    duration_seconds,
)
from tests.iam.authorizations import requests_of
from tests.iam.evaluator import Principal, Request, allowed, at
from tests.iam.recorder import Call

ACCOUNT = "111122223333"
FILES_ROLE = f"arn:aws:iam::{ACCOUNT}:role/al-run-files-us-east-1"
LAUNCHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/al-LauncherRole-1"
TAGS = dict(zip(RUN_TAG_KEYS, ("dag", "run", "task", "-1", "1-0190"), strict=True))
RUN = "/".join(f"${{aws:PrincipalTag/{key}}}" for key in RUN_TAG_KEYS)
WRITE_RESULTS = {"Sid": "WriteOwnResults", "Effect": "Allow", "Action": "s3:PutObject",
                 "Resource": f"arn:aws:s3:::bucket/runs/{RUN}/*"}  # fmt: skip
LAUNCHER_TRUST = {
    "Sid": "LauncherStartsARun",
    "Effect": "Allow",
    "Principal": {"AWS": LAUNCHER_ROLE},
    "Action": ["sts:AssumeRole", "sts:TagSession"],
    "Condition": {"ForAllValues:StringEquals": {"sts:TransitiveTagKeys": list(RUN_TAG_KEYS)}},
}
# A files role that lets a task renew its session with sts:AssumeRole alone (the renewal AWS denies).
OLD_TRUST_RENEWAL = {
    "Sid": "TaskRenewsItsRun",
    "Effect": "Allow",
    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
    "Action": "sts:AssumeRole",
    "Condition": {"ArnEquals": {"aws:PrincipalArn": FILES_ROLE}},
}
OLD_RENEW_OWN_SESSION = {
    "Sid": "RenewOwnSession",
    "Effect": "Allow",
    "Action": "sts:AssumeRole",
    "Resource": FILES_ROLE,
}


class _Stack:
    """What the authorization mapping needs of a deployed stack: the files role's trust policy."""

    account = ACCOUNT

    def __init__(self, *trust: dict[str, Any]) -> None:
        self.trust = {"Version": "2012-10-17", "Statement": list(trust)}

    def trust_policy(self, role_arn: str) -> dict[str, Any]:
        assert role_arn == FILES_ROLE
        return self.trust


def _policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _renewal(inherited: dict[str, str]) -> Call:
    """A renewal by AssumeRole of the files role, no tags passed."""
    params = {"RoleArn": FILES_ROLE, "RoleSessionName": "al-x", "DurationSeconds": 3600}
    return Call("sts", "AssumeRole", params, "ASIARUNSESSION", inherited_tags=inherited)


def test_renewing_a_transitively_tagged_session_needs_tag_session_which_the_old_template_denied() -> None:
    stack = _Stack(LAUNCHER_TRUST, OLD_TRUST_RENEWAL)
    session = Principal(FILES_ROLE, (_policy(WRITE_RESULTS, OLD_RENEW_OWN_SESSION),), session_tags=TAGS)

    requests = requests_of(_renewal(TAGS), stack)  # type: ignore[arg-type]

    assert [r.action for r in requests] == ["sts:AssumeRole", "sts:TagSession"]
    assert requests[1].context["sts:TransitiveTagKeys"] == list(RUN_TAG_KEYS)
    assert requests[1].context["aws:RequestTag/airlaunch-run"] == "run"
    verdicts = {r.action: allowed(session, r) for r in requests}
    assert verdicts == {"sts:AssumeRole": True, "sts:TagSession": False}, "the old renewal must be denied"


def test_a_session_without_transitive_tags_starts_an_untagged_one() -> None:
    requests = requests_of(_renewal({}), _Stack(LAUNCHER_TRUST))  # type: ignore[arg-type]
    assert [r.action for r in requests] == ["sts:AssumeRole"]


def test_the_launcher_tagging_a_fresh_session_is_allowed_by_the_trust_policy() -> None:
    tags = [{"Key": k, "Value": v} for k, v in TAGS.items()]
    params = {"RoleArn": FILES_ROLE, "RoleSessionName": "al-x", "Tags": tags, "TransitiveTagKeys": list(RUN_TAG_KEYS)}
    launcher = Principal(LAUNCHER_ROLE, (_policy({"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"],
                                                  "Resource": FILES_ROLE}),))  # fmt: skip
    requests = requests_of(Call("sts", "AssumeRole", params, "AKIALAUNCHER"), _Stack(LAUNCHER_TRUST))  # type: ignore[arg-type]
    assert [(r.action, allowed(launcher, r)) for r in requests] == [("sts:AssumeRole", True), ("sts:TagSession", True)]


def test_a_session_policy_deadline_ends_the_session_whatever_the_role_allows() -> None:
    deadline = 1_800_000_000.0
    policy = json.loads(deadline_policy(deadline))
    session = Principal(FILES_ROLE, (_policy(WRITE_RESULTS),), session_policy=policy, session_tags=TAGS)
    own = Request("s3:PutObject", "arn:aws:s3:::bucket/runs/dag/run/task/-1/1-0190/status.json")
    other = Request("s3:PutObject", "arn:aws:s3:::bucket/runs/dag/other/task/-1/1-0190/status.json")

    assert allowed(session, at(own, deadline - 1))
    assert not allowed(session, at(own, deadline)) and not allowed(session, at(own, deadline + 3600))
    assert not allowed(session, at(other, deadline - 1)), "the session policy grants nothing the role does not"
    assert allowed(Principal(FILES_ROLE, (_policy(WRITE_RESULTS),), session_tags=TAGS), at(own, deadline + 3600))


def test_session_policy_and_duration_stay_within_sts_limits() -> None:
    """2,048 characters of session policy at most (IAM User Guide, "Session tagging operations"); it names
    no run id, so a run's long ids cannot make it grow. Durations: 15 minutes to one hour (role chaining)."""
    assert len(deadline_policy(4_102_444_800.0)) < 300
    assert duration_seconds(0, 10 * 3600) == SESSION_SECONDS_MAX == 3600
    assert duration_seconds(0, 120) == SESSION_SECONDS_MIN == 900
    assert duration_seconds(0, 2000) == 2000
    assert DEADLINE_ALLOWANCE_SECONDS >= 300 + 60, "covers the runtime's final uploads (AIRLAUNCH_S3_RETRY_SECONDS)"
