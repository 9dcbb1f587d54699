"""Record every AWS API call made in this process, with the credentials that signed it.

botocore event hooks on every botocore (and aiobotocore) session created while recording:
``before-parameter-build`` keeps the caller's parameters, ``before-call`` records the call
with the access key of the client's credentials, the time on the recorder's clock (a test may
run hours of a task on a clock of its own) and the transitive session tags the signing session
carries, ``after-call.sts.AssumeRole`` keeps which access key now stands for which role session,
with its tags and session policy (so the calls made with it are judged as that session). boto3's
default session is reset so module-level ``boto3.client`` calls are seen too. The task runtime's own
S3 client (airlaunch.runtime.signed_s3, no botocore) is recorded the same way, each request with the
access key it is signed with.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.session

from airlaunch.runtime import signed_s3
from airlaunch.runtime.signed_s3 import SignedS3


@dataclass
class Call:
    service: str  # the IAM prefix (signing name): s3, ecs, sts, lambda, sqs...
    operation: str  # e.g. PutObject
    params: dict[str, Any]
    access_key: str
    response: dict[str, Any] | None = None
    error_code: str = ""  # AWS's error code when the call failed (NoSuchKey...)
    at: float = 0.0  # epoch seconds on the recorder's clock: the request's aws:CurrentTime
    inherited_tags: dict[str, str] = field(default_factory=dict)  # transitive tags of the signing session

    def __str__(self) -> str:
        return f"{self.service}.{self.operation}"


@dataclass
class Session:
    """A role session some recorded AssumeRole started: what its access key stands for."""

    role_arn: str
    caller_key: str
    tags: dict[str, str]  # its principal tags: those passed, and those inherited through a role chain
    transitive: list[str]
    policy: dict[str, Any] | None  # its session policy (AssumeRole's Policy)


@dataclass
class Recorder:
    calls: list[Call] = field(default_factory=list)
    sessions: dict[str, Session] = field(default_factory=dict)  # access key -> session
    clock: Callable[[], float] = time.time

    def transitive_tags(self, key: str) -> dict[str, str]:
        """The tags a session signed with ``key`` passes on to a session it starts (role chaining): its own
        transitive ones and those it inherited, which it cannot change (IAM User Guide, "Chaining roles
        with session tags")."""
        session = self.sessions.get(key)
        if session is None:
            return {}
        return {k: v for k, v in session.tags.items() if k in session.transitive}

    def _params(self, params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        context["airlaunch_params"] = copy.deepcopy({k: v for k, v in params.items() if k != "Body"})

    def _before_call(self, model: Any, context: dict[str, Any], request_signer: Any, **kwargs: Any) -> None:
        credentials = request_signer._credentials
        key = getattr(credentials, "access_key", None) or "anonymous"
        call = Call(model.service_model.signing_name, model.name, context.get("airlaunch_params", {}), key)
        call.at, call.inherited_tags = self.clock(), self.transitive_tags(key)
        context["airlaunch_call"] = call
        self.calls.append(call)

    def _after_call(self, parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        call: Call | None = context.get("airlaunch_call")
        if call is not None and isinstance(parsed, dict):
            call.error_code = str(parsed.get("Error", {}).get("Code", ""))

    def _assumed(self, parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        call: Call | None = context.get("airlaunch_call")
        if call is None or "Credentials" not in parsed:
            return
        call.response = parsed
        params = call.params
        self.sessions[parsed["Credentials"]["AccessKeyId"]] = Session(
            role_arn=params["RoleArn"],
            caller_key=call.access_key,
            tags={**call.inherited_tags, **{t["Key"]: t["Value"] for t in params.get("Tags", [])}},
            transitive=[*call.inherited_tags, *params.get("TransitiveTagKeys", [])],
            policy=json.loads(params["Policy"]) if params.get("Policy") else None,
        )

    def signed_request(self, client: SignedS3, method: str, bucket: str, key: str) -> Call:
        """A request of the runtime's own S3 client, recorded as botocore's are (before it is sent)."""
        operation = {"GET": "GetObject", "PUT": "PutObject"}[method]
        signing_key = client.credentials().access_key  # renews first where due, as signing does
        call = Call("s3", operation, {"Bucket": bucket, "Key": key}, signing_key)
        call.at, call.inherited_tags = self.clock(), self.transitive_tags(signing_key)
        self.calls.append(call)
        return call

    def register(self, session: botocore.session.Session) -> None:
        session.register("before-parameter-build", self._params)
        session.register("before-call", self._before_call)
        session.register("after-call", self._after_call)
        session.register("after-call.sts.AssumeRole", self._assumed)


@contextmanager
def recording() -> Iterator[Recorder]:
    """Record the calls of every botocore session created inside the block, and the runtime's own S3 client's."""
    recorder = Recorder()
    original = botocore.session.Session.__init__
    original_send = SignedS3._send

    def send(self: SignedS3, method: str, bucket: str, key: str, body: bytes, extra: dict[str, str]) -> Any:
        call = recorder.signed_request(self, method, bucket, key)
        status, headers, data = original_send(self, method, bucket, key, body, extra)
        if status >= 300:
            call.error_code = signed_s3.error_of(status, data, call.operation).response["Error"]["Code"]
        return status, headers, data

    def init(self: botocore.session.Session, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        recorder.register(self)

    botocore.session.Session.__init__ = init  # type: ignore[method-assign]
    SignedS3._send = send  # type: ignore[method-assign]
    previous_default = boto3.DEFAULT_SESSION
    boto3.DEFAULT_SESSION = None
    try:
        yield recorder
    finally:
        botocore.session.Session.__init__ = original  # type: ignore[method-assign]
        SignedS3._send = original_send  # type: ignore[method-assign]
        boto3.DEFAULT_SESSION = previous_default
