"""The messages that cross between Airflow, the launcher Lambda and the task runtime.

Every side imports this module and nothing of each other's. It depends on the standard
library only, so the task runtime stays small. Each message is a frozen dataclass with
``to_dict``/``from_dict``; ``from_dict`` validates and raises :class:`InvalidRequest`
naming the offending field, so a bad message fails where it enters, not deep inside.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

PROTOCOL_VERSION = 1

# Airflow's own id alphabets (run ids may also hold ':', '+' and '~'); '/' is never allowed,
# so an id can never add a level to an S3 key, and '..' is refused outright.
_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+~-]{0,249}$")
_TASK_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_RESERVED_ENV_PREFIXES = ("AIRLAUNCH_", "AWS_")

MAX_PARAMS_BYTES = 128 * 1024
MAX_CPU = 16.0
MAX_MEMORY_MIB = 120 * 1024
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600

PARAMS_FILE = "params.yaml"
RESULT_FILE = "result.json"
NOTEBOOK_FILE = "output.ipynb"
LOG_FILE = "log.txt"
STATUS_FILE = "status.json"

# Environment the launcher gives every task container (read by the task runtime).
ENV_BUCKET = "AIRLAUNCH_BUCKET"
ENV_PREFIX = "AIRLAUNCH_PREFIX"
ENV_EXECUTION_ID = "AIRLAUNCH_EXECUTION_ID"
ENV_TIMEOUT_SECONDS = "AIRLAUNCH_TIMEOUT_SECONDS"
# On ECS: credentials for the task's own run prefix only (JSON: AccessKeyId, SecretAccessKey,
# SessionToken, Expiration, RoleArn), which the runtime renews by assuming RoleArn again.
ENV_RUN_CREDENTIALS = "AIRLAUNCH_RUN_CREDENTIALS"
# Environment the task runtime gives the task's own process.
ENV_PARAMS_FILE = "AIRLAUNCH_PARAMS_FILE"
ENV_RESULT_FILE = "AIRLAUNCH_RESULT_FILE"


class InvalidRequest(ValueError):
    """A message broke the protocol; ``field`` names the part that is wrong."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


