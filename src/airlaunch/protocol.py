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
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

PROTOCOL_VERSION = 2

# Airflow's own id alphabets (run ids may also hold ':', '+' and '~'); '/' is never allowed,
# so an id can never add a level to an S3 key, and '..' is refused outright.
_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+~-]{0,249}$")
_TASK_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_TI_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
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
STOP_FILE = "stop.json"  # why the launcher stopped this try: written before it signals the container
LOG_PARTS_DIR = "log"  # the running log, uploaded in parts (log.txt holds it whole at the end)
TIMINGS_FILE = "timings.json"  # the moments Airflow's side and the launcher saw (Timeline), written at the end
ECS_TIMES_FILE = "ecs.json"  # ECS's own timestamps of the task (EcsTimes), written when ECS reports it stopped

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
    """Which Airflow task try a launch belongs to; it alone decides the S3 prefix.

    ``ti_id`` is Airflow's task-instance id, new for every try (a retry, a clear, a re-created
    DAG run that reuses a run id and restarts try numbers at 1). It is part of the prefix, so
    a try can never take another try's status.json or results for its own.
    """

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    try_number: int = 1
    ti_id: str = ""

    def __post_init__(self) -> None:
        validate_id(self.dag_id, "identity.dag_id")
        validate_id(self.run_id, "identity.run_id")
        validate_id(self.task_id, "identity.task_id")
        _require(self.map_index, "identity.map_index", int)
        _require(self.try_number, "identity.try_number", int)
        _require(self.ti_id, "identity.ti_id", str)
        if self.map_index < -1:
            raise InvalidRequest("identity.map_index", "must be -1 (not mapped) or >= 0")
        if self.try_number < 1:  # Airflow 3 numbers a task instance's tries from 1
            raise InvalidRequest("identity.try_number", "must be >= 1 (Airflow numbers tries from 1)")
        if self.ti_id and not _TI_ID_RE.match(self.ti_id):
            raise InvalidRequest("identity.ti_id", f"{self.ti_id!r} is not a task-instance id (a lower-case UUID)")

    @classmethod
    def from_dict(cls, data: Any) -> RunIdentity:
        _require(data, "identity", dict)
        _check_keys(data, "identity", {"dag_id", "run_id", "task_id", "map_index", "try_number", "ti_id"})
        for name in ("dag_id", "run_id", "task_id"):
            if name not in data:
                raise InvalidRequest(f"identity.{name}", "is required")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def try_key(self) -> str:
        """The try's S3 key segment: ``<try>-<ti_id>`` (``<try>`` alone without a ti_id)."""
        return f"{self.try_number}-{self.ti_id}" if self.ti_id else str(self.try_number)

    @property
    def execution_id(self) -> str:
        """Human-readable, unique per task try; given to the task as AIRLAUNCH_EXECUTION_ID."""
        return f"{self.dag_id}/{self.run_id}/{self.task_id}/{self.map_index}/{self.try_key}"

    @property
    def digest(self) -> str:
        """Short stable hash: names the container, so a second launch collides instead of duplicating."""
        return digest_of(self.execution_id)

    @property
    def slot(self) -> str:
        """Hash of the task instance across its tries (dag, run, task, map index): finds an earlier try."""
        key = f"{self.dag_id}/{self.run_id}/{self.task_id}/{self.map_index}"
        return hashlib.sha256(key.encode()).hexdigest()[:32]


def digest_of(execution_id: str) -> str:
    """RunIdentity.digest from the execution id alone (what a task's environment carries)."""
    return hashlib.sha256(execution_id.encode()).hexdigest()[:32]


def identity_of_prefix(prefix: str) -> RunIdentity | None:
    """The try a result prefix belongs to (``<root>/<dag>/<run>/<task>/<map>/<try>-<ti_id>/``), if it is one."""
    parts = prefix.rstrip("/").split("/")
    if len(parts) < 5:
        return None
    dag_id, run_id, task_id, map_index, try_key = parts[-5:]
    try:
        try_number, ti_id = parse_try_key(try_key)
        return RunIdentity(dag_id, run_id, task_id, int(map_index), try_number, ti_id)
    except ValueError:
        return None


