"""Run catalog tasks as local Docker containers (the offline default).

A container is named after its run identity, so Docker's unique-name rule makes a
second launch of the same try fail with 409 instead of starting a duplicate; the
launcher then reports the existing container. Containers run unprivileged, with every
capability dropped and no host mounts. They are kept after they exit, so their exit code
and OOM flag can be read (``describe``) and recorded; the launcher's event watcher
(``docker_events``) removes each one (``forget``) once its end is in S3. Reading a container's
record (its try, its files, how it ended) is launcher.backends.docker_containers'.

A task's secrets reach it in its environment, read by the launcher at the launch
(launcher.secrets), so whoever may inspect containers on the Docker engine sees them, as with any
Docker environment; the log tail of a stand-in status.json is masked as the runtime masks its own
(airlaunch.protocol.masking).
"""

from __future__ import annotations

import contextlib
import logging

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from requests.exceptions import RequestException

from airlaunch.catalog import TaskSpec
from airlaunch.launcher.backends.base import (
    BackendState,
    LaunchError,
    LiveTask,
    Started,
    StoppedTask,
    labels_for,
)
from airlaunch.launcher.backends.docker_containers import (
    BUCKET_LABEL,
    CACHE_LABEL,
    LIVE_STATES,
    LOG_TAIL_LINES,
    PENDING_STATES,
    PREFIX_LABEL,
    TIMEOUT_LABEL,
    container_name,
    environment,
    how_it_ended,
    iso,
    live_task,
)
from airlaunch.protocol import (
    ENV_BUCKET,
    ENV_CACHE_CLAIM,
    ENV_PREFIX,
    ENV_TIMEOUT_SECONDS,
    RunIdentity,
    StopReason,
    TaskState,
    mask,
    secret_values,
)

log = logging.getLogger(__name__)


