"""What a try used, measured inside its own container: phase times, CPU, memory, disk and network.

Read once, at the end of the run, from the container's cgroup (v2 on Fargate and current
Docker hosts, v1 on older ones such as this project's Docker engine) and from /proc, so it
costs nothing while the task runs and needs no agent outside. Every reader returns None for
what it cannot read: measuring must never fail a task. Standard library only, like the runtime.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from airlaunch.protocol import Resources, RuntimePhases, Usage, utcnow

_T = TypeVar("_T")

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC = Path("/proc")
# A v1 limit this large means "no limit" (the kernel reports PAGE_COUNTER_MAX in bytes).
_V1_UNLIMITED = 1 << 60
# Interfaces only a host has: with ``--network host`` /proc/net/dev counts the whole machine.
_HOST_INTERFACES = ("docker0", "veth", "br-", "cni", "flannel")

PARAMS_READ = "params_read_at"
USER_CODE_STARTED = "user_code_started_at"
USER_CODE_ENDED = "user_code_ended_at"


class PhaseClock:
    """The moments of a run, marked by the runtime as they happen (container wall clock, UTC)."""

    def __init__(self) -> None:
        self.marks: dict[str, str] = {}

    def mark(self, phase: str) -> None:
        self.marks[phase] = utcnow()


def measure(clock: PhaseClock, *, root: Path = CGROUP_ROOT, proc: Path = PROC) -> Usage:
    """The try's usage record, taken after its results were uploaded (that moment ends the phases)."""
    phases = RuntimePhases(
        runtime_started_at=_guard(lambda: process_started_at(proc, time.time())),
        params_read_at=clock.marks.get(PARAMS_READ),
        user_code_started_at=clock.marks.get(USER_CODE_STARTED),
        user_code_ended_at=clock.marks.get(USER_CODE_ENDED),
        results_uploaded_at=utcnow(),
    )
    measured = _guard(lambda: read_resources(root, proc)) or Resources(architecture=architecture())
    return Usage(phases=phases, resources=measured)


def current_resources(root: Path = CGROUP_ROOT, proc: Path = PROC) -> Resources | None:
    """What the container used so far (None when it cannot be read): e.g. whether the kernel OOM-killed in it."""
    return _guard(lambda: read_resources(root, proc))


def _guard(read: Callable[[], _T]) -> _T | None:
    try:
        return read()
    except Exception:  # an odd /proc or cgroup layout must not cost the task its status.json
        return None


def read_resources(root: Path, proc: Path) -> Resources:
    """CPU, memory, disk and network of this container, from cgroup v2 if mounted, else v1."""
    if (root / "cgroup.controllers").exists():
        found = _read_v2(_own_cgroup(root, _cgroup_path(proc, "")))
    elif any(root.glob("*memory*")) or any(root.glob("*cpuacct*")):
        found = _read_v1(root, proc)
    else:
        found = Resources()
    if found.memory_peak_bytes is None:  # cgroup v2 before Linux 5.19 has no memory.peak
        found = replace(found, memory_peak_bytes=_largest_process_rss())
    rx, tx = network_bytes(proc)
    return replace(found, net_rx_bytes=rx, net_tx_bytes=tx, architecture=architecture())


# -- cgroup v2 -------------------------------------------------------------------------------


def _read_v2(group: Path) -> Resources:
    cpu = _keyed(group / "cpu.stat").get("usage_usec")
    events = _keyed(group / "memory.events") if (group / "memory.events").exists() else None
    disk = _io_stat(group / "io.stat")
    return Resources(
        cgroup="v2",
        cpu_seconds=cpu / 1e6 if cpu is not None else None,
        memory_peak_bytes=_int_file(group / "memory.peak"),
        memory_limit_bytes=_int_file(group / "memory.max"),  # "max": None
        memory_limit_hit=(
            any(events.get(k, 0) > 0 for k in ("max", "oom", "oom_kill")) if events is not None else None
        ),
        oom_kills=events.get("oom_kill") if events is not None else None,
        disk_read_bytes=disk[0] if disk else None,
        disk_write_bytes=disk[1] if disk else None,
        cpu_limit=_v2_cpu_limit(group / "cpu.max"),
    )


def _io_stat(path: Path) -> tuple[int, int] | None:
    """io.stat: ``MAJ:MIN rbytes=N wbytes=N rios=N ...`` per device; summed."""
    text = _text(path)
    if text is None:
        return None
    read = written = 0
    for line in text.splitlines():
        fields = dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
        read += int(fields.get("rbytes", 0))
        written += int(fields.get("wbytes", 0))
    return read, written


def _v2_cpu_limit(path: Path) -> float | None:
    parts = (_text(path) or "max").split()
    if parts[0] == "max" or len(parts) < 2:
        return None
    return int(parts[0]) / int(parts[1])


# -- cgroup v1 -------------------------------------------------------------------------------


