"""``make smoke``: one diagnostic task through the deployed launcher, end to end, each step timed.

It does what Airflow does, with the same clients: invoke the launcher (ping, then launch the
catalog's ``diagnostic`` task with ``action: echo``), wait for status.json in S3, read the
result and the log back. On AWS it assumes the stack's Airflow role first, so a green smoke
also proves that role is enough; locally it runs against LocalStack and the launcher under
AWS's Runtime Interface Emulator with the Docker backend.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from airlaunch.aws_errors import body_if_present
from airlaunch.deploy.errors import DeployError, aws_reason
from airlaunch.protocol import (
    Call,
    CallFailed,
    DescribeCall,
    Handle,
    InvalidRequest,
    LaunchCall,
    LaunchRequest,
    PingCall,
    RunIdentity,
    Status,
    TaskState,
    read_reply,
    status_of,
)

SMOKE_DAG = "airlaunch_smoke"
R = TypeVar("R")


@dataclass
class SmokeRun:
    steps: list[tuple[str, float]] = field(default_factory=list)
    handle: Handle | None = None
    status: Status | None = None
    result: Any = None
    log: str = ""
    peek: dict[str, Any] = field(default_factory=dict)  # what the command could see of the run session

    def report(self) -> str:
        width = max(len(name) for name, _ in self.steps)
        return "\n".join(f"  {name.ljust(width)}  {seconds:7.2f} s" for name, seconds in self.steps)


def _timed(run: SmokeRun, name: str, step: Callable[[], Any]) -> Any:
    started = time.monotonic()
    value = step()
    run.steps.append((name, time.monotonic() - started))
    return value


def _invoke(lam: Any, function: str, call: Call[R]) -> R:
    try:
        response = lam.invoke(FunctionName=function, Payload=call.to_payload())
    except (ClientError, BotoCoreError) as exc:
        raise DeployError(
            f"invoking the launcher {function} failed: {aws_reason(exc)}; check the function exists "
            "(LauncherFunctionName output) and that this identity may invoke it"
        ) from exc
    try:
        return read_reply(call, response["Payload"].read(), response.get("FunctionError"))
    except (CallFailed, InvalidRequest) as exc:
        raise DeployError(f"the launcher {function} answered {call.action} with an error: {exc}") from exc


def smoke(lam: Any, s3: Any, function: str, timeout: float = 600, poll: float = 1.0) -> SmokeRun:
    """Run the diagnostic task once; DeployError naming the step that failed."""
    run = SmokeRun()
    ping = _timed(run, "ping the launcher", lambda: _invoke(lam, function, PingCall()))
    if "diagnostic" not in ping.tasks:
        raise DeployError(f"the launcher's catalog has no 'diagnostic' task ({list(ping.tasks)}): redeploy it")
    identity = RunIdentity(dag_id=SMOKE_DAG, run_id=f"smoke__{time.strftime('%Y%m%dT%H%M%S')}", task_id="diagnostic")
    request = LaunchRequest(task="diagnostic", identity=identity, params={"action": "echo", "message": "smoke"})
    launched = _timed(run, "launch (Lambda)", lambda: _invoke(lam, function, LaunchCall(request)))
    run.handle = handle = launched.handle

    def wait_status() -> Status:
        deadline = time.monotonic() + timeout
        next_describe = time.monotonic() + 30  # as the trigger does: is the container still there?
        while time.monotonic() < deadline:
            status = status_of(_read(s3, handle.bucket, handle.layout.status_key), handle.layout)
            if status is not None:
                return status
            if time.monotonic() > next_describe:
                next_describe += 30
                described = _invoke(lam, function, DescribeCall(handle)).description
                if described.state is TaskState.LOST:
                    raise DeployError(f"the task was lost: {described.detail}")
            time.sleep(poll)
        raise DeployError(
            f"no status.json at {handle.layout.uri('status.json')} after {timeout:.0f} s: the task did not finish. "
            "On AWS look at the ECS task's stopped reason (CannotPullContainerError: the subnets cannot reach ECR) "
            "and its log group /airlaunch/<stack>/tasks/diagnostic"
        )

    run.status = status = _timed(run, "container ran, status.json", wait_status)
    if status.state.value != "succeeded":
        raise DeployError(f"the diagnostic task {status.state.value}: {status.error}; log tail: {status.log_tail}")
    result = _timed(run, "read result.json", lambda: _read(s3, handle.bucket, status.result_keys["result"]))
    run.result = json.loads(result or b"null")
    if not isinstance(run.result, dict) or run.result.get("echo") != "smoke":
        raise DeployError(f"the diagnostic task's result is {run.result!r}, not its echo")
    log = _timed(run, "read log.txt", lambda: _read(s3, handle.bucket, status.result_keys["log"]))
    run.log = (log or b"").decode("utf-8", "replace")
    if handle.backend == "ecs":  # ECS's STOPPED event, through the stack's EventBridge rule, reached the launcher
        _timed(run, "ECS's stopped event (ecs.json)", lambda: _wait_for(s3, handle.bucket, handle.layout.ecs_times_key))
    run.peek = _timed(run, "the command sees no run session", lambda: _peek(lam, s3, function, timeout, poll))
    return run


def _wait_for(s3: Any, bucket: str, key: str, timeout: float = 120) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = _read(s3, bucket, key)
        if body is not None:
            return body
        time.sleep(1)
    raise DeployError(
        f"no s3://{bucket}/{key} {timeout:.0f} s after the task ended: the launcher heard nothing of ECS's STOPPED "
        "event; check the stack's TaskStoppedRule (EventBridge) and its failed-events queue"
    )


def _peek(lam: Any, s3: Any, function: str, timeout: float, poll: float) -> dict[str, Any]:
    """The diagnostic task's ``peek``: its command must find the run session neither in its own environment
    nor in the runtime's (/proc/1/environ); DeployError when it does."""
    identity = RunIdentity(dag_id=SMOKE_DAG, run_id=f"smoke__{time.strftime('%Y%m%dT%H%M%S')}", task_id="peek")
    request = LaunchRequest(task="diagnostic", identity=identity, params={"action": "peek"})
    handle = _invoke(lam, function, LaunchCall(request)).handle
    status = status_of(_wait_for(s3, handle.bucket, handle.layout.status_key, timeout), handle.layout)
    assert status is not None  # _wait_for returns the body or raises
    result = json.loads(_read(s3, handle.bucket, status.result_keys.get("result", "")) or b"null")
    if status.state.value != "succeeded" or not isinstance(result, dict):
        raise DeployError(f"the diagnostic task's peek {status.state.value}: {status.error}")
    if result.get("own_environment_has_run_session") or "run session" in str(result.get("proc_1_environ")):
        raise DeployError(f"the task's command can read the runtime's run session: {result}")
    return result


def _read(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        return body_if_present(s3, bucket, key)
    except ClientError as exc:
        raise DeployError(f"reading s3://{bucket}/{key} failed: {aws_reason(exc)}") from exc