def _require(data: Any, field_name: str, kind: type | tuple[type, ...]) -> Any:
    if isinstance(data, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise InvalidRequest(field_name, f"expected {_kind_name(kind)}, got a boolean")
    if not isinstance(data, kind):
        raise InvalidRequest(field_name, f"expected {_kind_name(kind)}, got {type(data).__name__}")
    return data


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _check_keys(data: dict[str, Any], field_name: str, allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidRequest(field_name, f"unknown field(s) {unknown}; allowed: {sorted(allowed)}")


def validate_id(value: Any, field_name: str) -> str:
    """Return ``value`` if it is a safe Airflow id for one S3 key segment."""
    _require(value, field_name, str)
    if "/" in value or ".." in value:
        raise InvalidRequest(field_name, f"{value!r} must not contain '/' or '..'")
    if not _ID_RE.match(value):
        raise InvalidRequest(
            field_name,
            f"{value!r} must be 1-250 characters of letters, digits and _.:+~- "
            "and must not start with '.', ':', '+', '~' or '-'",
        )
    return value


@dataclass(frozen=True)
class RunIdentity:
    """Which Airflow task try a launch belongs to; it alone decides the S3 prefix."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    try_number: int = 1

    def __post_init__(self) -> None:
        validate_id(self.dag_id, "identity.dag_id")
        validate_id(self.run_id, "identity.run_id")
        validate_id(self.task_id, "identity.task_id")
        _require(self.map_index, "identity.map_index", int)
        _require(self.try_number, "identity.try_number", int)
        if self.map_index < -1:
            raise InvalidRequest("identity.map_index", "must be -1 (not mapped) or >= 0")
        if self.try_number < 0:
            raise InvalidRequest("identity.try_number", "must be >= 0")

    @classmethod
    def from_dict(cls, data: Any) -> RunIdentity:
        _require(data, "identity", dict)
        _check_keys(data, "identity", {"dag_id", "run_id", "task_id", "map_index", "try_number"})
        for name in ("dag_id", "run_id", "task_id"):
            if name not in data:
                raise InvalidRequest(f"identity.{name}", "is required")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def execution_id(self) -> str:
        """Human-readable, unique per task try; given to the task as AIRLAUNCH_EXECUTION_ID."""
        return f"{self.dag_id}/{self.run_id}/{self.task_id}/{self.map_index}/{self.try_number}"

    @property
    def digest(self) -> str:
        """Short stable hash: names the container, so a second launch collides instead of duplicating."""
        return hashlib.sha256(self.execution_id.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Overrides:
    """What a caller may change of a catalog entry for one launch."""

    env: dict[str, str] = field(default_factory=dict)
    cpu: float | None = None
    memory_mib: int | None = None
    timeout_seconds: int | None = None

    def __post_init__(self) -> None:
        _require(self.env, "overrides.env", dict)
        for name, value in self.env.items():
            where = f"overrides.env.{name}"
            if not isinstance(name, str) or not _ENV_NAME_RE.match(name):
                raise InvalidRequest(where, "is not a valid environment variable name")
            if name.startswith(_RESERVED_ENV_PREFIXES):
                raise InvalidRequest(where, f"names starting with {_RESERVED_ENV_PREFIXES} are reserved")
            _require(value, where, str)
        if self.cpu is not None:
            _require(self.cpu, "overrides.cpu", (int, float))
            if not 0 < self.cpu <= MAX_CPU:
                raise InvalidRequest("overrides.cpu", f"must be in (0, {MAX_CPU}] vCPU")
        if self.memory_mib is not None:
            _require(self.memory_mib, "overrides.memory_mib", int)
            if not 16 <= self.memory_mib <= MAX_MEMORY_MIB:
                raise InvalidRequest("overrides.memory_mib", f"must be in [16, {MAX_MEMORY_MIB}] MiB")
        if self.timeout_seconds is not None:
            _require(self.timeout_seconds, "overrides.timeout_seconds", int)
            if not 1 <= self.timeout_seconds <= MAX_TIMEOUT_SECONDS:
                raise InvalidRequest("overrides.timeout_seconds", f"must be in [1, {MAX_TIMEOUT_SECONDS}]")

    @classmethod
    def from_dict(cls, data: Any) -> Overrides:
        if data is None:
            return cls()
        _require(data, "overrides", dict)
        _check_keys(data, "overrides", {"env", "cpu", "memory_mib", "timeout_seconds"})
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {})}


def check_params(params: Any) -> dict[str, Any]:
    """Params must be a JSON object of bounded size: they travel in a Lambda payload and a YAML file."""
    _require(params, "params", dict)
    try:
        encoded = json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest("params", f"must be JSON-serialisable: {exc}") from exc
    if not all(isinstance(k, str) for k in params):
        raise InvalidRequest("params", "top-level keys must be strings")
    if len(encoded.encode()) > MAX_PARAMS_BYTES:
        raise InvalidRequest(
            "params",
            f"{len(encoded.encode())} bytes encoded, over the {MAX_PARAMS_BYTES}-byte limit; "
            "pass large data by S3 key instead",
        )
    return params


@dataclass(frozen=True)
class LaunchRequest:
    """Start catalog task ``task`` for one Airflow task try, with these params."""

    task: str
    identity: RunIdentity
    params: dict[str, Any] = field(default_factory=dict)
    overrides: Overrides = field(default_factory=Overrides)

    def __post_init__(self) -> None:
        _require(self.task, "task", str)
        if not _TASK_NAME_RE.match(self.task):
            raise InvalidRequest("task", f"{self.task!r} is not a catalog task name (lower-case, digits, _ and -)")
        check_params(self.params)

    @classmethod
    def from_dict(cls, data: Any) -> LaunchRequest:
        _require(data, "request", dict)
        _check_keys(data, "request", {"task", "identity", "params", "overrides"})
        if "task" not in data:
            raise InvalidRequest("task", "is required")
        return cls(
            task=data["task"],
            identity=RunIdentity.from_dict(data.get("identity")),
            params=check_params(data.get("params", {})),
            overrides=Overrides.from_dict(data.get("overrides")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "identity": self.identity.to_dict(),
            "params": self.params,
            "overrides": self.overrides.to_dict(),
        }


@dataclass(frozen=True)
class ResultLayout:
    """Where one task try keeps its files: ``s3://<bucket>/<prefix>/<dag>/<run>/<task>/<map>/<try>/``."""

    bucket: str
    prefix: str

    @classmethod
    def for_identity(cls, bucket: str, root: str, identity: RunIdentity) -> ResultLayout:
        parts = [root.strip("/")] if root.strip("/") else []
        parts += [identity.dag_id, identity.run_id, identity.task_id]
        parts += [str(identity.map_index), str(identity.try_number)]
        return cls(bucket=bucket, prefix="/".join(parts) + "/")

    def key(self, name: str) -> str:
        return self.prefix + name

    @property
    def params_key(self) -> str:
        return self.key(PARAMS_FILE)

    @property
    def result_key(self) -> str:
        return self.key(RESULT_FILE)

    @property
    def notebook_key(self) -> str:
        return self.key(NOTEBOOK_FILE)

    @property
    def log_key(self) -> str:
        return self.key(LOG_FILE)

    @property
    def status_key(self) -> str:
        return self.key(STATUS_FILE)

    def uri(self, name: str = "") -> str:
        return f"s3://{self.bucket}/{self.key(name)}"


def run_prefix(root: str, dag_id: str, run_id: str) -> str:
    """The prefix under which all task tries of one DAG run live."""
    validate_id(dag_id, "dag_id")
    validate_id(run_id, "run_id")
    root = root.strip("/")
    return (f"{root}/" if root else "") + f"{dag_id}/{run_id}/"


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
    EXIT = "exit"  # the task ended by itself
    STOPPED = "stopped"  # SIGTERM from outside (stop action, Airflow cancel)
    TIMEOUT = "timeout"  # the catalog's or override's timeout_seconds ran out
    ERROR = "error"  # the runtime itself could not run the task


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


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
    version: int = PROTOCOL_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        data["reason"] = self.reason.value
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Any) -> Status:
        _require(data, "status", dict)
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
                version=data.get("version", PROTOCOL_VERSION),
            )
        except (KeyError, ValueError) as exc:
            raise InvalidRequest("status", f"malformed status.json: {exc!r}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> Status:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class Handle:
    """What ``launch`` returns: enough to describe, stop or watch the task later."""

    backend: str
    task_ref: str  # Docker container id or ECS task ARN
    bucket: str
    prefix: str
    launched: bool  # False when an earlier launch of the same identity was found instead

    @property
    def layout(self) -> ResultLayout:
        return ResultLayout(bucket=self.bucket, prefix=self.prefix)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Handle:
        _require(data, "handle", dict)
        _check_keys(data, "handle", {"backend", "task_ref", "bucket", "prefix", "launched"})
        try:
            handle = cls(**data)
        except TypeError as exc:
            raise InvalidRequest("handle", str(exc)) from exc
        _require(handle.prefix, "handle.prefix", str)
        if ".." in handle.prefix or handle.prefix.startswith("/"):
            raise InvalidRequest("handle.prefix", "must be a relative key prefix without '..'")
        return handle


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
        _require(data, "description", dict)
        status = data.get("status")
        return cls(
            state=TaskState(data["state"]),
            status=Status.from_dict(status) if status else None,
            detail=data.get("detail"),
        )
