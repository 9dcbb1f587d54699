"""LauncherHook: talk to the launcher Lambda and read a task's files in S3.

Endpoints, region and credentials come from one Airflow AWS connection, so LocalStack, the
local Runtime Interface Emulator and real AWS differ only there, e.g. locally::

    {"region_name": "us-east-1", "endpoint_url": "http://127.0.0.1:4566",
     "service_config": {"lambda": {"endpoint_url": "http://127.0.0.1:9000"}}}

Every call to the launcher is retried through transient failures (Lambda unreachable or
throttled, 5xx, a launch the platform may accept a moment later) for ``retry_seconds``
(``[airlaunch] retry_seconds``): a launch is idempotent per try, so a retried launch finds the
container an earlier attempt started instead of starting a second one. These launch
retries are apart from Airflow's task retries, which start a new try.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, TypeVar

from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook
from airflow.providers.amazon.aws.hooks.lambda_function import LambdaHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk.exceptions import AirflowException
from botocore.config import Config
from botocore.exceptions import ClientError

from airlaunch.aws_clients import ADAPTIVE_RETRIES
from airlaunch.aws_errors import body_if_present, error_code, is_missing
from airlaunch.protocol import (
    Action,
    Call,
    CallFailed,
    DescribeCall,
    Description,
    Handle,
    InvalidRequest,
    LaunchCall,
    LaunchRequest,
    ListCall,
    ListedTask,
    PingCall,
    PingReply,
    ReapCall,
    ReapReply,
    ResultLayout,
    RunIdentity,
    Status,
    StopCall,
    read_reply,
    status_of,
)
from airlaunch.providers.airflow.hooks.retry import aretrying, retrying
from airlaunch.providers.airflow.settings import AirflowSettings
from airlaunch.providers.airflow.triggerer import TriggererLoop, requested_region

R = TypeVar("R")

# botocore retries a few attempts itself (adaptive mode: client-side rate limiting when Lambda
# throttles a large fan-out); the hook's own policy counts seconds on top of that.
CLIENT_CONFIG = ADAPTIVE_RETRIES.merge(Config(retries={"mode": "adaptive", "max_attempts": 3}, read_timeout=130))


class LauncherError(AirflowException):
    """The launcher refused a request or failed; the message says why."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def launched_message(task: str, handle: Handle) -> str:
    if handle.cached_from:  # nothing was started: the result cache served the try (docs/cache.md)
        where = f"the result of s3://{handle.bucket}/{handle.cached_from}; results at {handle.layout.uri()}"
        return f"{task}: served from the result cache, no container ran: {where}"
    if not handle.launched and not handle.task_ref:  # the launcher found this try's status.json: nothing runs
        where = handle.layout.uri()
        return f"{task}: this try already ended (its status.json exists), nothing launched; results at {where}"
    verb = "launched" if handle.launched else "found already running"
    return f"{verb} {task} ({handle.backend} {handle.task_ref}); results at {handle.layout.uri()}"


def reply_or_raise(call: Call[R], payload: bytes, function_error: str | None) -> R:
    """``call``'s typed reply from the launcher's answer, or LauncherError in the launcher's own words:
    retryable for Lambda's own failures and for refusals the launcher marks retryable, never for a
    reply that is malformed."""
    try:
        return read_reply(call, payload, function_error)
    except CallFailed as exc:
        raise LauncherError(str(exc), retryable=exc.retryable) from exc
    except InvalidRequest as exc:
        raise LauncherError(f"the launcher's answer to {call.action} is malformed: {exc}") from exc