def parse_try_key(segment: str) -> tuple[int, str]:
    """``<try>`` or ``<try>-<ti_id>`` -> (try number, ti_id); ValueError for anything else."""
    number, _, ti_id = segment.partition("-")
    identity = RunIdentity("d", "r", "t", -1, int(number), ti_id)  # validates both parts
    return identity.try_number, identity.ti_id


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
        parts += [str(identity.map_index), identity.try_key]
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

    @property
    def stop_key(self) -> str:
        return self.key(STOP_FILE)

    @property
    def timings_key(self) -> str:
        return self.key(TIMINGS_FILE)

    @property
    def ecs_times_key(self) -> str:
        return self.key(ECS_TIMES_FILE)

    def log_part_key(self, number: int) -> str:
        """The running log, uploaded in parts while the task runs (log.txt holds it whole at the end)."""
        return self.key(f"{LOG_PARTS_DIR}/{number:06d}")

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
    """Why a try ended; ``Status.error`` says it in words."""

    EXIT = "exit"  # the task ended by itself
    STOPPED = "stopped"  # airlaunch stopped it on request (Airflow cancel, timeout in Airflow, a newer try)
    TIMEOUT = "timeout"  # the catalog's or override's timeout_seconds ran out
    ERROR = "error"  # the runtime itself could not run the task
    KILLED = "killed"  # a signal from outside airlaunch ended it (docker kill, kill -9)
    OOM = "oom"  # the kernel killed it at its memory limit
    PLATFORM = "platform"  # the platform ended it: engine restart, host shutdown, Spot, a failed start
    LOST = "lost"  # it vanished and nothing tells how


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# -- what a try used: phase timestamps, resources and cost inputs ------------------------------
# status.json carries them as the optional "usage" record. Every timestamp names its clock, so
# no reader subtracts across two clocks without knowing it. Readers ignore fields they do not
# know (a newer writer must not break an older reader); ``version`` changes when a meaning does.

USAGE_VERSION = 1
RUNTIME_CLOCK = "container wall clock (UTC)"
ECS_CLOCK = "ECS control plane (UTC)"


