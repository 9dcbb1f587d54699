"""An IAM policy evaluator for tests: principalmapper's local evaluation, with two fixes of ours.

principalmapper (``local_check_authorization_full``) implements AWS's evaluation logic: explicit
Deny first (identity, resource and session policies), then the resource policy (for IAM roles
the trust policy must allow even in the same account), session policies as a limit, then an
Allow in the identity policies; conditions (String*, Arn*, Bool, Null, ForAllValues/ForAnyValue)
and policy variables. It is unmaintained, so:

* it imports ``collections.Mapping``, gone since Python 3.10: aliased before the import;
* it matches ARNs case-insensitively, while AWS matches the Resource element case-sensitively
  (IAM User Guide, "IAM JSON policy elements: Resource": the user name in the ARN is case
  sensitive; S3 keys are too): resources are matched case-sensitively here, actions still not.

Time is never the evaluator's own: principalmapper fills in aws:CurrentTime with the wall
clock when a request has none, so ``at`` gives a request the time it was made (a session
policy's DateLessThan deadline is judged at that moment, whatever the test's clock says).

tests/unit/test_policy_evaluator.py checks it on cases whose answer AWS's documentation settles.
"""

from __future__ import annotations

import collections
import collections.abc
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

for _name in ("Mapping", "MutableMapping", "Sequence", "Iterable"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))

from principalmapper.common import Node, Policy  # noqa: E402
from principalmapper.querying import local_policy_simulation as _simulation  # noqa: E402
from principalmapper.querying.query_interface import local_check_authorization_full  # noqa: E402


@lru_cache(maxsize=4096)
def _pattern(text: str, ignore_case: bool) -> re.Pattern[str]:
    escaped = re.escape(text).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(f"^{escaped}$", re.IGNORECASE if ignore_case else 0)


def _matches_after_expansion(string_to_check: str, pattern: str, condition_keys: Any = None) -> bool:
    """principalmapper's matcher with policy variables, case-sensitive for ARNs (resources), not for actions."""
    if condition_keys is not None:
        for key, value in condition_keys.items():
            pattern = pattern.replace("${" + key + "}", value if isinstance(value, str) else str(value))
    return _pattern(pattern, not pattern.startswith("arn:")).match(string_to_check) is not None


_simulation._matches_after_expansion = _matches_after_expansion


@dataclass(frozen=True)
class Principal:
    """Who makes a request: a role, its policies, and for a role session its session policy and tags."""

    arn: str  # the role's ARN
    policies: tuple[dict[str, Any], ...]
    session_policy: dict[str, Any] | None = None
    session_tags: dict[str, str] = field(default_factory=dict)
    session_name: str = "session"

    def node(self) -> Node:
        attached = [Policy(self.arn, f"policy{i}", p) for i, p in enumerate(self.policies)]
        trust = {"Version": "2012-10-17", "Statement": []}  # a role's own trust plays no part in its requests
        return Node(
            self.arn, f"AROATEST:{self.session_name}", attached, [], trust, None, 0, False, False, None, False, {}
        )


@dataclass(frozen=True)
class Request:
    """One authorization AWS makes: an action on a resource, with its request context."""

    action: str
    resource: str
    context: dict[str, Any] = field(default_factory=dict)
    resource_policy: dict[str, Any] | None = None  # bucket policy, role trust policy...
    resource_owner: str | None = None

    def __str__(self) -> str:
        keys = ", ".join(f"{k}={v}" for k, v in sorted(self.context.items()) if not k.startswith("aws:PrincipalTag"))
        return f"{self.action} on {self.resource}" + (f" [{keys}]" if keys else "")


def at(request: Request, epoch: float) -> Request:
    """The request as made at ``epoch`` (seconds): its aws:CurrentTime and aws:EpochTime."""
    moment = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return replace(request, context={**request.context, "aws:CurrentTime": moment, "aws:EpochTime": str(int(epoch))})


def allowed(principal: Principal, request: Request) -> bool:
    context = {**request.context, **{f"aws:PrincipalTag/{k}": v for k, v in principal.session_tags.items()}}
    context.setdefault("aws:SecureTransport", "true")
    owner = request.resource_owner or (principal.arn.split(":")[4] if request.resource_policy else None)
    return bool(
        local_check_authorization_full(
            principal.node(),
            request.action,
            request.resource,
            context,
            request.resource_policy,
            owner,
            None,
            principal.session_policy,
        )
    )
