"""The launcher's calls: what Airflow (or make smoke, the reaper's schedule, the local pool) asks the
launcher Lambda, and how a caller reads the answer. The one place that spells the envelope.

On the wire (the Lambda payload, JSON)::

    {"action": "launch", "request": LaunchRequest}
    {"action": "describe", "handle": Handle}
    {"action": "stop", "reason": str, "handle": Handle, "identity": RunIdentity}  # handle, identity or both
    {"action": "list"}    {"action": "reap"}    {"action": "ping"}

answered as :mod:`airlaunch.protocol.replies` says. ECS's task state change events reach the same
function with no ``action``: they are no call (airlaunch.launcher.platform_events parses them).

Guarantees:

* :func:`parse_call` takes an event apart before anything acts on it and refuses with
  :class:`InvalidRequest` naming the field: ``event`` (not an object, or a field no call of
  that action has), ``action`` (none of :class:`Action`), or the call's own (``handle.prefix``,
  ``identity.try_number``, ``reason``).
* ``to_event`` writes the JSON above, which launchers and Airflow of every version so far
  understand; a stop without ``reason`` (older callers) still parses, with a default one.
* :func:`read_reply` gives the call's own typed reply, or raises :class:`CallFailed` (the
  launcher refused: retryable when it says so; Lambda's own error shape, the handler raised or
  timed out: retryable, since every action is idempotent), or :class:`InvalidRequest` naming
  what is off in a reply that is neither.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

from airlaunch.protocol.checks import InvalidRequest, check_keys, require
from airlaunch.protocol.identity import RunIdentity
from airlaunch.protocol.replies import (
    CallFailed,
    DescribeReply,
    LaunchReply,
    ListReply,
    PingReply,
    ReapReply,
    StopReply,
    refusal_of,
)
from airlaunch.protocol.requests import Handle, LaunchRequest

R = TypeVar("R")
DEFAULT_STOP_REASON = "stop requested"


class Action(StrEnum):
    LAUNCH = "launch"  # start a try's container, or find the one it has; never wait for it
    DESCRIBE = "describe"  # a try's state (recording an end the platform reports)
    STOP = "stop"  # stop a try, by its handle or its identity (a launch may still be in flight)
    LIST = "list"  # the live tasks (the orphan sweep)
    REAP = "reap"  # stop tasks long past their timeout; on ECS, handle failed events again
    PING = "ping"  # readiness


class Call(Generic[R]):
    """One call of the launcher; ``R`` is the reply it gets."""

    action: ClassVar[Action]

    def fields(self) -> dict[str, Any]:
        """The call's own fields on the wire, besides ``action``."""
        return {}

    def to_event(self) -> dict[str, Any]:
        return {"action": self.action.value, **self.fields()}

    def to_payload(self) -> bytes:
        return json.dumps(self.to_event()).encode()

    def reply_of(self, data: Any) -> R:
        """This call's reply from an ``ok`` answer (InvalidRequest naming what is off)."""
        raise NotImplementedError


@dataclass(frozen=True)
class LaunchCall(Call[LaunchReply]):
    request: LaunchRequest
    action: ClassVar[Action] = Action.LAUNCH

    def fields(self) -> dict[str, Any]:
        return {"request": self.request.to_dict()}

    def reply_of(self, data: Any) -> LaunchReply:
        return LaunchReply.from_dict(data)

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> LaunchCall:
        return cls(LaunchRequest.from_dict(event.get("request")))


@dataclass(frozen=True)
class DescribeCall(Call[DescribeReply]):
    handle: Handle
    action: ClassVar[Action] = Action.DESCRIBE

    def fields(self) -> dict[str, Any]:
        return {"handle": self.handle.to_dict()}

    def reply_of(self, data: Any) -> DescribeReply:
        return DescribeReply.from_dict(data)

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> DescribeCall:
        return cls(Handle.from_dict(event.get("handle")))


