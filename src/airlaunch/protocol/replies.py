"""The launcher's replies, one type per call, and the refusal every call may get instead.

On the wire a reply is ``{"ok": true, ...}`` with the call's own fields, or a refusal:
``{"ok": false, "error": {"type": str, "message": str, "field": str | null, "retryable": bool}}``.

Guarantees: ``to_dict`` writes exactly that JSON; ``from_dict`` parses it as strictly as a
request is parsed (unknown fields, missing ones and wrong types are refused with
:class:`InvalidRequest` naming the field, ``reply.handle.prefix``), and still takes the shapes
older launchers sent: a refusal without ``field`` or ``retryable``, a reap without
``failed_events``, a ping without ``catalog_error``. A refusal the launcher marks
``retryable`` stays retryable through :class:`CallFailed`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, TypeVar

from airlaunch.protocol.checks import InvalidRequest, check_keys, require
from airlaunch.protocol.layout import ResultLayout
from airlaunch.protocol.requests import Handle
from airlaunch.protocol.status import Description

T = TypeVar("T")


class ErrorKind(StrEnum):
    """Why the launcher refused a call (a refusal's ``type``)."""

    INVALID_REQUEST = "InvalidRequest"  # the call broke the protocol; ``field`` names what
    CATALOG_ERROR = "CatalogError"  # the task catalog cannot be read, or has no such task
    LAUNCH_ERROR = "LaunchError"  # the platform refused or failed; ``retryable`` when it may pass


@dataclass(frozen=True)
class Refusal:
    """``{"ok": false, "error": ...}``: the launcher refused the call, and nothing was started."""

    kind: str  # an ErrorKind; another string from a newer launcher is kept as it is
    message: str
    field: str | None = None
    retryable: bool = False

    @classmethod
    def invalid(cls, exc: InvalidRequest) -> Refusal:
        return cls(ErrorKind.INVALID_REQUEST, exc.message, exc.field)

    def to_dict(self) -> dict[str, Any]:
        error = {"type": str(self.kind), "message": self.message, "field": self.field, "retryable": self.retryable}
        return {"ok": False, "error": error}

    @classmethod
    def from_dict(cls, data: Any) -> Refusal:
        require(data, "reply", dict)
        check_keys(data, "reply", {"ok", "error"})
        error = require(data.get("error"), "reply.error", dict)
        check_keys(error, "reply.error", {"type", "message", "field", "retryable"})
        field = error.get("field")
        return cls(
            kind=_text(error, "type", "reply.error"),
            message=require(error.get("message"), "reply.error.message", str),
            field=require(field, "reply.error.field", str) if field is not None else None,
            retryable=require(error.get("retryable", False), "reply.error.retryable", bool),
        )

    def __str__(self) -> str:
        field = f" [{self.field}]" if self.field else ""
        return f"the launcher refused the request: {self.kind}{field}: {self.message}"


class CallFailed(Exception):
    """A call got no reply of its own: the launcher refused it (``refusal``), or Lambda reports that the
    handler failed or timed out (retryable: every action is idempotent, a launch by its try's identity)."""

    def __init__(self, message: str, retryable: bool, refusal: Refusal | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.refusal = refusal


def refusal_of(data: Any) -> Refusal | None:
    """The refusal a reply is, or None for an ``ok`` one (InvalidRequest when it is neither)."""
    require(data, "reply", dict)
    ok = data.get("ok")
    if ok is True:
        return None
    if ok is False:
        return Refusal.from_dict(data)
    raise InvalidRequest("reply.ok", f"expected true or false, got {ok!r}")


def _ok(data: Any, fields: set[str]) -> dict[str, Any]:
    """An ``ok`` reply with no fields but ``fields``."""
    if refusal_of(data) is not None:
        raise InvalidRequest("reply.ok", "expected true: this reply is a refusal")
    check_keys(data, "reply", fields | {"ok"})
    return dict(data)


def _text(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{where}.{key}", "is required and must be a non-empty string")
    return value


def _optional_text(data: dict[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    return None if value is None else require(value, f"{where}.{key}", str)


def _texts(value: Any, where: str) -> tuple[str, ...]:
    require(value, where, list)
    return tuple(require(item, f"{where}[{number}]", str) for number, item in enumerate(value))


def _within(where: str, parse: Callable[[], T]) -> T:
    """``parse()``, its refusal's field named from the reply down (``handle.prefix`` -> ``reply.handle.prefix``)."""
    try:
        return parse()
    except InvalidRequest as exc:
        raise InvalidRequest(f"{where}.{exc.field}", exc.message) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequest(where, f"malformed: {exc!r}") from exc


@dataclass(frozen=True)
class LaunchReply:
    handle: Handle

    def to_dict(self) -> dict[str, Any]:
        return {"ok": True, "handle": self.handle.to_dict()}

    @classmethod
    def from_dict(cls, data: Any) -> LaunchReply:
        fields = _ok(data, {"handle"})
        return cls(_within("reply", lambda: Handle.from_dict(fields.get("handle"))))


@dataclass(frozen=True)
class DescribeReply:
    """The try's state, with its status once it has finished (and recorded as the platform saw it end)."""

    description: Description

    def to_dict(self) -> dict[str, Any]:
        return {"ok": True, "description": self.description.to_dict()}

    @classmethod
    def from_dict(cls, data: Any) -> DescribeReply:
        fields = _ok(data, {"description"})
        return cls(_within("reply", lambda: Description.from_dict(fields.get("description"))))


@dataclass(frozen=True)
class StopReply(DescribeReply):
    """The stopped try's status: its runtime's, or the one the launcher wrote on its behalf."""

    @classmethod
    def from_dict(cls, data: Any) -> StopReply:
        return cls(DescribeReply.from_dict(data).description)


@dataclass(frozen=True)
class ListedTask:
    """A task the launcher's platform runs, and where its try keeps its files (for the orphan sweep)."""

    task_ref: str
    bucket: str
    prefix: str
    started_at: float | None = None  # epoch seconds, when the platform says it started

    @property
    def layout(self) -> ResultLayout:
        return ResultLayout(self.bucket, self.prefix)

    def to_dict(self) -> dict[str, Any]:
        return {"task_ref": self.task_ref, "bucket": self.bucket, "prefix": self.prefix, "started_at": self.started_at}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ListedTask:
        require(data, where, dict)
        check_keys(data, where, {"task_ref", "bucket", "prefix", "started_at"})
        for key in ("task_ref", "bucket", "prefix"):  # may be empty: a container that lost its labels
            if key not in data:
                raise InvalidRequest(f"{where}.{key}", "is required")
            require(data[key], f"{where}.{key}", str)
        started_at = data.get("started_at")
        return cls(
            task_ref=data["task_ref"],
            bucket=data["bucket"],
            prefix=data["prefix"],
            started_at=require(started_at, f"{where}.started_at", (int, float)) if started_at is not None else None,
        )


@dataclass(frozen=True)
class ListReply:
    tasks: tuple[ListedTask, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": True, "tasks": [task.to_dict() for task in self.tasks]}

    @classmethod
    def from_dict(cls, data: Any) -> ListReply:
        tasks = require(_ok(data, {"tasks"}).get("tasks"), "reply.tasks", list)
        return cls(tuple(ListedTask.from_dict(task, f"reply.tasks[{n}]") for n, task in enumerate(tasks)))


@dataclass(frozen=True)
class ReapReply:
    """The tasks stopped long past their timeout; on ECS, what became of the failed events handled again
    (airlaunch.launcher.failed_events: counts, ``{"queue": "none"}`` or ``{"error": ...}``)."""

    reaped: tuple[str, ...]
    failed_events: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ok": True, "reaped": list(self.reaped)}
        if self.failed_events is not None:
            data["failed_events"] = self.failed_events
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ReapReply:
        fields = _ok(data, {"reaped", "failed_events"})
        failed = fields.get("failed_events")
        return cls(
            reaped=_texts(fields.get("reaped"), "reply.reaped"),
            failed_events=require(failed, "reply.failed_events", dict) if failed is not None else None,
        )


@dataclass(frozen=True)
class PingReply:
    """Readiness: the handler and its backend are loaded; the catalog's tasks as it reads now (or why not)."""

    backend: str
    tasks: tuple[str, ...]
    catalog_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ok": True, "backend": self.backend, "tasks": list(self.tasks)}
        if self.catalog_error is not None:
            data["catalog_error"] = self.catalog_error
        return data

    @classmethod
    def from_dict(cls, data: Any) -> PingReply:
        fields = _ok(data, {"backend", "tasks", "catalog_error"})
        return cls(
            backend=_text(fields, "backend", "reply"),
            tasks=_texts(fields.get("tasks"), "reply.tasks"),
            catalog_error=_optional_text(fields, "catalog_error", "reply"),
        )


@dataclass(frozen=True)
class EventReply:
    """What the launcher made of a platform event (ECS's task stopped): ``ignored`` (why), ``recorded``
    (by its runtime or by the launcher, with the ``state`` and the launcher's ``error``), or
    ``started_again`` (the new task of a try that failed to start). Read by the failed-events
    redrive and the logs only; EventBridge discards it."""

    ignored: str | None = None
    recorded: str | None = None
    state: str | None = None
    error: str | None = None
    started_again: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": True, **{key: value for key, value in asdict(self).items() if value is not None}}

    @classmethod
    def from_dict(cls, data: Any) -> EventReply:
        fields = _ok(data, {"ignored", "recorded", "state", "error", "started_again"})
        return cls(**{key: _optional_text(fields, key, "reply") for key in fields if key != "ok"})


# The reply of a call the launcher answered (a refusal aside), and of an ECS event.
AnyReply = LaunchReply | DescribeReply | StopReply | ListReply | ReapReply | PingReply | EventReply
