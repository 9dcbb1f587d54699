"""The Docker side: create and start a task's container, signal it, learn of its exit, clean up.

Guarantees:

* Never pulls: an image not present locally is ECS's CannotPullContainerError (no registry is
  reachable from the local stack, and a pull would hide a missing build). The digest a task reports
  it ran (``imageDigest``) is, as on Fargate, the registry's: the one moto's ECR recorded for the
  image's tag (the deploy code's "push"), else the local image's own.
* Exits are learned from Docker's event stream (one thread for every container, no polling):
  ``die`` with its exit code, and whether the kernel's OOM killer ended it (``oom`` events and
  the container's ``State.OOMKilled``). If the stream drops it is reopened ``since`` the last
  event seen, so no exit is lost.
* Every container carries the label ``airlaunch.ecs-emulator=<owner>``, the owner being this
  process (PID namespace, pid and start time). On start, containers of owners no longer alive (a crashed
  emulator) are removed; on close, this emulator's own are stopped (SIGTERM, a short grace,
  then SIGKILL) and removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from airlaunch.stack.ecs_emulator.containers import ContainerSpec, StartFailure, cannot_pull

log = logging.getLogger(__name__)

# <registry>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>
_ECR_IMAGE = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/([^:@]+):([\w][\w.-]{0,127})$")


def ecr_digest(image: str) -> str | None:
    """The digest moto's ECR (this process's) recorded for an ECR image URI's tag; None for any other image."""
    match = _ECR_IMAGE.match(image)
    if match is None:
        return None
    from moto.ecr.models import ecr_backends

    account, region, repository, tag = match.groups()
    try:
        found = ecr_backends[account][region].repositories.get(repository)
    except KeyError:
        return None
    images = [i for i in (found.images if found is not None else []) if tag in i.image_tags]
    return str(images[0].image_digest) if images else None


LABEL = "airlaunch.ecs-emulator"  # value: the owning emulator (see owner_id)
LABEL_TASK = "airlaunch.ecs-emulator.task-arn"
LABEL_CONTAINER = "airlaunch.ecs-emulator.container-name"

ExitCallback = Callable[[str, int | None, bool], None]  # (container id, exit code, OOM-killed)


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]  # field 22, starttime
    except (OSError, IndexError):
        return None


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return "?"


def owner_id() -> str:
    """This process as a label value a later process can test for life: PID namespace, pid, start time."""
    return f"{_pid_namespace()}/{os.getpid()}/{_start_time(os.getpid()) or '?'}"


def owner_gone(owner: str) -> bool:
    """True only if the owner was a process of this PID namespace that no longer runs (pid reuse included).
    An owner of another namespace (an emulator in a container, say) cannot be judged and is left alone."""
    namespace, _, rest = owner.partition("/")
    pid_text, _, start = rest.partition("/")
    if namespace != _pid_namespace() or namespace == "?" or not pid_text.isdigit():
        return False
    now = _start_time(int(pid_text))
    return now is None or (start not in ("?", now))


