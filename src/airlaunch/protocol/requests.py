"""What Airflow asks the launcher to start, and the handle it keeps of what was started.

Guarantees: a :class:`LaunchRequest` that exists is valid (a catalog task name, a safe identity,
params that fit a Lambda payload, overrides within the platform's limits and without reserved
environment names); ``from_dict`` refuses unknown fields; a :class:`Handle` never points outside
its bucket's relative key space.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from airlaunch.protocol.checks import InvalidRequest, check_keys, require
from airlaunch.protocol.identity import RunIdentity
from airlaunch.protocol.layout import ResultLayout

_TASK_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_RESERVED_ENV_PREFIXES = ("AIRLAUNCH_", "AWS_")

MAX_PARAMS_BYTES = 128 * 1024
MAX_CPU = 16.0
MAX_MEMORY_MIB = 120 * 1024
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Overrides:
    """What a caller may change of a catalog entry for one launch."""

    env: dict[str, str] = field(default_factory=dict)
    cpu: float | None = None
    memory_mib: int | None = None
    timeout_seconds: int | None = None

    def __post_init__(self) -> None:
        require(self.env, "overrides.env", dict)
        for name, value in self.env.items():
            where = f"overrides.env.{name}"
            if not isinstance(name, str) or not _ENV_NAME_RE.match(name):
                raise InvalidRequest(where, "is not a valid environment variable name")
            if name.startswith(_RESERVED_ENV_PREFIXES):
                raise InvalidRequest(where, f"names starting with {_RESERVED_ENV_PREFIXES} are reserved")
            require(value, where, str)
        if self.cpu is not None:
            require(self.cpu, "overrides.cpu", (int, float))
            if not 0 < self.cpu <= MAX_CPU:
                raise InvalidRequest("overrides.cpu", f"must be in (0, {MAX_CPU}] vCPU")
        if self.memory_mib is not None:
            require(self.memory_mib, "overrides.memory_mib", int)
            if not 16 <= self.memory_mib <= MAX_MEMORY_MIB:
                raise InvalidRequest("overrides.memory_mib", f"must be in [16, {MAX_MEMORY_MIB}] MiB")
        if self.timeout_seconds is not None:
            require(self.timeout_seconds, "overrides.timeout_seconds", int)
            if not 1 <= self.timeout_seconds <= MAX_TIMEOUT_SECONDS:
                raise InvalidRequest("overrides.timeout_seconds", f"must be in [1, {MAX_TIMEOUT_SECONDS}]")

    @classmethod
    def from_dict(cls, data: Any) -> Overrides:
        if data is None:
            return cls()
        require(data, "overrides", dict)
        check_keys(data, "overrides", {"env", "cpu", "memory_mib", "timeout_seconds"})
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {})}


def check_params(params: Any) -> dict[str, Any]:
    """Params must be a JSON object of bounded size: they travel in a Lambda payload and a YAML file."""
    require(params, "params", dict)
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
    # The result cache for this launch: None (absent on the wire, as from older callers) uses the catalog
    # entry's setting; False turns it off (no lookup, no entry written). True cannot turn on a cache the
    # catalog entry does not have: the catalog says which tasks are worth caching.
    cache: bool | None = None

    def __post_init__(self) -> None:
        require(self.task, "task", str)
        if not _TASK_NAME_RE.match(self.task):
            raise InvalidRequest("task", f"{self.task!r} is not a catalog task name (lower-case, digits, _ and -)")
        check_params(self.params)
        if self.cache is not None:
            require(self.cache, "cache", bool)

    @classmethod
    def from_dict(cls, data: Any) -> LaunchRequest:
        require(data, "request", dict)
        check_keys(data, "request", {"task", "identity", "params", "overrides", "cache"})
        if "task" not in data:
            raise InvalidRequest("task", "is required")
        return cls(
            task=data["task"],
            identity=RunIdentity.from_dict(data.get("identity")),
            params=check_params(data.get("params", {})),
            overrides=Overrides.from_dict(data.get("overrides")),
            cache=data.get("cache"),
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "task": self.task,
            "identity": self.identity.to_dict(),
            "params": self.params,
            "overrides": self.overrides.to_dict(),
        }
        if self.cache is not None:  # absent unless set: a launcher from before the cache reads the rest
            data["cache"] = self.cache
        return data


@dataclass(frozen=True)
class Handle:
    """What ``launch`` returns: enough to describe, stop or watch the task later."""

    backend: str
    task_ref: str  # Docker container id or ECS task ARN
    bucket: str
    prefix: str
    launched: bool  # False when an earlier launch of the same identity was found instead
    timings: dict[str, str] = field(default_factory=dict)  # LauncherMoments of this launch, as a dict
    # Served from the result cache: the prefix of the try whose result this try's files copy (nothing was
    # started, task_ref is empty). Absent from the wire unless set, as handles were before the cache.
    cached_from: str | None = None

    @property
    def layout(self) -> ResultLayout:
        return ResultLayout(bucket=self.bucket, prefix=self.prefix)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.cached_from is None:
            del data["cached_from"]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Handle:
        require(data, "handle", dict)
        check_keys(data, "handle", {"backend", "task_ref", "bucket", "prefix", "launched", "timings", "cached_from"})
        for name, kind in (("backend", str), ("task_ref", str), ("bucket", str), ("prefix", str), ("launched", bool)):
            if name not in data:
                raise InvalidRequest(f"handle.{name}", "is required")
            require(data[name], f"handle.{name}", kind)
        for moment, value in require(data.get("timings", {}), "handle.timings", dict).items():
            require(value, f"handle.timings.{moment}", str)
        for name in ("prefix", "cached_from"):
            value = data.get(name)
            if value is not None and (".." in require(value, f"handle.{name}", str) or value.startswith("/")):
                raise InvalidRequest(f"handle.{name}", "must be a relative key prefix without '..'")
        return cls(**data)
