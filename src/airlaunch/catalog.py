"""The task catalog: the only tasks the launcher will start, and how.

A launch request names a catalog task; image, command, resources and timeouts come from
here, never from the request, so an Airflow user cannot make the launcher run an
arbitrary image, and may raise cpu, memory and timeout only up to the entry's ``max_*``
caps. On AWS every entry becomes its own ECS task definition (``make deploy``,
airlaunch.deploy.template), so the catalog is also what the deployment is generated from.
An entry's ``secrets`` name the only secrets its task may have, by reference
(airlaunch.secret_refs); a launch can neither add one nor set a secret's variable.
See tasks/catalog.yaml for the format.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from airlaunch.cache_policy import CachePolicy, parse_cache
from airlaunch.protocol import (
    MAX_CPU,
    MAX_MEMORY_MIB,
    MAX_TIMEOUT_SECONDS,
    InvalidRequest,
    Overrides,
)
from airlaunch.secret_refs import SecretRef, parse_secrets

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_TASK_FIELDS = {
    "description", "image", "build", "command", "notebook", "cpu", "memory_mib", "timeout_seconds", "env",
    "architecture", "max_cpu", "max_memory_mib", "max_timeout_seconds", "secrets", "cache",
}  # fmt: skip
_BUILD_FIELDS = {"dockerfile", "context", "args"}
ARCHITECTURES = ("x86_64", "arm64")


class CatalogError(ValueError):
    """The catalog file itself is wrong; the message names the task and field."""


# Fargate's valid task sizes: cpu units -> the memory sizes (MiB) allowed with it. Here, not in
# the ECS backend, because the launcher sizes tasks with it and the cost estimate prices them.
FARGATE_SIZES: dict[int, list[int]] = {
    256: [512, 1024, 2048],
    512: list(range(1024, 4096 + 1, 1024)),
    1024: list(range(2048, 8192 + 1, 1024)),
    2048: list(range(4096, 16384 + 1, 1024)),
    4096: list(range(8192, 30720 + 1, 1024)),
    8192: list(range(16384, 61440 + 1, 4096)),
    16384: list(range(32768, 122880 + 1, 8192)),
}


class FargateSizeError(ValueError):
    """A task larger than any Fargate task."""


def fargate_size(cpu: float, memory_mib: int) -> tuple[int, int]:
    """The smallest valid Fargate (cpu units, memory MiB) at least as large as the request.

    Fargate accepts only fixed combinations (0.25 vCPU with 0.5, 1 or 2 GiB, ... 16 vCPU
    with 32-120 GiB), so both are rounded *up*: 0.5 vCPU and 256 MiB become 512 units and
    1024 MiB, and a memory request too large for the cpu moves to the next cpu size. The
    task pays for, and its one container may use, the rounded size.
    """
    units = math.ceil(cpu * 1024)
    for cpu_units, sizes in FARGATE_SIZES.items():
        fitting = [m for m in sizes if m >= memory_mib]
        if cpu_units >= units and fitting:
            return cpu_units, fitting[0]
    raise FargateSizeError(f"{cpu} vCPU with {memory_mib} MiB is larger than any Fargate task (16 vCPU, 120 GiB)")


@dataclass(frozen=True)
class BuildSpec:
    """How ``make deploy`` builds the entry's image (paths relative to the repository root)."""

    dockerfile: str
    context: str = "."
    args: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    image: str
    command: tuple[str, ...] = ()
    notebook: str | None = None
    cpu: float = 0.5
    memory_mib: int = 512
    timeout_seconds: int = 3600
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""
    architecture: str = "x86_64"  # of the image and of the Fargate task that runs it
    max_cpu: float | None = None  # what a launch may override up to; None: the entry's own value
    max_memory_mib: int | None = None
    max_timeout_seconds: int | None = None
    build: BuildSpec | None = None
    secrets: dict[str, SecretRef] = field(default_factory=dict)  # environment name -> where its value lives
    cache: CachePolicy | None = None  # the result cache, opt-in per entry

    @property
    def cpu_cap(self) -> float:
        return self.max_cpu if self.max_cpu is not None else self.cpu

    @property
    def memory_cap(self) -> int:
        return self.max_memory_mib if self.max_memory_mib is not None else self.memory_mib

    @property
    def timeout_cap(self) -> int:
        return self.max_timeout_seconds if self.max_timeout_seconds is not None else self.timeout_seconds

    def runtime_args(self) -> list[str]:
        """Arguments for the runtime entrypoint (the container's CMD)."""
        if self.notebook:
            return ["--notebook", self.notebook]
        return ["--", *self.command]

    def with_overrides(self, overrides: Overrides) -> TaskSpec:
        """The entry as one launch asks for it; InvalidRequest when it asks for more than the caps."""
        asked = (
            ("cpu", overrides.cpu, self.cpu_cap, "max_cpu"),
            ("memory_mib", overrides.memory_mib, self.memory_cap, "max_memory_mib"),
            ("timeout_seconds", overrides.timeout_seconds, self.timeout_cap, "max_timeout_seconds"),
        )
        for name, value, cap, cap_field in asked:
            if value is not None and value > cap:
                raise InvalidRequest(
                    f"overrides.{name}",
                    f"{value:g} is over what catalog task {self.name!r} allows ({cap:g}); "
                    f"raise its {cap_field} in the task catalog to allow more",
                )
        for name in overrides.env:
            if name in self.secrets:
                raise InvalidRequest(
                    f"overrides.env.{name}",
                    f"is a secret of catalog task {self.name!r}: its value comes only from "
                    f"{self.secrets[name].describe()}, never from a launch",
                )
        return replace(
            self,
            env={**self.env, **overrides.env},
            cpu=overrides.cpu if overrides.cpu is not None else self.cpu,
            memory_mib=overrides.memory_mib if overrides.memory_mib is not None else self.memory_mib,
            timeout_seconds=(
                overrides.timeout_seconds if overrides.timeout_seconds is not None else self.timeout_seconds
            ),
        )


