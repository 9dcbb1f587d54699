"""The policy evaluator of the least-privilege test, on cases whose answer AWS's documentation settles.

Each case cites the part of the IAM User Guide it follows ("Policy evaluation logic",
"IAM JSON policy elements", "Condition operators", "Session policies", "Granting a user
permissions to pass a role", "Tagging AWS STS sessions").
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.iam.evaluator import Principal, Request, allowed

ACCOUNT = "111122223333"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/app"


def _allow(action: str | list[str], resource: str | list[str], **condition: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": action, "Resource": resource}
    if condition:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


def _role(*policies: dict[str, Any], **session: Any) -> Principal:
    return Principal(ROLE, policies, **session)


BUCKET_OBJECTS = "arn:aws:s3:::bucket/*"


def test_no_allow_is_an_implicit_deny() -> None:
    """Evaluation logic: by default all requests are implicitly denied."""
    assert not allowed(_role(_allow("s3:GetObject", BUCKET_OBJECTS)), Request("s3:PutObject", "arn:aws:s3:::bucket/k"))
    assert allowed(_role(_allow("s3:GetObject", BUCKET_OBJECTS)), Request("s3:GetObject", "arn:aws:s3:::bucket/k"))


def test_an_explicit_deny_overrides_any_allow() -> None:
    """Evaluation logic: an explicit deny in any policy overrides any allow."""
    deny = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "s3:*", "Resource": BUCKET_OBJECTS}]}
    assert not allowed(_role(_allow("s3:*", "*"), deny), Request("s3:GetObject", "arn:aws:s3:::bucket/k"))


def test_actions_match_case_insensitively_and_by_wildcard() -> None:
    """Action element: action names are case insensitive; * and ? are wildcards."""
    principal = _role(_allow("S3:get*", BUCKET_OBJECTS))
    assert allowed(principal, Request("s3:GetObject", "arn:aws:s3:::bucket/k"))
    assert not allowed(principal, Request("s3:PutObject", "arn:aws:s3:::bucket/k"))


def test_resource_arns_match_case_sensitively() -> None:
    """Resource element: "In the Resource element, the IAM user name is case sensitive" (user/Bob is not user/bob)."""
    principal = _role(_allow("iam:GetUser", f"arn:aws:iam::{ACCOUNT}:user/Bob"))
    assert allowed(principal, Request("iam:GetUser", f"arn:aws:iam::{ACCOUNT}:user/Bob"))
    assert not allowed(principal, Request("iam:GetUser", f"arn:aws:iam::{ACCOUNT}:user/bob"))


def test_a_wildcard_at_the_end_of_a_segment_reaches_past_slashes() -> None:
    """Resource element: * matches any combination of characters, ? exactly one."""
    principal = _role(_allow("s3:GetObject", "arn:aws:s3:::bucket/runs/?/*"))
    assert allowed(principal, Request("s3:GetObject", "arn:aws:s3:::bucket/runs/a/deep/key"))
    assert not allowed(principal, Request("s3:GetObject", "arn:aws:s3:::bucket/runs/ab/key"))


def test_session_policies_limit_the_role_they_do_not_grant() -> None:
    """Session policies: the session's permissions are the intersection of the role's and the session policy's."""
    session = _allow("s3:GetObject", "arn:aws:s3:::bucket/mine/*")
    principal = _role(_allow("s3:*", BUCKET_OBJECTS), session_policy=session)
    assert allowed(principal, Request("s3:GetObject", "arn:aws:s3:::bucket/mine/k"))
    assert not allowed(principal, Request("s3:GetObject", "arn:aws:s3:::bucket/other/k"))
    assert not allowed(principal, Request("s3:PutObject", "arn:aws:s3:::bucket/mine/k"))
    wider = _role(_allow("s3:GetObject", "arn:aws:s3:::bucket/mine/*"), session_policy=_allow("s3:*", "*"))
    assert not allowed(wider, Request("s3:PutObject", "arn:aws:s3:::bucket/mine/k"))


def test_principal_tag_variables_scope_the_resource() -> None:
    """Policy variables: ${aws:PrincipalTag/key} is replaced by the session tag's value before matching."""
    policy = _allow("s3:PutObject", "arn:aws:s3:::bucket/runs/${aws:PrincipalTag/run}/*")
    principal = _role(policy, session_tags={"run": "r1"})
    assert allowed(principal, Request("s3:PutObject", "arn:aws:s3:::bucket/runs/r1/status.json"))
    assert not allowed(principal, Request("s3:PutObject", "arn:aws:s3:::bucket/runs/r2/status.json"))
    assert not allowed(_role(policy), Request("s3:PutObject", "arn:aws:s3:::bucket/runs/r1/status.json"))


def test_a_condition_on_a_missing_key_does_not_match() -> None:
    """Condition element: if the key is not present in the request context, the values do not match."""
    principal = _role(_allow("ecs:RunTask", "*", ArnEquals={"ecs:cluster": "arn:aws:ecs:eu-west-1:1:cluster/a"}))
    assert not allowed(principal, Request("ecs:RunTask", "arn:aws:ecs:eu-west-1:1:task-definition/f:1"))
    context = {"ecs:cluster": "arn:aws:ecs:eu-west-1:1:cluster/a"}
    assert allowed(principal, Request("ecs:RunTask", "arn:aws:ecs:eu-west-1:1:task-definition/f:1", context))
    other = {"ecs:cluster": "arn:aws:ecs:eu-west-1:1:cluster/b"}
    assert not allowed(principal, Request("ecs:RunTask", "arn:aws:ecs:eu-west-1:1:task-definition/f:1", other))