class DockerBackend:
    name = "docker"
    injects_secrets = False  # the launcher reads a task's secrets and gives them to the container itself

    def __init__(
        self,
        network: str,
        stop_grace_seconds: int,
        scope: str = "default",
        client: docker.DockerClient | None = None,
        *,
        cpu_shares: int,  # LauncherSettings.docker_cpu_shares (AIRLAUNCH_DOCKER_CPU_SHARES)
    ) -> None:
        self.network = network
        self.cpu_shares = cpu_shares
        self.stop_grace_seconds = stop_grace_seconds
        self.scope = scope  # the label that tells this launcher's containers from another stack's
        self.client = client or docker.from_env()

    @property
    def scope_label(self) -> str:
        return f"airlaunch.scope={self.scope}"

    def _list(self, label: str, live_only: bool = True) -> list[Container]:
        """One listing, no inspect per container (sparse): what a LiveTask needs is in the labels. A
        container without them (started by an older launcher) is inspected; one gone meanwhile is left out."""
        try:
            found = self.client.containers.list(all=True, sparse=True, filters={"label": [label, self.scope_label]})
        except DockerException as exc:
            raise LaunchError(f"cannot list containers on the Docker engine: {exc}", retryable=True) from exc
        listed = []
        for container in found:
            if PREFIX_LABEL not in (container.attrs.get("Labels") or {}):
                try:
                    container.reload()
                except NotFound:
                    continue
                except DockerException as exc:
                    raise LaunchError(f"cannot inspect container {container.id}: {exc}", retryable=True) from exc
            listed.append(container)
        return [c for c in listed if c.status in LIVE_STATES] if live_only else listed

    def task(self, task_ref: str) -> LiveTask | None:
        container = self._get(task_ref)
        return live_task(container) if container is not None and "airlaunch.identity" in container.labels else None

    def live(self, identity: RunIdentity) -> list[LiveTask]:
        return [live_task(c) for c in self._list(f"airlaunch.slot={identity.slot}")]

    def live_tasks(self) -> list[LiveTask]:
        return [live_task(c) for c in self._list("airlaunch.identity")]

    def ended_tasks(self) -> list[LiveTask]:
        """Containers that ended and are still kept (their end not yet recorded)."""
        return [live_task(c) for c in self._list("airlaunch.identity", live_only=False) if c.status not in LIVE_STATES]

    def start(self, spec: TaskSpec, identity: RunIdentity, env: dict[str, str]) -> Started:
        try:
            container = self.client.containers.run(
                spec.image,
                command=spec.runtime_args(),
                name=container_name(identity),
                labels={
                    **labels_for(spec, identity),
                    "airlaunch.scope": self.scope,
                    BUCKET_LABEL: env.get(ENV_BUCKET, ""),
                    PREFIX_LABEL: env.get(ENV_PREFIX, ""),
                    TIMEOUT_LABEL: env.get(ENV_TIMEOUT_SECONDS, ""),
                    CACHE_LABEL: env.get(ENV_CACHE_CLAIM, ""),
                },
                environment=env,
                detach=True,
                network=self.network,
                mem_limit=f"{spec.memory_mib}m",
                memswap_limit=f"{spec.memory_mib}m",
                nano_cpus=int(spec.cpu * 1e9),
                cpu_shares=self.cpu_shares,
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
                existing = self._existing(identity)
                if existing is None:  # it ended and was removed in between: the caller looks again
                    raise LaunchError(
                        f"container for {identity.execution_id} vanished during the launch", retryable=True
                    ) from exc
                return existing
            raise LaunchError(f"Docker refused to start task {spec.name!r}: {exc.explanation or exc}") from exc
        except (DockerException, RequestException) as exc:
            # A timeout can come after the engine created (and maybe started) the container: take that one.
            existing = self._existing(identity) if isinstance(exc, RequestException) else None
            if existing is not None:
                return existing
            raise LaunchError(
                f"cannot reach the Docker engine to start task {spec.name!r}: {exc}", retryable=True
            ) from exc
        log.info("started container %s for %s", container.id, identity.execution_id)
        with contextlib.suppress(DockerException):  # the engine's own created and started times (report phases)
            container.reload()
        state = container.attrs.get("State", {})
        return Started(
            task_ref=container.id or "",
            launched=True,
            created_at=iso(container.attrs.get("Created", "")),
            started_at=iso(state.get("StartedAt", "")),
        )

    def image_digest(self, spec: TaskSpec) -> str | None:
        """The image id of the entry's image on this engine (its content: a rebuild under the same tag has
        another id), which is what a container started now runs and what ``describe`` reports it ran."""
        try:
            return str(self.client.images.get(spec.image).id or "") or None
        except ImageNotFound:
            return None
        except (DockerException, RequestException) as exc:
            raise LaunchError(f"cannot inspect image {spec.image!r}: {exc}", retryable=True) from exc

    def _existing(self, identity: RunIdentity) -> Started | None:
        """The container an earlier start of this try left (its name is the try's), started if it was only
        created (a start that failed half-way); None if there is none."""
        try:
            existing = self.client.containers.get(container_name(identity))
            if existing.status == "created":
                existing.start()
                log.info("started container %s for %s, created earlier", existing.id, identity.execution_id)
                return Started(task_ref=existing.id or "", launched=True)
        except NotFound:
            return None
        except (DockerException, RequestException) as exc:
            raise LaunchError(f"cannot reach the Docker engine: {exc}", retryable=True) from exc
        log.info("container for %s already exists: %s", identity.execution_id, existing.id)
        return Started(task_ref=existing.id or "", launched=False)

    def _get(self, task_ref: str) -> Container | None:
        try:
            return self.client.containers.get(task_ref)
        except NotFound:
            return None

    def describe(self, task_ref: str) -> BackendState:
        container = self._get(task_ref)
        if container is None:
            return BackendState(TaskState.LOST, detail="its container no longer exists", reason=StopReason.LOST)
        state = container.attrs.get("State", {})
        if container.status in PENDING_STATES:
            return BackendState(TaskState.PENDING, detail=container.status)
        if container.status == "running":
            return BackendState(TaskState.RUNNING)
        reason, detail = how_it_ended(state, int(container.attrs.get("HostConfig", {}).get("Memory") or 0))
        try:
            output = container.logs(tail=LOG_TAIL_LINES).decode("utf-8", "replace").splitlines()
        except DockerException:
            output = []
        config = container.attrs.get("Config") or {}
        secrets = secret_values(environment(config))
        output = [mask(line, secrets) for line in output] if secrets else output
        return BackendState(
            TaskState.LOST,
            exit_code=state.get("ExitCode"),
            detail=detail,
            reason=reason,
            log_tail=output,
            host=(container.id or "")[:12],
            image=str(container.attrs.get("Image") or "") or None,
        )

    def stop(self, task_ref: str, reason: str) -> bool:
        container = self._get(task_ref)
        if container is None or container.status not in LIVE_STATES:
            return False
        log.info("stopping container %s: %s", task_ref, reason)
        try:
            container.stop(timeout=self.stop_grace_seconds)
        except NotFound:
            return False
        return True

    def stopped_task(self, task_ref: str) -> StoppedTask | None:
        """Docker's ends come through the event watcher (docker_events), not through the handler."""
        return None

    def forget(self, task_ref: str) -> None:
        container = self._get(task_ref)
        if container is not None and container.status not in LIVE_STATES:
            try:
                container.remove()
            except (NotFound, APIError) as exc:  # already being removed
                log.debug("container %s not removed: %s", task_ref, exc)
