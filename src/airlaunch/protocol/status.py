"""How a try ends and says so: status.json (:class:`Status`), stop.json, and the launcher's description.

Guarantees: status.json is the completion marker, written last and in one PUT, by the task runtime
or, for a container that ended without writing it, by the launcher on its behalf (``written_by``);
a status.json that cannot be read is refused with :class:`InvalidRequest` on field ``status``,
never taken for a success; its optional usage record never makes a finished try unreadable.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from airlaunch.protocol.checks import InvalidRequest, check_keys, parse_json, require
from airlaunch.protocol.layout import STATUS_FILE, ResultLayout
from airlaunch.protocol.telemetry import Usage

PROTOCOL_VERSION = 2
INLINE_RESULT_BYTES = 4096  # a result.json this small is copied into status.json (``Status.result_json``)


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class TaskState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LOST = "lost"  # the container is gone and left no status.json

    @property
    def finished(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.LOST)


class StopReason(StrEnum):
    """Why a try ended; ``Status.error`` says it in words."""

    EXIT = "exit"  # the task ended by itself
    STOPPED = "stopped"  # airlaunch stopped it on request (Airflow cancel, timeout in Airflow, a newer try)
    TIMEOUT = "timeout"  # the catalog's or override's timeout_seconds ran out
    ERROR = "error"  # the runtime itself could not run the task
    KILLED = "killed"  # a signal from outside airlaunch ended it (docker kill, kill -9)
    OOM = "oom"  # the kernel killed it at its memory limit
    PLATFORM = "platform"  # the platform ended it: engine restart, host shutdown, Spot, a failed start
    LOST = "lost"  # it vanished and nothing tells how


def _optional_usage(data: Any) -> Usage | None:
    """Usage is informational: a record this reader cannot parse must not make a finished try unreadable."""
    try:
        return Usage.from_dict(data) if data else None
    except (InvalidRequest, TypeError):
        return None


@dataclass(frozen=True)
class Status:
    """Contents of status.json: the completion marker, written last and in one PUT."""

    state: TaskState
    exit_code: int | None
    reason: StopReason
    started_at: str
    ended_at: str
    execution_id: str
    error: str | None = None
    log_tail: list[str] = field(default_factory=list)
    result_keys: dict[str, str] = field(default_factory=dict)
    host: str = ""  # where it ran: the short Docker container id, else the hostname
    written_by: str = "runtime"  # "launcher": its container ended without writing it; "cache": served from the cache
    version: int = PROTOCOL_VERSION
    usage: Usage | None = None  # absent from status.json written before it existed
    # Served from the result cache (``written_by`` "cache"): the prefix of the try that computed the result
    # this try's files copy; no container ran. Absent otherwise, as in status.json written before the cache.
    cached_from: str | None = None
    # The runtime's: log.txt's size in bytes and its number of lines (each in log_tail when there are no more
    # than it holds), so that a reader that has shown that much, or can show log_tail, need not read log.txt.
    log_bytes: int | None = None
    log_lines: int | None = None
    # The runtime's: result.json's own text when it is at most INLINE_RESULT_BYTES, so that its reader need not
    # GET it (result.json is written all the same). Absent for a larger result, and from other writers.
    result_json: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        data["reason"] = self.reason.value
        for optional in ("usage", "cached_from", "log_bytes", "log_lines", "result_json"):
            if data[optional] is None:
                del data[optional]
        return data

    @property
    def log_is_in_tail(self) -> bool:
        """log_tail holds every line of log.txt (the runtime said how many lines it has)."""
        return self.log_lines is not None and self.log_lines <= len(self.log_tail)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Any) -> Status:
        require(data, "status", dict)
        try:
            return cls(
                state=TaskState(data["state"]),
                exit_code=data.get("exit_code"),
                reason=StopReason(data.get("reason", StopReason.EXIT)),
                started_at=data["started_at"],
                ended_at=data["ended_at"],
                execution_id=data.get("execution_id", ""),
                error=data.get("error"),
                log_tail=list(data.get("log_tail", [])),
                result_keys=dict(data.get("result_keys", {})),
                host=str(data.get("host", "")),
                written_by=str(data.get("written_by", "runtime")),
                version=data.get("version", PROTOCOL_VERSION),
                usage=_optional_usage(data.get("usage")),
                cached_from=str(data["cached_from"]) if data.get("cached_from") else None,
                log_bytes=_optional_int(data.get("log_bytes")),
                log_lines=_optional_int(data.get("log_lines")),
                result_json=data["result_json"] if isinstance(data.get("result_json"), str) else None,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidRequest("status", f"malformed status.json: {exc!r}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> Status:
        return cls.from_dict(parse_json(text, "status", "status.json"))


def _optional_int(value: Any) -> int | None:
    """An informational count: one this reader cannot parse is taken as absent."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def status_of(body: bytes | None, layout: ResultLayout) -> Status | None:
    """A try's status.json as read from its layout's status_key: None while there is none (``body`` None),
    else the status; InvalidRequest on field ``status``, naming the file's URI, when it cannot be read."""
    if body is None:
        return None
    try:
        return Status.from_json(body)
    except InvalidRequest as exc:
        raise InvalidRequest("status", f"{layout.uri(STATUS_FILE)}: {exc.message}") from exc


@dataclass(frozen=True)
class StopRequest:
    """Contents of stop.json: who asked airlaunch to stop a try, and why (read by the runtime on SIGTERM,
    so a stop airlaunch asked for is told apart from one the platform made)."""

    reason: str
    requested_at: str = field(default_factory=lambda: utcnow())

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> StopRequest:
        try:
            data = json.loads(text)
            return cls(reason=str(data["reason"]), requested_at=str(data.get("requested_at", "")))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidRequest("stop", f"malformed stop.json: {exc!r}") from exc


@dataclass(frozen=True)
class Description:
    """What ``describe`` returns: the state, and the status once the task has finished."""

    state: TaskState
    status: Status | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "status": self.status.to_dict() if self.status else None,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Description:
        require(data, "description", dict)
        check_keys(data, "description", {"state", "status", "detail"})
        state = data.get("state")
        if state not in set(TaskState):
            raise InvalidRequest("description.state", f"{state!r} is not one of {[s.value for s in TaskState]}")
        status, detail = data.get("status"), data.get("detail")
        try:
            parsed = Status.from_dict(status) if status is not None else None
        except InvalidRequest as exc:
            raise InvalidRequest(f"description.{exc.field}", exc.message) from exc
        return cls(
            state=TaskState(state),
            status=parsed,
            detail=require(detail, "description.detail", str) if detail is not None else None,
        )