@dataclass(frozen=True)
class StopCall(Call[StopReply]):
    """Stop a try: its handle's task, and with its identity whatever runs of it (a launch still in
    flight); with neither running, the launcher records the stop so that a later launch starts nothing."""

    reason: str = DEFAULT_STOP_REASON
    handle: Handle | None = None
    identity: RunIdentity | None = None
    action: ClassVar[Action] = Action.STOP

    def __post_init__(self) -> None:
        require(self.reason, "reason", str)
        if self.handle is None and self.identity is None:
            raise InvalidRequest("handle", "stop needs the handle or the identity of the try to stop")

    def fields(self) -> dict[str, Any]:
        data: dict[str, Any] = {"reason": self.reason}
        if self.handle is not None:
            data["handle"] = self.handle.to_dict()
        if self.identity is not None:
            data["identity"] = self.identity.to_dict()
        return data

    def reply_of(self, data: Any) -> StopReply:
        return StopReply.from_dict(data)

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> StopCall:
        handle, identity, reason = event.get("handle"), event.get("identity"), event.get("reason")
        return cls(
            reason=reason or DEFAULT_STOP_REASON,  # older callers may leave it out or empty
            handle=Handle.from_dict(handle) if handle is not None else None,
            identity=RunIdentity.from_dict(identity) if identity is not None else None,
        )


@dataclass(frozen=True)
class ListCall(Call[ListReply]):
    action: ClassVar[Action] = Action.LIST

    def reply_of(self, data: Any) -> ListReply:
        return ListReply.from_dict(data)

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> ListCall:
        return cls()


@dataclass(frozen=True)
class ReapCall(Call[ReapReply]):
    action: ClassVar[Action] = Action.REAP

    def reply_of(self, data: Any) -> ReapReply:
        return ReapReply.from_dict(data)

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> ReapCall:
        return cls()


@dataclass(frozen=True)
class PingCall(Call[PingReply]):
    action: ClassVar[Action] = Action.PING

    def reply_of(self, data: Any) -> PingReply:
        return PingReply.from_dict(data)

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> PingCall:
        return cls()


AnyCall = LaunchCall | DescribeCall | StopCall | ListCall | ReapCall | PingCall
_CALLS: dict[str, type[AnyCall]] = {
    call.action.value: call for call in (LaunchCall, DescribeCall, StopCall, ListCall, ReapCall, PingCall)
}
_FIELDS: dict[str, set[str]] = {
    Action.LAUNCH: {"request"},
    Action.DESCRIBE: {"handle"},
    Action.STOP: {"reason", "handle", "identity"},
}


def action_of(event: Any) -> Any:
    """The action an event names, as it was given (for logs, before the event is parsed); None if none."""
    return event.get("action") if isinstance(event, dict) else None


def parse_call(event: Any) -> AnyCall:
    """The call an event is; InvalidRequest naming the field when it is none (see the module's docstring)."""
    if not isinstance(event, dict):
        raise InvalidRequest("event", "the event must be a JSON object")
    action = action_of(event)
    call = _CALLS.get(action) if isinstance(action, str) else None
    if call is None:
        names = [a.value for a in Action]
        expected = f"{', '.join(names[:-1])} or {names[-1]}"
        raise InvalidRequest("action", f"unknown action {action!r}; expected {expected}")
    check_keys(event, "event", {"action"} | _FIELDS.get(call.action, set()))
    return call.from_event(event)


def parse_reply(call: Call[R], data: Any) -> R:
    """``call``'s reply from a decoded answer: CallFailed for a refusal, InvalidRequest if malformed."""
    refusal = refusal_of(data)
    if refusal is not None:
        raise CallFailed(str(refusal), refusal.retryable, refusal)
    return call.reply_of(data)


def read_reply(call: Call[R], payload: bytes, function_error: str | None = None) -> R:
    """``call``'s reply from Lambda's answer: its payload and ``FunctionError`` (see the module's docstring)."""
    try:
        data = json.loads(payload or b"null")
    except ValueError as exc:
        raise InvalidRequest("reply", f"the launcher answered with non-JSON: {payload[:200]!r}") from exc
    if function_error or (isinstance(data, dict) and "errorMessage" in data and "ok" not in data):
        # Lambda's error shape: the handler raised or timed out, or the runtime (the local pool's
        # PoolError) could not run it.
        kind = function_error or (data.get("errorType") if isinstance(data, dict) else None) or "error"
        message = data.get("errorMessage") if isinstance(data, dict) else data
        raise CallFailed(f"the launcher Lambda failed ({kind}): {message}", retryable=True)
    return parse_reply(call, data)