def _typed_record(cls: Any, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from the known keys of ``data``; a value of the wrong type names its field."""
    _require(data, where, dict)
    known = {f.name: str(f.type) for f in fields(cls)}
    values = {k: v for k, v in data.items() if k in known}
    for name, value in values.items():
        kinds = _kinds_of(known[name])
        if value is not None and kinds:
            _require(value, f"{where}.{name}", kinds)
    return cls(**values)


def _kinds_of(annotation: str) -> tuple[type, ...]:
    """``"float | None"`` -> (int, float): the JSON types a scalar field accepts (none for records)."""
    names = {part.strip() for part in annotation.split("|")}
    kinds: tuple[type, ...] = ()
    for name, accepted in (("str", (str,)), ("int", (int,)), ("float", (int, float)), ("bool", (bool,))):
        if name in names:
            kinds += accepted
    return kinds


@dataclass(frozen=True)
class RuntimePhases:
    """The moments the task runtime saw, on the container's wall clock (UTC, ISO 8601).

    ``runtime_started_at`` is when the container's first process started (from /proc), so the
    span up to ``params_read_at`` includes Python's start-up and the runtime's imports.
    """

    runtime_started_at: str | None = None
    params_read_at: str | None = None
    user_code_started_at: str | None = None
    user_code_ended_at: str | None = None
    results_uploaded_at: str | None = None
    clock: str = RUNTIME_CLOCK

    @classmethod
    def from_dict(cls, data: Any) -> RuntimePhases:
        return _typed_record(cls, data, "usage.phases")


@dataclass(frozen=True)
class Resources:
    """What the container used, read by the runtime from its cgroup at the end (None: not measurable)."""

    cgroup: str = ""  # "v2", "v1", or "" where no cgroup files could be read
    cpu_seconds: float | None = None
    memory_peak_bytes: int | None = None
    memory_limit_bytes: int | None = None  # None: no limit
    memory_limit_hit: bool | None = None  # usage reached the limit (reclaim or OOM); None: unknown
    oom_kills: int | None = None  # processes the kernel killed for memory
    disk_read_bytes: int | None = None
    disk_write_bytes: int | None = None
    net_rx_bytes: int | None = None  # None where the container shares the host's network
    net_tx_bytes: int | None = None
    cpu_limit: float | None = None  # vCPU allowed by the cgroup's quota; None: no quota
    architecture: str = ""  # "x86_64" or "arm64", as Fargate prices it

    @classmethod
    def from_dict(cls, data: Any) -> Resources:
        return _typed_record(cls, data, "usage.resources")


@dataclass(frozen=True)
class EcsTimes:
    """ECS's own timestamps of the task (DescribeTasks or the task state change event), on ECS's clock."""

    created_at: str | None = None
    pull_started_at: str | None = None
    pull_stopped_at: str | None = None
    started_at: str | None = None
    stopping_at: str | None = None
    stopped_at: str | None = None
    clock: str = ECS_CLOCK

    @classmethod
    def from_dict(cls, data: Any) -> EcsTimes:
        return _typed_record(cls, data, "usage.ecs")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


@dataclass(frozen=True)
class RequestedSize:
    """What the launcher asked for, where: the inputs of a cost estimate that the container cannot see."""

    cpu: float | None = None  # vCPU, before Fargate's rounding
    memory_mib: int | None = None
    region: str = ""
    capacity_provider: str = ""  # "FARGATE", "FARGATE_SPOT"; empty for Docker
    backend: str = ""  # "docker" or "ecs"

    @classmethod
    def from_dict(cls, data: Any) -> RequestedSize:
        return _typed_record(cls, data, "usage.requested")


@dataclass(frozen=True)
class Usage:
    """Timings, resources and cost inputs of one try; the runtime fills phases and resources."""

    phases: RuntimePhases = field(default_factory=RuntimePhases)
    resources: Resources = field(default_factory=Resources)
    ecs: EcsTimes | None = None  # filled on the launcher side, when it knows them
    requested: RequestedSize | None = None
    version: int = USAGE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Usage:
        _require(data, "usage", dict)
        version = data.get("version", USAGE_VERSION)
        _require(version, "usage.version", int)
        return cls(
            phases=RuntimePhases.from_dict(data.get("phases") or {}),
            resources=Resources.from_dict(data.get("resources") or {}),
            ecs=EcsTimes.from_dict(data["ecs"]) if data.get("ecs") else None,
            requested=RequestedSize.from_dict(data["requested"]) if data.get("requested") else None,
            version=version,
        )


AIRFLOW_CLOCK = "Airflow's wall clock (UTC): the triggerer's, or the worker's for a launch from a worker"
LAUNCHER_CLOCK = "the launcher's wall clock (UTC); container times are the container platform's"


@dataclass(frozen=True)
class AirflowMoments:
    """What Airflow's side saw of one try: from the task instance's start to its end."""

    task_started_at: str | None = None  # the task instance's start_date (the scheduler's clock)
    launch_requested_at: str | None = None  # the launcher was invoked
    completion_seen_at: str | None = None  # the trigger read status.json
    task_ended_at: str | None = None  # the trigger ended the task (success) or resumed it (failure)
    clock: str = AIRFLOW_CLOCK

    @classmethod
    def from_dict(cls, data: Any) -> AirflowMoments:
        return _typed_record(cls, data, "timings.airflow")


@dataclass(frozen=True)
class LauncherMoments:
    """What the launcher saw of one launch."""

    received_at: str | None = None  # the launch request reached the launcher
    container_created_at: str | None = None  # the platform created the container (Docker) or task (ECS)
    container_started_at: str | None = None  # the platform started it
    clock: str = LAUNCHER_CLOCK

    @classmethod
    def from_dict(cls, data: Any) -> LauncherMoments:
        return _typed_record(cls, data, "timings.launcher")


@dataclass(frozen=True)
class Timeline:
    """Contents of timings.json: the moments of one try that status.json cannot know, each side's on
    its own clock. With status.json's usage record (the container's moments) it makes the whole
    timeline of a try, from Airflow's task start to its end (``airlaunch report`` joins them)."""

    airflow: AirflowMoments = field(default_factory=AirflowMoments)
    launcher: LauncherMoments = field(default_factory=LauncherMoments)
    version: int = USAGE_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> Timeline:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidRequest("timings", f"timings.json is not JSON: {exc}") from exc
        _require(data, "timings", dict)
        return cls(
            airflow=AirflowMoments.from_dict(data.get("airflow") or {}),
            launcher=LauncherMoments.from_dict(data.get("launcher") or {}),
            version=int(data.get("version", USAGE_VERSION)),
        )


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
    written_by: str = "runtime"  # or "launcher", for a try whose container ended without writing it
    version: int = PROTOCOL_VERSION
    usage: Usage | None = None  # absent from status.json written before it existed

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        data["reason"] = self.reason.value
        if self.usage is None:
            del data["usage"]
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
                written_by=str(data.get("written_by", "runtime")),
                version=data.get("version", PROTOCOL_VERSION),
                usage=_optional_usage(data.get("usage")),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidRequest("status", f"malformed status.json: {exc!r}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> Status:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidRequest("status", f"status.json is not JSON: {exc}") from exc
        return cls.from_dict(data)


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
class Handle:
    """What ``launch`` returns: enough to describe, stop or watch the task later."""

    backend: str
    task_ref: str  # Docker container id or ECS task ARN
    bucket: str
    prefix: str
    launched: bool  # False when an earlier launch of the same identity was found instead
    timings: dict[str, str] = field(default_factory=dict)  # LauncherMoments of this launch, as a dict

    @property
    def layout(self) -> ResultLayout:
        return ResultLayout(bucket=self.bucket, prefix=self.prefix)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Handle:
        _require(data, "handle", dict)
        _check_keys(data, "handle", {"backend", "task_ref", "bucket", "prefix", "launched", "timings"})
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