def test_string_like_matches_with_wildcards_case_sensitively() -> None:
    """Condition operators: StringLike is a case-sensitive match with * and ? wildcards."""
    principal = _role(_allow("s3:ListBucket", "arn:aws:s3:::bucket", StringLike={"s3:prefix": "runs/*"}))
    assert allowed(principal, Request("s3:ListBucket", "arn:aws:s3:::bucket", {"s3:prefix": "runs/dag/"}))
    assert not allowed(principal, Request("s3:ListBucket", "arn:aws:s3:::bucket", {"s3:prefix": "RUNS/dag/"}))
    assert not allowed(principal, Request("s3:ListBucket", "arn:aws:s3:::bucket", {"s3:prefix": "other/"}))


def test_for_all_values_is_true_when_the_key_is_absent() -> None:
    """Condition operators: ForAllValues returns true when the request has no value for the key."""
    condition = {"ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}}
    principal = _role(_allow("ecs:TagResource", "*", **condition))
    assert allowed(principal, Request("ecs:TagResource", "arn:aws:ecs:eu-west-1:1:task/c/t"))
    assert allowed(principal, Request("ecs:TagResource", "arn:aws:ecs:eu-west-1:1:task/c/t", {"aws:TagKeys": ["team"]}))
    bad = {"aws:TagKeys": ["team", "owner"]}
    assert not allowed(principal, Request("ecs:TagResource", "arn:aws:ecs:eu-west-1:1:task/c/t", bad))


def test_pass_role_needs_the_role_and_the_service() -> None:
    """Passing a role: iam:PassRole on the role's ARN, here limited by iam:PassedToService."""
    task_role = f"arn:aws:iam::{ACCOUNT}:role/task"
    policy = _allow("iam:PassRole", task_role, StringEquals={"iam:PassedToService": "ecs-tasks.amazonaws.com"})
    principal = _role(policy)
    assert allowed(principal, Request("iam:PassRole", task_role, {"iam:PassedToService": "ecs-tasks.amazonaws.com"}))
    assert not allowed(principal, Request("iam:PassRole", task_role, {"iam:PassedToService": "ec2.amazonaws.com"}))
    admin = f"arn:aws:iam::{ACCOUNT}:role/admin"
    assert not allowed(principal, Request("iam:PassRole", admin, {"iam:PassedToService": "ecs-tasks.amazonaws.com"}))


def test_a_bucket_policy_deny_applies_to_every_principal() -> None:
    """Resource-based policies: a Deny in the bucket policy overrides the caller's Allow (aws:SecureTransport)."""
    bucket_policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                     "Resource": BUCKET_OBJECTS, "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}  # fmt: skip
    principal = _role(_allow("s3:GetObject", BUCKET_OBJECTS))
    https = Request("s3:GetObject", "arn:aws:s3:::bucket/k", {}, bucket_policy, ACCOUNT)
    http = Request("s3:GetObject", "arn:aws:s3:::bucket/k", {"aws:SecureTransport": "false"}, bucket_policy, ACCOUNT)
    assert allowed(principal, https) and not allowed(principal, http)


def test_assuming_a_role_needs_its_trust_policy_even_in_the_same_account() -> None:
    """Roles: the trust policy must allow the caller; naming the account root delegates to the caller's own policy."""
    target = f"arn:aws:iam::{ACCOUNT}:role/target"
    names_caller = _trust({"AWS": ROLE})
    names_root = _trust({"AWS": f"arn:aws:iam::{ACCOUNT}:root"})
    nobody = _trust({"Service": "ecs-tasks.amazonaws.com"})
    without_grant = _role(_allow("s3:GetObject", "*"))
    with_grant = _role(_allow("sts:AssumeRole", target))
    assert allowed(without_grant, Request("sts:AssumeRole", target, {}, names_caller, ACCOUNT))
    assert not allowed(without_grant, Request("sts:AssumeRole", target, {}, names_root, ACCOUNT))
    assert allowed(with_grant, Request("sts:AssumeRole", target, {}, names_root, ACCOUNT))
    assert not allowed(with_grant, Request("sts:AssumeRole", target, {}, nobody, ACCOUNT))


def _trust(principal: dict[str, str]) -> dict[str, Any]:
    statement = {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}
    return {"Version": "2012-10-17", "Statement": [statement]}


@pytest.mark.parametrize("value", ["runs/a", "runs/a/b"])
def test_the_evaluator_answers_the_same_each_time(value: str) -> None:
    """No state leaks between evaluations (principalmapper caches compiled patterns)."""
    principal = _role(_allow("s3:GetObject", "arn:aws:s3:::bucket/runs/a*"))
    answers = {allowed(principal, Request("s3:GetObject", f"arn:aws:s3:::bucket/{value}")) for _ in range(3)}
    assert answers == {True}