class LauncherHook(LambdaHook):
    """Invokes the launcher, each of its calls typed (airlaunch.protocol's envelope), and reads results.

    Sync on a worker, async (``a``-prefixed) in the triggerer: launch, describe, stop (by handle,
    identity or both) and list; reap and ping sync only (no trigger needs them).
    """

    def __init__(
        self,
        *,
        function_name: str,
        aws_conn_id: str | None = "aws_default",
        retry_seconds: float | None = None,
        retry_max_backoff: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(aws_conn_id=aws_conn_id, **kwargs)
        self.function_name = function_name
        if retry_seconds is None or retry_max_backoff is None:
            settings = AirflowSettings()
            retry_seconds = settings.retry_seconds if retry_seconds is None else retry_seconds
            retry_max_backoff = settings.retry_max_backoff if retry_max_backoff is None else retry_max_backoff
        self.retry_seconds = retry_seconds
        self.retry_cap = retry_max_backoff

    @property
    def config(self) -> Config:
        """The connection's botocore config, with CLIENT_CONFIG's retries and timeouts unless it sets its own.

        A large fan-out invokes the launcher hundreds of times at once; Lambda throttles
        (TooManyRequestsException) are then retried with client-side rate limiting.
        """
        return CLIENT_CONFIG.merge(super().config)

    @cached_property
    def s3_hook(self) -> S3Hook:
        # the region this hook was asked for: self.region_name would read the connection (see shared_client)
        return S3Hook(aws_conn_id=self.aws_conn_id, region_name=requested_region(self), config=CLIENT_CONFIG)

    # -- sync (worker) ------------------------------------------------------------------------
    def call(self, call: Call[R], budget: float | None = None) -> R:
        """Invoke the launcher with ``call``; its reply, retried through transient failures for ``budget``
        seconds (``retry_seconds`` unless given; 0: one attempt)."""
        what = f"launcher {call.action}"
        for attempt in retrying(self.retry_seconds if budget is None else budget, self.retry_cap, what):
            with attempt:
                response = self.conn.invoke(
                    FunctionName=self.function_name, InvocationType="RequestResponse", Payload=call.to_payload()
                )
                return reply_or_raise(call, response["Payload"].read(), response.get("FunctionError"))
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def launch(self, request: LaunchRequest) -> Handle:
        return self.call(LaunchCall(request)).handle

    def describe(self, handle: Handle, budget: float | None = None) -> Description:
        return self.call(DescribeCall(handle), budget).description

    def stop(
        self,
        reason: str,
        *,
        handle: Handle | None = None,
        identity: RunIdentity | None = None,
        budget: float | None = None,
    ) -> Description:
        """Stop a try by its handle, or by its identity while its launch may still be in flight (or both)."""
        return self.call(StopCall(reason, handle, identity), budget).description

    def list_tasks(self, budget: float | None = None) -> tuple[ListedTask, ...]:
        return self.call(ListCall(), budget).tasks

    def reap(self) -> ReapReply:
        return self.call(ReapCall())

    def ping(self) -> PingReply:
        return self.call(PingCall())

    def read_status(self, layout: ResultLayout) -> Status | None:
        return status_of(self.read_bytes(layout.bucket, layout.status_key), layout)

    def read_bytes(self, bucket: str, key: str) -> bytes | None:
        for attempt in retrying(self.retry_seconds, self.retry_cap, f"reading s3://{bucket}/{key}"):
            with attempt:
                return body_if_present(self.s3_hook.conn, bucket, key)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    # -- async (triggerer) --------------------------------------------------------------------
    async def acall(self, call: Call[R], budget: float | None = None) -> R:
        """:meth:`call` in the triggerer's event loop, on a client shared by its triggers."""
        what = f"launcher {call.action}"
        async for attempt in aretrying(self.retry_seconds if budget is None else budget, self.retry_cap, what):
            with attempt:
                # Launches wait for their containers (behind one another in a fan-out): a stop or a describe
                # must not wait for a free connection behind them.
                client = await shared_client(self, pool="launch" if call.action is Action.LAUNCH else "")
                response = await client.invoke(
                    FunctionName=self.function_name, InvocationType="RequestResponse", Payload=call.to_payload()
                )
                async with response["Payload"] as stream:
                    payload = await stream.read()
                return reply_or_raise(call, payload, response.get("FunctionError"))
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def alaunch(self, request: LaunchRequest) -> Handle:
        return (await self.acall(LaunchCall(request))).handle

    async def adescribe(self, handle: Handle, budget: float | None = None) -> Description:
        return (await self.acall(DescribeCall(handle), budget)).description

    async def astop(
        self,
        reason: str,
        *,
        handle: Handle | None = None,
        identity: RunIdentity | None = None,
        budget: float | None = None,
    ) -> Description:
        return (await self.acall(StopCall(reason, handle, identity), budget)).description

    async def alist_tasks(self, budget: float | None = None) -> tuple[ListedTask, ...]:
        return (await self.acall(ListCall(), budget)).tasks


async def shared_client(hook: AwsGenericHook, pool: str = "") -> Any:
    """The hook's aiobotocore client, shared by the running loop's triggers (``TriggererLoop.client``)."""
    return await TriggererLoop.current().client(hook, pool)


async def aget(client: Any, bucket: str, key: str, byte_range: str | None = None) -> tuple[bytes, str] | None:
    """GET one key (or a byte range of it) with an aiobotocore S3 client: its bytes and Content-Range;
    None when it does not exist (yet) or the range starts past its end."""
    kwargs = {"Range": byte_range} if byte_range else {}
    try:
        response = await client.get_object(Bucket=bucket, Key=key, **kwargs)
    except ClientError as exc:
        if is_missing(exc) or error_code(exc) in ("InvalidRange", "416"):
            return None
        raise
    async with response["Body"] as stream:
        data: bytes = await stream.read()
    return data, response.get("ContentRange") or ""


async def aread(client: Any, bucket: str, key: str, byte_range: str | None = None) -> bytes | None:
    """GET one key with an aiobotocore S3 client; None when it does not exist (yet)."""
    got = await aget(client, bucket, key, byte_range)
    return got[0] if got is not None else None
