"""Docker's container records read as the launcher needs them: which try a container is, where its
files are, and how it ended, in words.

A container's try and its files come from the labels it was started with (a sparse listing shows
labels, not the environment), or from its environment when an inspect has it; the times are
Docker's RFC 3339 with nanoseconds. How a container ended follows Docker's State: the OOM flag,
a signal's exit code, or the engine's own error. Everything here is a pure function of what the
engine answered: no call to Docker.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from docker.models.containers import Container

from airlaunch.launcher.backends.base import LiveTask, killed_by
from airlaunch.protocol import (
    ENV_BUCKET,
    ENV_CACHE_CLAIM,
    ENV_PREFIX,
    ENV_TIMEOUT_SECONDS,
    ResultLayout,
    RunIdentity,
    StopReason,
)

PENDING_STATES = {"created", "restarting"}
LIVE_STATES = PENDING_STATES | {"running"}
# Where a container's results go and its timeout, as labels too: a listing shows labels, not the environment.
BUCKET_LABEL, PREFIX_LABEL, TIMEOUT_LABEL = "airlaunch.bucket", "airlaunch.prefix", "airlaunch.timeout"
CACHE_LABEL = "airlaunch.cache"  # the result cache's claim (launcher.cache), when its launch missed
LOG_TAIL_LINES = 20


def container_name(identity: RunIdentity) -> str:
    return f"airlaunch-{identity.digest}"


def epoch(timestamp: str) -> float | None:
    """Docker's RFC 3339 time with nanoseconds -> epoch seconds."""
    if not timestamp or timestamp.startswith("0001-"):
        return None
    head, _, fraction = timestamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float(f"0.{fraction or 0}")


def iso(timestamp: str) -> str | None:
    """Docker's RFC 3339 time (nanoseconds) as an ISO 8601 time with milliseconds."""
    seconds = epoch(timestamp)
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds") if seconds is not None else None


def how_it_ended(state: dict[str, Any], memory_limit: int) -> tuple[StopReason, str]:
    """A container's end from Docker's State, in words: OOM, a signal, or an exit code."""
    code = int(state.get("ExitCode") or 0)
    if state.get("OOMKilled"):
        limit = f" at its {memory_limit // 2**20} MiB memory limit" if memory_limit else ""
        return StopReason.OOM, f"out of memory: the kernel killed it{limit} (exit code {code})"
    if killed := killed_by(code):
        return StopReason.KILLED, f"{killed} (exit code {code})"
    if state.get("Error"):
        return StopReason.PLATFORM, f"Docker could not run it: {state['Error']} (exit code {code})"
    return StopReason.LOST, f"it exited with code {code} without its runtime recording how it ended"


def environment(config: dict[str, Any]) -> dict[str, str]:
    """The environment in an inspected container's Config (``NAME=value`` items)."""
    return dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)


def live_task(container: Container) -> LiveTask:
    """From a listing (labels, Created) or an inspect (labels or environment, State.StartedAt)."""
    attrs = container.attrs
    config = attrs.get("Config") or {}
    labels = attrs.get("Labels") or config.get("Labels") or {}
    env = environment(config)
    timeout = labels.get(TIMEOUT_LABEL) or env.get(ENV_TIMEOUT_SECONDS)
    state = attrs.get("State")
    return LiveTask(
        task_ref=container.id or "",
        digest=labels.get("airlaunch.identity", ""),
        layout=ResultLayout(
            bucket=labels.get(BUCKET_LABEL) or env.get(ENV_BUCKET, ""),
            prefix=labels.get(PREFIX_LABEL) or env.get(ENV_PREFIX, ""),
        ),
        started_at=epoch(state.get("StartedAt", "")) if isinstance(state, dict) else attrs.get("Created"),
        timeout_seconds=int(timeout) if timeout and timeout.isdigit() else None,
        cache=labels.get(CACHE_LABEL) or env.get(ENV_CACHE_CLAIM, ""),
    )
