"""Credentials that let an ECS task touch its own run's files and nothing else.

ECS gives a task its task role's credentials, and those cannot tell one run from another:
ECS sets no session tags on task roles and names the session after the ECS task id, which
the S3 layout does not contain. So the launcher, which knows which run it starts, assumes
the stack's files role (AIRLAUNCH_RUN_ROLE_ARN) with session tags that spell the run
(dag, run, task, map index, try; aws_names.RUN_TAG_KEYS). The role's policy builds the one
allowed prefix from those tags, so a task can read its params and write its results but
not another run's status.json. The tags are transitive: when the task renews the session
(role chaining allows one hour at most) by assuming the role again, they carry over and
cannot be changed. The credentials reach the task in its container environment
(protocol.ENV_RUN_CREDENTIALS), which RunTask's caller and ``ecs:DescribeTasks`` can see.
"""

from __future__ import annotations

import json
from typing import Any

from airlaunch.aws_names import RUN_TAG_KEYS, run_session_tags
from airlaunch.protocol import RunIdentity

SESSION_SECONDS = 3600  # the longest a chained role session may last


def session_name(identity: RunIdentity) -> str:
    return f"al-{identity.digest}"


def mint(sts: Any, role_arn: str, identity: RunIdentity) -> str:
    """The value of ENV_RUN_CREDENTIALS for one launch: a session of ``role_arn`` tagged with the run."""
    response = sts.assume_role(
        RoleArn=role_arn,
        RoleSessionName=session_name(identity),
        DurationSeconds=SESSION_SECONDS,
        Tags=run_session_tags(identity),
        TransitiveTagKeys=list(RUN_TAG_KEYS),
    )
    credentials = response["Credentials"]
    return json.dumps(
        {
            "AccessKeyId": credentials["AccessKeyId"],
            "SecretAccessKey": credentials["SecretAccessKey"],
            "SessionToken": credentials["SessionToken"],
            "Expiration": credentials["Expiration"].isoformat(),
            "RoleArn": role_arn,
            "SessionName": session_name(identity),
        }
    )
