"""Which containers a fault made, counted from a Docker event stream the observer opens before the fault.

* ``ContainerScope`` says which Docker containers are one stack's task containers, by one label: the Docker
  backend's ``airlaunch.scope``, or in the ECS mode the label of the stack's ECS emulator (its emulated
  Fargate tasks carry their ECS tags as labels, never ``airlaunch.scope``).
* ``DockerEvents`` records every create/start/die/oom/kill/destroy of the scope's containers from the moment
  it is made: its constructor returns once the engine has the subscription, so a fault injected after it is
  seen whole, containers already removed included. It reconnects after an engine restart, asking for what
  it missed. Counting after the fact with ``docker events --since`` is not the same: the engine keeps only
  its last events, and drops older ones under load.
* ``containers`` lists the scope's containers as ``docker ps`` shows them now.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

import docker
from docker.errors import DockerException

from airlaunch.launcher.backends.ecs import ecs_tags

OPEN_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class ContainerScope:
    """One stack's task containers: those labelled ``label`` ("key=value"), each with the labels of
    ``airlaunch.launcher.backends.base.labels_for`` (airlaunch.run_id, ti_id, try_number...)."""

    backend: str  # docker or ecs
    label: str

    def run_label(self, run_id: str) -> str:
        """A run id as the containers' ``airlaunch.run_id`` label holds it: on ECS, the value of its ECS tag
        (ECS allows fewer characters in a tag than Airflow in a run id)."""
        return ecs_tags({"run_id": run_id})[0]["value"] if self.backend == "ecs" else run_id


@dataclass
class Event:
    at: float
    action: str
    container: str
    labels: dict[str, str]

    @property
    def slot(self) -> tuple[str, str, str, str]:
        """The task instance (across its tries) the container belongs to."""
        return tuple(self.labels.get(f"airlaunch.{k}", "") for k in ("dag_id", "run_id", "task_id", "map_index"))  # type: ignore[return-value]

    @property
    def try_key(self) -> tuple[str, str]:
        return self.labels.get("airlaunch.try_number", ""), self.labels.get("airlaunch.ti_id", "")


class DockerEvents:
    """Every create/start/die/oom/kill/destroy of the scope's task containers since it was made, with their
    labels. Made before a fault, it has every container the fault started or ended; ``close()`` ends it."""

    ACTIONS = ("create", "start", "die", "oom", "kill", "destroy")

    def __init__(self, scope: ContainerScope) -> None:
        self.scope = scope
        self.events: list[Event] = []
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._since = time.time()
        self._stream: Any = None
        self._thread = threading.Thread(target=self._run, name="faults-docker-events", daemon=True)
        self._thread.start()
        if not self._opened.wait(OPEN_TIMEOUT_SECONDS):
            self.close()
            raise RuntimeError(f"the Docker engine did not open an event stream within {OPEN_TIMEOUT_SECONDS:g} s")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                client = docker.from_env(timeout=10)
                filters = {"type": "container", "label": [self.scope.label]}
                # the engine has the subscription once this returns (its response headers came)
                self._stream = client.events(decode=True, since=int(self._since) - 1, filters=filters)
                self._opened.set()
                for raw in self._stream:
                    if raw.get("Action") not in self.ACTIONS:
                        continue
                    event = Event(
                        at=raw["timeNano"] / 1e9,
                        action=raw["Action"],
                        container=raw.get("id") or raw.get("Actor", {}).get("ID", ""),
                        labels=dict(raw.get("Actor", {}).get("Attributes") or {}),
                    )
                    with self._lock:
                        if not any(
                            e.at == event.at and e.container == event.container and e.action == event.action
                            for e in self.events[-50:]
                        ):  # a reconnect asks again from a second before
                            self.events.append(event)
                        self._since = event.at
                        self._lock.notify_all()
            except (DockerException, OSError, ValueError):
                pass
            self._stop.wait(0.5)

    def close(self) -> None:
        self._stop.set()
        if self._stream is not None:
            self._stream.close()

    def of_run(self, run_id: str, action: str | None = None) -> list[Event]:
        label = self.scope.run_label(run_id)
        with self._lock:
            return [e for e in self.events if e.labels.get("airlaunch.run_id") == label and action in (None, e.action)]

    def started(self, run_id: str) -> list[str]:
        """The run's containers Docker started (each once, in order), those removed since included."""
        return list(dict.fromkeys(e.container for e in self.of_run(run_id, "start")))

    def wait(self, run_id: str, action: str, timeout: float = 120, count: int = 1) -> list[Event]:
        """Wait for ``count`` events of ``action`` of the run's containers; those events."""
        deadline = time.monotonic() + timeout
        label = self.scope.run_label(run_id)
        with self._lock:
            while True:
                found = [e for e in self.events if e.labels.get("airlaunch.run_id") == label and e.action == action]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {action} event for a container of run {run_id} within {timeout:.0f} s")
                self._lock.wait(min(left, 0.5))


def containers(scope: ContainerScope, run_id: str | None = None, running_only: bool = False) -> list[str]:
    """Ids of the scope's task containers (of one run), as ``docker ps`` lists them now."""
    command = ["docker", "ps", "-q", "--no-trunc", "--filter", f"label={scope.label}"]
    command += ["--filter", "label=airlaunch.identity"]
    if run_id is not None:
        command += ["--filter", f"label=airlaunch.run_id={scope.run_label(run_id)}"]
    if not running_only:
        command.insert(2, "-a")
    out = subprocess.run(command, capture_output=True, text=True)
    return out.stdout.split()