def _read_v1(root: Path, proc: Path) -> Resources:
    cpuacct = _v1_group(root, proc, "cpuacct")
    memory = _v1_group(root, proc, "memory")
    blkio = _v1_group(root, proc, "blkio")
    cpu = _v1_group(root, proc, "cpu")
    usage_ns = _int_file(cpuacct / "cpuacct.usage") if cpuacct else None
    limit = _int_file(memory / "memory.limit_in_bytes") if memory else None
    failures = _int_file(memory / "memory.failcnt") if memory else None
    oom = _keyed(memory / "memory.oom_control") if memory and (memory / "memory.oom_control").exists() else {}
    disk = _blkio_bytes(blkio) if blkio else None
    hit = None if failures is None and not oom else (bool(failures) or oom.get("oom_kill", 0) > 0)
    return Resources(
        cgroup="v1",
        cpu_seconds=usage_ns / 1e9 if usage_ns is not None else None,
        memory_peak_bytes=_int_file(memory / "memory.max_usage_in_bytes") if memory else None,
        memory_limit_bytes=limit if limit is not None and limit < _V1_UNLIMITED else None,
        memory_limit_hit=hit,
        oom_kills=oom.get("oom_kill"),
        disk_read_bytes=disk[0] if disk else None,
        disk_write_bytes=disk[1] if disk else None,
        cpu_limit=_v1_cpu_limit(cpu) if cpu else None,
    )


def _v1_group(root: Path, proc: Path, controller: str) -> Path | None:
    """This process's folder of one v1 controller (mounted alone or combined, as ``cpu,cpuacct``)."""
    mounts = [d for d in sorted(root.iterdir()) if d.is_dir() and controller in d.name.split(",")]
    if not mounts:
        return None
    return _own_cgroup(mounts[0], _cgroup_path(proc, controller))


def _blkio_bytes(group: Path) -> tuple[int, int] | None:
    """blkio: ``MAJ:MIN Read N`` / ``MAJ:MIN Write N`` lines; the throttle files count every scheduler."""
    for name in (
        "blkio.throttle.io_service_bytes_recursive",
        "blkio.throttle.io_service_bytes",
        "blkio.io_service_bytes_recursive",
        "blkio.io_service_bytes",
    ):
        text = _text(group / name)
        if text is None:
            continue
        read = written = 0
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in ("Read", "Write"):
                read += int(parts[2]) if parts[1] == "Read" else 0
                written += int(parts[2]) if parts[1] == "Write" else 0
        return read, written
    return None


def _v1_cpu_limit(group: Path) -> float | None:
    quota, period = _int_file(group / "cpu.cfs_quota_us"), _int_file(group / "cpu.cfs_period_us")
    if quota is None or period is None or quota <= 0 or period <= 0:
        return None
    return quota / period


# -- where our cgroup is ---------------------------------------------------------------------


def _cgroup_path(proc: Path, controller: str) -> str:
    """Our path in one hierarchy from /proc/self/cgroup (``""`` names the v2 hierarchy)."""
    for line in (_text(proc / "self" / "cgroup") or "").splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") or (controller == "" and controllers == ""):
            return path
    return "/"


def _own_cgroup(mount: Path, path: str) -> Path:
    """The mount itself inside a container (its cgroup is mounted at the root), else mount + path."""
    candidate = mount / path.lstrip("/")
    return candidate if path.strip("/") and candidate.is_dir() else mount


# -- /proc -----------------------------------------------------------------------------------


def network_bytes(proc: Path) -> tuple[int | None, int | None]:
    """Bytes received and sent by this network namespace since it was made, loopback excluded.

    None, None when the namespace is the host's (``--network host``): its counters are the
    machine's, not the task's.
    """
    text = _text(proc / "net" / "dev")
    if text is None:
        return None, None
    rx = tx = 0
    for line in text.splitlines()[2:]:
        name, _, counters = line.partition(":")
        name = name.strip()
        if name.startswith(_HOST_INTERFACES):
            return None, None
        values = counters.split()
        if name != "lo" and len(values) >= 9:
            rx += int(values[0])
            tx += int(values[8])
    return rx, tx


def process_started_at(proc: Path, now: float) -> str | None:
    """When this process started, from /proc/self/stat (ticks since boot) and /proc/uptime."""
    stat, uptime = _text(proc / "self" / "stat"), _text(proc / "uptime")
    if stat is None or uptime is None:
        return None
    ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the command name
    booted = now - float(uptime.split()[0])
    started = booted + ticks / os.sysconf("SC_CLK_TCK")
    return datetime.fromtimestamp(started, UTC).isoformat(timespec="milliseconds")


def _largest_process_rss() -> int | None:
    """Peak resident memory of the largest finished child (the task) or of the runtime itself."""
    peak_kib = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_CHILDREN, resource.RUSAGE_SELF))
    return peak_kib * 1024 if peak_kib > 0 else None


def architecture() -> str:
    """The CPU architecture as Fargate names its prices: x86_64 or arm64."""
    machine = platform.machine().lower()
    return "arm64" if machine in ("aarch64", "arm64") else machine


# -- files -----------------------------------------------------------------------------------


def _text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _int_file(path: Path) -> int | None:
    text = (_text(path) or "").strip()
    return int(text) if text.lstrip("-").isdigit() else None


def _keyed(path: Path) -> dict[str, int]:
    """``key value`` lines (cpu.stat, memory.events, memory.oom_control) as a dict."""
    pairs = (line.split() for line in (_text(path) or "").splitlines())
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].lstrip("-").isdigit()}