@dataclass(frozen=True)
class Catalog:
    tasks: dict[str, TaskSpec]

    def get(self, name: str) -> TaskSpec:
        try:
            return self.tasks[name]
        except KeyError:
            known = ", ".join(sorted(self.tasks)) or "none"
            raise InvalidRequest("task", f"{name!r} is not in the task catalog (known: {known})") from None

    @classmethod
    def load(cls, path: str | Path) -> Catalog:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise CatalogError(f"cannot read task catalog {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise CatalogError(f"task catalog {path} is not valid YAML: {exc}") from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "catalog") -> Catalog:
        if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
            raise CatalogError(f"{source}: expected a mapping with a 'tasks' mapping")
        defaults = data.get("defaults") or {}
        tasks = {
            name: _parse_task(name, {**defaults, **(entry or {})}, source) for name, entry in data["tasks"].items()
        }
        return cls(tasks=tasks)


class CatalogFile:
    """The catalog at ``path``, read again whenever the file changes (one stat per use).

    So a task added to the catalog is launchable at once, without restarting the launcher.
    An edit that breaks the file makes launches fail with the file's error (describe and
    stop do not need the catalog and keep working); the next good save is picked up.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._catalog: Catalog | None = None

    def current(self) -> Catalog:
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise CatalogError(f"cannot read task catalog {self.path}: {exc}") from exc
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp != self._stamp or self._catalog is None:
            self._catalog = Catalog.load(self.path)
            self._stamp = stamp
        return self._catalog

    def get(self, name: str) -> TaskSpec:
        return self.current().get(name)

    @property
    def tasks(self) -> dict[str, TaskSpec]:
        return self.current().tasks


def _parse_task(name: str, entry: dict[str, Any], source: str) -> TaskSpec:
    where = f"{source}: task {name!r}"
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise CatalogError(f"{where}: name must be lower-case letters, digits, '_' or '-'")
    unknown = set(entry) - _TASK_FIELDS
    if unknown:
        raise CatalogError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_TASK_FIELDS)}")
    if not isinstance(entry.get("image"), str) or not entry["image"]:
        raise CatalogError(f"{where}: 'image' is required")
    command, notebook = entry.get("command"), entry.get("notebook")
    if (command is None) == (notebook is None):
        raise CatalogError(f"{where}: give exactly one of 'command' (a list) or 'notebook' (a path)")
    if command is not None and (
        not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command)
    ):
        raise CatalogError(f"{where}: 'command' must be a non-empty list of strings")
    architecture = str(entry.get("architecture", "x86_64"))
    if architecture not in ARCHITECTURES:
        raise CatalogError(f"{where}: architecture must be one of {list(ARCHITECTURES)}, not {architecture!r}")
    spec = TaskSpec(
        name=name,
        image=entry["image"],
        command=tuple(command or ()),
        notebook=notebook,
        cpu=float(entry.get("cpu", 0.5)),
        memory_mib=int(entry.get("memory_mib", 512)),
        timeout_seconds=int(entry.get("timeout_seconds", 3600)),
        env={str(k): str(v) for k, v in (entry.get("env") or {}).items()},
        description=str(entry.get("description", "")),
        architecture=architecture,
        max_cpu=_optional(entry, "max_cpu", float),
        max_memory_mib=_optional(entry, "max_memory_mib", int),
        max_timeout_seconds=_optional(entry, "max_timeout_seconds", int),
        build=_parse_build(entry.get("build"), where),
        secrets=_parse_secrets(entry, where),
        cache=parse_cache(entry.get("cache"), where, CatalogError),
    )
    for low, high, what in (
        (spec.cpu, spec.cpu_cap, "cpu"),
        (spec.memory_mib, spec.memory_cap, "memory_mib"),
        (spec.timeout_seconds, spec.timeout_cap, "timeout_seconds"),
    ):
        if high < low:
            raise CatalogError(f"{where}: max_{what} ({high:g}) is below {what} ({low:g})")
    if spec.cpu <= 0 or spec.cpu_cap > MAX_CPU or spec.memory_mib < 16 or spec.memory_cap > MAX_MEMORY_MIB:
        raise CatalogError(f"{where}: cpu must be in (0, {MAX_CPU}] and memory_mib in [16, {MAX_MEMORY_MIB}]")
    if spec.timeout_seconds < 1 or spec.timeout_cap > MAX_TIMEOUT_SECONDS:
        raise CatalogError(f"{where}: timeout_seconds must be in [1, {MAX_TIMEOUT_SECONDS}]")
    return spec


def _parse_secrets(entry: dict[str, Any], where: str) -> dict[str, SecretRef]:
    try:
        return parse_secrets(entry.get("secrets"), {str(k): str(v) for k, v in (entry.get("env") or {}).items()})
    except ValueError as exc:
        raise CatalogError(f"{where}: {exc}") from exc


def _optional(entry: dict[str, Any], key: str, kind: type) -> Any:
    value = entry.get(key)
    return None if value is None else kind(value)


def _parse_build(data: Any, where: str) -> BuildSpec | None:
    if data is None:
        return None
    if not isinstance(data, dict) or "dockerfile" not in data or set(data) - _BUILD_FIELDS:
        raise CatalogError(f"{where}: 'build' must be a mapping with 'dockerfile' (and 'context', 'args')")
    args = data.get("args") or {}
    if not isinstance(args, dict):
        raise CatalogError(f"{where}: build.args must be a mapping of build arguments")
    return BuildSpec(
        dockerfile=str(data["dockerfile"]),
        context=str(data.get("context", ".")),
        args={str(k): str(v) for k, v in args.items()},
    )
