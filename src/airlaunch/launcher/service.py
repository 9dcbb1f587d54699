"""The launcher's actions, independent of how they are invoked (Lambda, the local watcher, tests).

What it guarantees:

* One container per try, and one try at a time: a launch finds a live container of the same
  try (same identity digest) and answers with it; it stops any live container of an earlier
  try of the same task instance before it starts, and records how that try ended.
* A try's results are its own: the try's prefix holds Airflow's task-instance id, so a
  re-created run or a cleared task never finds another try's status.json.
* Every try ends with a status.json: written by the task runtime, or, when its container
  ended without one (killed, OOM-killed, stopped before its runtime started, vanished), by
  ``settle`` on its behalf, with the exit code and the cause in words (``written_by``
  "launcher"). The write is conditional, so the runtime's own status always wins (launcher.try_files:
  the try's files in S3).
* A stop can come before the container exists: ``stop`` leaves stop.json and a status.json
  that a launch arriving later respects (it starts nothing). A container that a launch started
  while the stop was being written never runs its command: its runtime reads stop.json before
  the command starts (runtime.supervise), later than any look the launcher could take after the
  start, so the launcher takes none (one S3 GET a try fewer).
* Nothing half-done is left behind: a launch that fails after params.yaml was written
  deletes it again, whatever the error.
* A platform's "task stopped" event is trusted for the task it names only: the backend reads
  that task back from the platform, and a try that failed to start is started again from
  its catalog entry and its own params.yaml, never from anything the event carries.
* A try's run session (ECS: launcher.run_credentials) is renewed by the reaper while its task
  runs, and its files are deleted once the task has stopped or its launch failed.
* The result cache (launcher.cache) is one step of a launch, just before params.yaml: a hit serves
  the try and starts nothing; and one step of recording a container's end (``ended``,
  ``task_stopped``), where a success is cached.
* A catalog entry's secrets are settled in one step before anything of the launch is written or
  stopped (launcher.secrets): a missing one fails the launch and leaves nothing behind; their
  values reach only the container's environment (Docker), or never the launcher at all (ECS).

One job, a little over 300 lines with these guarantees: every action here settles a try through the
same ``settle`` and the same ordering of reads (a live task, then status.json, then stop.json), and
splitting the actions apart would spread that ordering over modules. What each step stands on is
elsewhere: the try's files (launcher.try_files), the platform (launcher.backends), the cache, the
secrets and the run sessions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from typing import Any

import yaml

from airlaunch.catalog import Catalog, CatalogFile, TaskSpec
from airlaunch.launcher.backends.base import (
    ENV_START_ATTEMPT,
    Backend,
    BackendState,
    LaunchError,
    LiveTask,
    Started,
)
from airlaunch.launcher.cache import ResultCache
from airlaunch.launcher.platform_events import EcsTaskStateChange
from airlaunch.launcher.run_credentials import RunSessions
from airlaunch.launcher.secrets import LaunchSecrets
from airlaunch.launcher.settings import LauncherSettings
from airlaunch.launcher.try_files import TryFiles, params_document
from airlaunch.protocol import (
    ENV_BUCKET,
    ENV_CACHE_CLAIM,
    ENV_EXECUTION_ID,
    ENV_PREFIX,
    ENV_TIMEOUT_SECONDS,
    Description,
    EventReply,
    Handle,
    LauncherMoments,
    LaunchRequest,
    ResultLayout,
    RunIdentity,
    Status,
    TaskState,
    identity_of_prefix,
    utcnow,
)

log = logging.getLogger(__name__)

# Forwarded from the launcher's own environment so local tasks reach the same AWS (LocalStack).
_FORWARDED_ENV = ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
REAP_GRACE_SECONDS = 60  # past its timeout, a task's own runtime had this long to stop it
START_ATTEMPTS = 3  # starts of one try that failed to start (image pull, ENI) before the try fails


class Launcher:
    def __init__(
        self,
        settings: LauncherSettings,
        catalog: Catalog | CatalogFile,
        backend: Backend,
        s3: Any,
        environ: dict[str, str],
        secrets: LaunchSecrets | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.backend = backend
        self.s3 = s3
        self.files = TryFiles(s3, settings.key_prefix)
        self.forwarded_env = {k: environ[k] for k in _FORWARDED_ENV if environ.get(k)}
        self.run_sessions: RunSessions | None = getattr(backend, "run_sessions", None)  # ECS with a files role
        self.cache = ResultCache(settings, catalog, backend, s3)
        # ECS's agent injects a task's secrets itself; on Docker the launcher reads them for the container
        self.secrets = secrets or LaunchSecrets(read_values=not getattr(backend, "injects_secrets", False))

    def layout_of(self, identity: RunIdentity) -> ResultLayout:
        return ResultLayout.for_identity(self.settings.bucket, self.settings.key_prefix, identity)

    # -- launch -----------------------------------------------------------------------------------
    def launch(self, request: LaunchRequest) -> Handle:
        """Start the task unless this try already ran or runs; never wait for it."""
        received_at = utcnow()
        identity = request.identity
        spec = self.catalog.get(request.task).with_overrides(request.overrides)
        layout = self.layout_of(identity)

        def handle(task_ref: str, launched: bool, started: Started | None = None) -> Handle:
            moments = LauncherMoments(
                received_at=received_at,
                container_created_at=started.created_at if started else None,
                container_started_at=started.started_at if started else None,
            )
            timings = {k: v for k, v in asdict(moments).items() if v is not None}
            return Handle(self.backend.name, task_ref, layout.bucket, layout.prefix, launched, timings)

        # Order matters: a live task first, then a finished one, so a task that ends between
        # the two checks is still seen.
        live = self.backend.live(identity)
        mine = [task for task in live if task.digest == identity.digest]
        if mine:
            log.info("already running: %s (%s)", identity.execution_id, mine[0].task_ref)
            return handle(mine[0].task_ref, launched=False)
        if self.files.read_status(layout) is not None:
            log.info("already finished (or stopped before it started): %s", identity.execution_id)
            return handle("", launched=False)
        secret_env = self.secrets.environment(spec)  # before anything is stopped or written: a missing one fails here
        for earlier in live:  # a new try never runs beside an old one
            why = f"superseded by try {identity.try_key} of the same task"
            self.settle(earlier.task_ref, earlier.layout, why)
            self.backend.stop(earlier.task_ref, why)  # its status.json comes before its exit: wait for that too

        params_yaml = yaml.safe_dump(params_document(request), sort_keys=False).encode()
        cached = self.cache.step(request, spec, layout, params_yaml)  # served from it, or what to cache at the end
        if cached.served_from is not None:
            return replace(handle("", launched=False), cached_from=cached.served_from)
        self.files.put_params(layout, params_yaml)
        try:
            env = {**self._task_env(spec, layout, identity), **secret_env, **cached.env}
            started = self._start(spec, identity, env)
        except BaseException:  # no params.yaml without a container: it would read as a try still running
            self.files.delete_params(layout)
            self._end_run_session(layout)
            raise
        return handle(started.task_ref, started.launched, started)

    def _task_env(self, spec: TaskSpec, layout: ResultLayout, identity: RunIdentity) -> dict[str, str]:
        env = {
            **spec.env,
            **self.forwarded_env,
            ENV_BUCKET: layout.bucket,
            ENV_PREFIX: layout.prefix,
            ENV_EXECUTION_ID: identity.execution_id,
            ENV_TIMEOUT_SECONDS: str(spec.timeout_seconds),
        }
        if self.settings.task_endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.settings.task_endpoint_url
        return env

    def _start(self, spec: TaskSpec, identity: RunIdentity, env: dict[str, str]) -> Started:
        """Start the try's container. A start can fail after the platform took it (an answer lost to a
        timeout): if a container of this try runs, it is the one, and its params.yaml must stay."""
        try:
            return self.backend.start(spec, identity, env)
        except Exception:
            mine = [task for task in self.backend.live(identity) if task.digest == identity.digest]
            if not mine:
                raise
            log.warning("starting %s failed, but its container runs: taking that one", identity.execution_id)
            return Started(task_ref=mine[0].task_ref, launched=True)

    # -- describe, stop, settle -------------------------------------------------------------------
    def describe(self, handle: Handle) -> Description:
        """status.json decides when present; otherwise ask the platform (and record an end it reports)."""
        status = self.files.read_status(handle.layout)
        if status is not None:
            return Description(status.state, status)
        if not handle.task_ref:
            return Description(TaskState.LOST, detail="no task was started and no status.json exists")
        seen = self.backend.describe(handle.task_ref)
        if seen.state is TaskState.LOST:
            identity = identity_of_prefix(handle.prefix)
            again = [t for t in self.backend.live(identity) if t.digest == identity.digest] if identity else []
            if again:  # its first start failed and the launcher started it again
                return Description(TaskState.RUNNING, detail=f"started again as {again[0].task_ref}")
            status = self.settle(handle.task_ref, handle.layout, None, seen)
            return Description(status.state, status)
        return Description(seen.state, detail=seen.detail)

    def stop(
        self, layout: ResultLayout, task_ref: str, reason: str, identity: RunIdentity | None = None
    ) -> Description:
        """Stop a try, by its handle's task or by its identity (when the launch may still be in flight)."""
        refs = [task_ref] if task_ref else []
        if identity is not None:
            refs += [t.task_ref for t in self.backend.live(identity) if t.digest == identity.digest]
        status: Status | None = None
        for ref in dict.fromkeys(refs):
            status = self.settle(ref, layout, reason)
        if status is None:  # nothing runs (yet): a launch arriving after this must not start it
            status = self.settle("", layout, reason)
        return Description(status.state, status)

    def settle(self, task_ref: str, layout: ResultLayout, why: str | None, seen: BackendState | None = None) -> Status:
        """Make sure a try has ended and says so: stop it if it still runs (``why``: who asked, in words),
        then, if its runtime wrote no status.json, write one on its behalf. Returns the try's status."""
        status = self.files.read_status(layout)
        if status is not None:
            return status
        if why is not None:
            self.files.request_stop(layout, why)
            if task_ref:
                self.backend.stop(task_ref, why)
                status = self.files.read_status(layout)  # its runtime records the stop itself when it can
                if status is not None:
                    return status
        if task_ref and (seen is None or seen.state is not TaskState.LOST):
            seen = self.backend.describe(task_ref)
        return self.files.write_stand_in(layout, seen if task_ref else None, self.files.read_stop(layout))

    def ended(self, task: LiveTask) -> Status | None:
        """A task's container ended (the watcher saw it): record how, unless its runtime did, then let
        the platform forget the container. None when nothing ended, or when its exit code 0 already says
        that its runtime stored status.json: the runtime leaves with 0 only once that write succeeded
        (``runtime.entrypoint``), so status.json is not read again (one S3 GET a try fewer) unless the
        try's success is to be cached. An image that exits 0 without the runtime still ends: the trigger's
        periodic ``describe`` finds no status.json and no container, and ``settle`` records it."""
        seen = self.backend.describe(task.task_ref)
        if seen.state is not TaskState.LOST:
            return None  # still running after all (e.g. restarted): nothing ended
        if seen.exit_code == 0 and not task.cache:
            self.backend.forget(task.task_ref)
            return None
        status = self.settle(task.task_ref, task.layout, None, seen)
        self.cache.record(task, status, seen)
        self.backend.forget(task.task_ref)
        return status

    def task_stopped(self, change: EcsTaskStateChange) -> EventReply:
        """A platform's "task stopped" event (ECS, through EventBridge): record how the task ended unless
        its runtime did, or start its try again if it failed to start for a reason that may pass (within
        START_ATTEMPTS). Only the task the event names is taken from it; the rest comes from the platform
        and from S3, so a forged or repeated event starts nothing and writes nothing a real one would not."""
        stopped = self.backend.stopped_task(change.task_arn)
        if stopped is None:
            return EventReply(ignored=f"{change.task_arn} is not a stopped airlaunch task of this launcher")
        task, seen = stopped.task, stopped.seen
        if task.layout.bucket != self.settings.bucket:
            return EventReply(ignored=f"{change.task_arn} keeps its files outside bucket {self.settings.bucket}")
        if seen.ecs_times is not None:
            self.files.put_ecs_times(task.layout, seen.ecs_times)
        status = self.files.read_status(task.layout)
        if status is not None:
            self._end_run_session(task.layout)
            self.cache.record(task, status, seen)
            return EventReply(recorded="by its runtime", state=status.state.value)
        if (
            stopped.may_start_again
            and stopped.start_attempt < START_ATTEMPTS
            and self.files.read_stop(task.layout) is None
        ):
            log.warning("%s failed to start (%s): starting it again", task.layout.prefix, seen.detail)
            try:
                again = self._start_again(task, stopped.start_attempt + 1)
            except LaunchError as exc:
                if exc.retryable:  # the event is delivered again (Lambda's retries of an asynchronous invoke)
                    raise
                again, seen = None, replace(seen, detail=f"{seen.detail}; starting it again failed: {exc}")
            if again is not None:
                return EventReply(started_again=again)
        self._end_run_session(task.layout)
        status = self.settle(task.task_ref, task.layout, None, seen)
        return EventReply(recorded="by the launcher", state=status.state.value, error=status.error)

    def _end_run_session(self, layout: ResultLayout) -> None:
        """The try's task has stopped and will not start again (ECS read its session file when it started)."""
        if self.run_sessions is not None:
            self.run_sessions.end(layout)

    def _start_again(self, task: LiveTask, attempt: int) -> str | None:
        """Start a try once more as its launch asked (its params.yaml, its catalog entry as it reads now);
        the running task of the try if it already runs again (a repeated event); None if the try's
        params.yaml is gone or is not that try's."""
        request = self.files.read_params(task.layout)
        if request is None or request.identity.digest != task.digest:
            log.error("cannot start %s again: its params.yaml is missing or names another try", task.layout.prefix)
            return None
        identity = request.identity
        running = [t for t in self.backend.live(identity) if t.digest == identity.digest]
        if running:
            return running[0].task_ref
        spec = self.catalog.get(request.task).with_overrides(request.overrides)
        env = {**self._task_env(spec, task.layout, identity), **self.secrets.environment(spec)}
        env[ENV_START_ATTEMPT] = str(attempt)
        if task.cache:  # the claim it was started with: a success is still cached
            env[ENV_CACHE_CLAIM] = task.cache
        return self._start(spec, identity, env).task_ref

    def reap(self, now: float | None = None) -> list[str]:
        """Stop live tasks whose timeout passed long ago (their runtime failed to), and renew the run
        sessions of the others that need it; the refs stopped."""
        now = now or time.time()
        reaped = []
        for task in self.backend.live_tasks():
            late = now - (task.started_at + task.timeout_seconds) if task.started_at and task.timeout_seconds else 0
            if late <= REAP_GRACE_SECONDS:
                self._renew_run_session(task)
                continue
            why = f"reaped by the launcher: its timeout of {task.timeout_seconds} s passed {late:.0f} s ago"
            self.settle(task.task_ref, task.layout, why)
            reaped.append(task.task_ref)
        return reaped

    def _renew_run_session(self, task: LiveTask) -> None:
        """A fresh run session for a live task whose session ends soon; a failure waits for the next reap."""
        if self.run_sessions is None:
            return
        try:
            if self.run_sessions.renew(task.layout):
                log.info("renewed the run session of %s", task.layout.prefix)
        except Exception:
            log.exception("renewing the run session of %s failed; the next reap tries again", task.layout.prefix)
