"""Run catalog tasks as local Docker containers (the offline default).

A container is named after its run identity, so Docker's unique-name rule makes a
second launch of the same try fail with 409 instead of starting a duplicate; the
launcher then reports the existing container. Containers run unprivileged, with every
capability dropped, no host mounts, and remove themselves when they exit: their result,
log and exit code are in S3 by then.
"""

from __future__ import annotations

import logging

import docker
from docker.errors import APIError, ImageNotFound, NotFound
from docker.models.containers import Container

from airlaunch.catalog import TaskSpec
from airlaunch.launcher.backends.base import BackendState, LaunchError, Started, labels_for
from airlaunch.protocol import RunIdentity, TaskState

log = logging.getLogger(__name__)

_PENDING_STATES = {"created", "restarting"}


def container_name(identity: RunIdentity) -> str:
    return f"airlaunch-{identity.digest}"


class DockerBackend:
    name = "docker"

    def __init__(self, network: str, stop_grace_seconds: int, client: docker.DockerClient | None = None) -> None:
        self.network = network
        self.stop_grace_seconds = stop_grace_seconds
        self.client = client or docker.from_env()

    def find(self, identity: RunIdentity) -> str | None:
        found = self.client.containers.list(all=True, filters={"label": f"airlaunch.identity={identity.digest}"})
        live = [c for c in found if c.status in _PENDING_STATES | {"running"}]
        return live[0].id if live else None

    def start(self, spec: TaskSpec, identity: RunIdentity, env: dict[str, str]) -> Started:
        try:
            container = self.client.containers.run(
                spec.image,
                command=spec.runtime_args(),
                name=container_name(identity),
                labels=labels_for(spec, identity),
                environment=env,
                detach=True,
                auto_remove=True,
                network=self.network,
                mem_limit=f"{spec.memory_mib}m",
                memswap_limit=f"{spec.memory_mib}m",
                nano_cpus=int(spec.cpu * 1e9),
                pids_limit=512,
                privileged=False,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                stop_signal="SIGTERM",
            )
        except ImageNotFound as exc:
            raise LaunchError(
                f"image {spec.image!r} of task {spec.name!r} is not on the Docker host; build it (make images)"
            ) from exc
        except APIError as exc:
            if exc.status_code == 409:  # the name is taken: this identity is already running
                existing = self.client.containers.get(container_name(identity))
                log.info("container for %s already exists: %s", identity.execution_id, existing.id)
                return Started(task_ref=existing.id, launched=False)
            raise LaunchError(f"Docker refused to start task {spec.name!r}: {exc.explanation or exc}") from exc
        log.info("started container %s for %s", container.id, identity.execution_id)
        return Started(task_ref=container.id, launched=True)

    def _get(self, task_ref: str) -> Container | None:
        try:
            return self.client.containers.get(task_ref)
        except NotFound:
            return None

    def describe(self, task_ref: str) -> BackendState:
        container = self._get(task_ref)
        if container is None:
            return BackendState(TaskState.LOST, detail="container no longer exists")
        state = container.attrs.get("State", {})
        if container.status in _PENDING_STATES:
            return BackendState(TaskState.PENDING, detail=container.status)
        if container.status == "running":
            return BackendState(TaskState.RUNNING)
        detail = "killed: out of memory" if state.get("OOMKilled") else f"container {container.status}"
        return BackendState(TaskState.LOST, exit_code=state.get("ExitCode"), detail=detail)

    def stop(self, task_ref: str, reason: str) -> bool:
        container = self._get(task_ref)
        if container is None:
            return False
        log.info("stopping container %s: %s", task_ref, reason)
        try:
            container.stop(timeout=self.stop_grace_seconds)
        except NotFound:
            return False
        return True