class DockerRunner:
    """Containers of this emulator; ``on_exit`` is called once (at least) per container that exits."""

    def __init__(self, on_exit: ExitCallback, shutdown_grace: float = 2.0) -> None:
        self.client = docker.from_env(timeout=120, max_pool_size=16)
        self._events_client = docker.from_env(timeout=None)
        self.owner = owner_id()
        self._on_exit = on_exit
        self._shutdown_grace = shutdown_grace
        self._ops = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ecs-emulator-docker")
        self._oom: set[str] = set()
        self._stream: Any = None
        self._closing = False
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ecs-emulator-docker-events", daemon=True)

    def start(self) -> None:
        self.remove_leftovers()
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("the Docker event stream did not open within 30 s")

    # -- containers ---------------------------------------------------------------------------
    def image_digest(self, image: str) -> str:
        """The digest the task reports it ran: ECR's for the tag (ecr_digest), else the local image's registry
        digest, else its id; StartFailure(CannotPullContainerError) when the image is not in the local engine."""
        try:
            attrs = self.client.api.inspect_image(image)
        except (ImageNotFound, NotFound) as exc:
            raise StartFailure(cannot_pull(image)) from exc
        recorded = ecr_digest(image)
        if recorded:
            return recorded
        digests = [d.split("@", 1)[1] for d in attrs.get("RepoDigests") or [] if "@" in d]
        return digests[0] if digests else str(attrs.get("Id", ""))

    def create(self, spec: ContainerSpec, name: str, task_arn: str) -> str:
        labels = {LABEL: self.owner, LABEL_TASK: task_arn, LABEL_CONTAINER: spec.name, **spec.labels}
        host = self.client.api.create_host_config(
            network_mode="host",
            nano_cpus=spec.nano_cpus,
            mem_limit=f"{spec.memory_mib}m" if spec.memory_mib else None,
            memswap_limit=f"{spec.memory_mib}m" if spec.memory_mib else None,
        )
        try:
            created = self.client.api.create_container(
                spec.image,
                command=spec.command,
                entrypoint=spec.entrypoint,
                environment=spec.environment,
                name=name,
                labels=labels,
                host_config=host,
                working_dir=spec.working_dir,
                user=spec.user,
            )
        except ImageNotFound as exc:
            raise StartFailure(cannot_pull(spec.image)) from exc
        except APIError as exc:
            raise StartFailure(f"CannotCreateContainerError: {exc.explanation or exc}") from exc
        return str(created["Id"])

    def start_container(self, container_id: str) -> datetime | None:
        """Start it; the engine's own moment its process started (ECS's startedAt is the container's start,
        which comes before the start call returns and before the task's first line)."""
        try:
            self.client.api.start(container_id)
            started = str(self.client.api.inspect_container(container_id)["State"].get("StartedAt") or "")
        except APIError as exc:
            raise StartFailure(f"CannotStartContainerError: {exc.explanation or exc}") from exc
        except NotFound:
            return None  # gone already (it exited at once and was removed): the exit event says how
        try:  # RFC 3339 with nanoseconds: keep microseconds
            return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", started).replace("Z", "+00:00"))
        except ValueError:
            return None

    def signal(self, container_id: str, signal: str) -> None:
        """Send a signal without waiting (a worker does it); a container already gone is fine."""
        self._ops.submit(self._quietly, self.client.api.kill, container_id, signal)

    def remove(self, container_id: str) -> None:
        self._ops.submit(self._quietly, self.client.api.remove_container, container_id, force=True)

    def remove_now(self, container_id: str) -> None:
        self._quietly(self.client.api.remove_container, container_id, force=True)

    @staticmethod
    def _quietly(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except NotFound:
            pass
        except (APIError, DockerException) as exc:
            if "is not running" not in str(exc) and "No such container" not in str(exc):
                log.warning("Docker: %s%r failed: %s", fn.__name__, args, exc)

    def _labelled(self, owner: str | None = None, running_only: bool = False) -> list[dict[str, Any]]:
        label = f"{LABEL}={owner}" if owner else LABEL
        return list(self.client.api.containers(all=not running_only, filters={"label": label}))

    def remove_leftovers(self) -> int:
        """Remove containers whose emulator is gone (a crashed run); returns how many."""
        gone = [c for c in self._labelled() if owner_gone(str((c.get("Labels") or {}).get(LABEL, "")))]
        for c in gone:
            log.info("removing leftover container %s of a stopped emulator", c.get("Names"))
            self.remove_now(c["Id"])
        return len(gone)

    # -- exits ----------------------------------------------------------------------------------
    def _watch(self) -> None:
        since: int | None = None
        while not self._closing:
            try:
                self._stream = self._events_client.events(
                    decode=True,
                    since=since,
                    filters={"type": "container", "event": ["die", "oom"], "label": [f"{LABEL}={self.owner}"]},
                )
                self._ready.set()
                for event in self._stream:
                    since = int(event.get("time") or since or 0) or None
                    self._handle(event)
            except Exception as exc:  # the engine restarted or the stream broke: reopen it
                if self._closing:
                    return
                log.warning("Docker event stream lost (%s); reopening", exc)
                time.sleep(1)

    def _handle(self, event: dict[str, Any]) -> None:
        container_id = str(event.get("id") or (event.get("Actor") or {}).get("ID") or "")
        action = event.get("status") or event.get("Action")
        if action == "oom":
            self._oom.add(container_id)
            return
        if action != "die":
            return
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        code = attributes.get("exitCode")
        oom = container_id in self._oom
        self._oom.discard(container_id)
        with contextlib.suppress(APIError, DockerException):
            oom = oom or bool(self.client.api.inspect_container(container_id)["State"].get("OOMKilled"))
        self._on_exit(container_id, int(code) if code is not None and str(code).lstrip("-").isdigit() else None, oom)

    # -- shutdown -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop and remove every container of this emulator; then stop watching."""
        self._closing = True
        running = [c["Id"] for c in self._labelled(self.owner, running_only=True)]
        for container_id in running:
            self._quietly(self.client.api.kill, container_id, "SIGTERM")
        deadline = time.monotonic() + self._shutdown_grace
        while running and time.monotonic() < deadline:
            time.sleep(0.2)
            running = [c["Id"] for c in self._labelled(self.owner, running_only=True)]
        mine = [c["Id"] for c in self._labelled(self.owner)]
        list(self._ops.map(self.remove_now, mine))
        self._ops.shutdown(wait=True)
        if self._stream is not None:
            with contextlib.suppress(Exception):  # the stream may already be broken; closing is best effort
                self._stream.close()
        self._thread.join(timeout=5)
