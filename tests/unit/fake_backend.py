"""An in-memory container platform behind the launcher's ``Backend`` protocol, for unit tests of ``Launcher``.

It keeps the rules of a real platform that the launcher relies on, as the Docker backend
(airlaunch.launcher.backends.docker) keeps them, and says how a container ended in Docker's own
words (``how_it_ended``), so a unit test reads what a stack test reads:

* ``start`` is idempotent per try and start: a try whose container exists (running, or ended and not
  yet forgotten) gets that container back with ``launched`` False (Docker: the container is named
  after the try's digest, and a second create collides); a start again after a failed start
  (``AIRLAUNCH_START_ATTEMPT``) is a new container, as ECS's client token per start makes it.
* ``live`` finds the live containers of a task instance, any try (its slot); ``live_tasks`` every
  live one, each with the layout, start time and timeout it was started with (its environment).
* An ended container is kept, so that ``describe`` reads its exit code, OOM flag and last output
  lines, until ``forget`` removes it; ``describe`` of a container that no longer exists is LOST.
* ``stop`` sends a SIGTERM and, like ``docker stop``, returns once the container has ended (False if
  it was not running). What the container does with the SIGTERM is the test's to choose, per
  container or for every new one (:class:`Sigterm`): its runtime records the stop, it dies before
  its runtime could, it ignores it and is killed after the grace period, or it lingers (ECS's
  StopTask returns before the task has stopped) until the test ends it.
* ``stopped_task`` is the platform's reading of a stopped task (ECS: the task a "task stopped" event
  names): None for a task it does not know or that still runs.

The task runtime inside each container is played by the fake too, as far as the launcher can see
it: ``finish`` writes status.json as the runtime does (``written_by`` "runtime") and ends the
container with the command's exit code; a SIGTERM the runtime handles is recorded as the runtime
records it (stop.json's reason if airlaunch left one, else "the platform ended the container").

What else a test controls: the next start fails (``refuse_next_start``) or fails after the platform
took it (``lose_next_answer``); ``before_start`` runs inside ``start`` before the container exists
(to let a stop arrive mid-launch); a container can be held before it runs (``hold_starts``), made
to run, exit with a code, be killed, be OOM-killed, fail to start or vanish. ``journal`` records
starts, SIGTERMs and ends in the order they happened.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from airlaunch.aws_errors import body_if_present
from airlaunch.catalog import TaskSpec
from airlaunch.launcher.backends.base import ENV_START_ATTEMPT, BackendState, LiveTask, Started, StoppedTask
from airlaunch.launcher.backends.docker_containers import LOG_TAIL_LINES, how_it_ended
from airlaunch.protocol import (
    ENV_BUCKET,
    ENV_CACHE_CLAIM,
    ENV_EXECUTION_ID,
    ENV_PREFIX,
    ENV_TIMEOUT_SECONDS,
    ResultLayout,
    RunIdentity,
    Status,
    StopReason,
    StopRequest,
    TaskState,
    mask,
    secret_values,
)
from airlaunch.runtime.outcome import describe_failure
from airlaunch.runtime.supervise import EXIT_STOPPED

EXIT_KILLED = 137  # 128 + SIGKILL
IMAGE = "sha256:" + "f" * 64  # what every container of the fake runs, by content


class Sigterm(Enum):
    """What a container does with the SIGTERM of a stop."""

    RUNTIME = "runtime"  # its runtime records the stop in status.json, then the container exits 143
    EXIT = "exit"  # it dies of it before its runtime could record anything (no handler yet): exit 143
    IGNORE = "ignore"  # it ignores it and is killed after the grace period (SIGKILL): exit 137
    LINGER = "linger"  # stop returns at once, the container runs on until the test ends it (ECS's StopTask)


@dataclass
class FakeContainer:
    ref: str
    spec: TaskSpec
    identity: RunIdentity
    env: dict[str, str]
    started_at: float
    on_sigterm: Sigterm
    params_at_start: bytes | None  # the try's params.yaml when the container started (what its runtime reads)
    state: str = "running"  # "created", "running" or "exited" (Docker's words)
    exit_code: int = 0
    oom_killed: bool = False
    platform_error: str = ""  # the platform could not run it (Docker's State.Error)
    may_start_again: bool = False  # it failed to start for a reason that may pass (ECS: TaskFailedToStart)
    output: list[str] = field(default_factory=list)
    sigterms: list[str] = field(default_factory=list)  # the reason of each stop it received

    @property
    def live(self) -> bool:
        return self.state in ("created", "running")

    @property
    def layout(self) -> ResultLayout:
        return ResultLayout(bucket=self.env.get(ENV_BUCKET, ""), prefix=self.env.get(ENV_PREFIX, ""))

    def as_live_task(self) -> LiveTask:
        timeout = self.env.get(ENV_TIMEOUT_SECONDS, "")
        return LiveTask(
            task_ref=self.ref,
            digest=self.identity.digest,
            layout=self.layout,
            started_at=self.started_at,
            timeout_seconds=int(timeout) if timeout.isdigit() else None,
            cache=self.env.get(ENV_CACHE_CLAIM, ""),
        )


class FakeBackend:
    """The platform: containers in a dict, their task runtime writing to the S3 client it is given."""

    name = "fake"
    injects_secrets = False  # as Docker: the launcher reads a task's secrets for the container's environment

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.now = 1_800_000_000.0  # the platform's clock (epoch seconds): containers start at it
        self.containers: dict[str, FakeContainer] = {}  # every container not yet forgotten, by ref
        self.journal: list[tuple[str, str]] = []  # ("start" | "sigterm" | "ended", ref), in order
        self.stops: list[tuple[str, str]] = []  # (ref, reason) of every stop that reached a live container
        self.on_sigterm = Sigterm.RUNTIME  # what new containers do with a SIGTERM
        self.hold_starts = False  # new containers stay "created" (pending) until ``run``
        self.refuse_next_start: BaseException | None = None  # raised by the next start, which starts nothing
        self.lose_next_answer = False  # the next start starts its container, then raises as a lost answer would
        self.before_start: Callable[[RunIdentity], None] | None = None  # runs once, in start, before creating
        self._created = 0

    # -- the Backend protocol ---------------------------------------------------------------------
    def live(self, identity: RunIdentity) -> list[LiveTask]:
        return [c.as_live_task() for c in self.containers.values() if c.live and c.identity.slot == identity.slot]

    def live_tasks(self) -> list[LiveTask]:
        return [c.as_live_task() for c in self.containers.values() if c.live]

    def start(self, spec: TaskSpec, identity: RunIdentity, env: dict[str, str]) -> Started:
        if self.before_start is not None:
            hook, self.before_start = self.before_start, None
            hook(identity)
        if self.refuse_next_start is not None:
            refusal, self.refuse_next_start = self.refuse_next_start, None
            raise refusal
        attempt = env.get(ENV_START_ATTEMPT, "1")
        existing = [
            c
            for c in self.containers.values()
            if c.identity.digest == identity.digest and c.env.get(ENV_START_ATTEMPT, "1") == attempt
        ]
        if existing:  # Docker: the try's container name is taken; ECS: the same client token (try, start)
            return Started(task_ref=existing[0].ref, launched=False)
        self._created += 1
        ref = hashlib.sha256(f"{identity.digest}/{self._created}".encode()).hexdigest()
        layout = ResultLayout(bucket=env.get(ENV_BUCKET, ""), prefix=env.get(ENV_PREFIX, ""))
        self.containers[ref] = FakeContainer(
            ref=ref,
            spec=spec,
            identity=identity,
            env=dict(env),
            started_at=self.now,
            on_sigterm=self.on_sigterm,
            params_at_start=self._read(layout.params_key, layout),
            state="created" if self.hold_starts else "running",
        )
        self.journal.append(("start", ref))
        self._runtime_starts(self.containers[ref])
        if self.lose_next_answer:
            self.lose_next_answer = False
            raise TimeoutError("read timed out: the platform's answer to the start was lost")
        return Started(task_ref=ref, launched=True, created_at="2027-01-15T08:00:00.000+00:00")

    def image_digest(self, spec: TaskSpec) -> str | None:
        return IMAGE

    def describe(self, task_ref: str) -> BackendState:
        container = self.containers.get(task_ref)
        if container is None:
            return BackendState(TaskState.LOST, detail="its container no longer exists", reason=StopReason.LOST)
        if container.state == "created":
            return BackendState(TaskState.PENDING, detail="created")
        if container.state == "running":
            return BackendState(TaskState.RUNNING)
        state = {"ExitCode": container.exit_code, "OOMKilled": container.oom_killed, "Error": container.platform_error}
        reason, detail = how_it_ended(state, container.spec.memory_mib * 2**20)
        secrets = secret_values(container.env)
        tail = container.output[-LOG_TAIL_LINES:]
        return BackendState(
            TaskState.LOST,
            exit_code=container.exit_code,
            detail=detail,
            reason=reason,
            log_tail=[mask(line, secrets) for line in tail] if secrets else tail,
            host=container.ref[:12],
            image=IMAGE,
        )

    def stop(self, task_ref: str, reason: str) -> bool:
        container = self.containers.get(task_ref)
        if container is None or not container.live:
            return False
        self.stops.append((task_ref, reason))
        container.sigterms.append(reason)
        self.journal.append(("sigterm", task_ref))
        how = container.on_sigterm
        if how is Sigterm.LINGER:
            return True
        if how is Sigterm.RUNTIME and container.state == "running":
            self._runtime_records_the_sigterm(container)
            self._end(container, EXIT_STOPPED)
        elif how is Sigterm.IGNORE:
            self._end(container, EXIT_KILLED)
        else:  # EXIT, or a container whose runtime never ran
            self._end(container, EXIT_STOPPED)
        return True

    def forget(self, task_ref: str) -> None:
        container = self.containers.get(task_ref)
        if container is not None and not container.live:
            del self.containers[task_ref]

    def stopped_task(self, task_ref: str) -> StoppedTask | None:
        container = self.containers.get(task_ref)
        if container is None or container.live:
            return None
        attempt = container.env.get(ENV_START_ATTEMPT, "1")
        return StoppedTask(
            task=container.as_live_task(),
            seen=self.describe(task_ref),
            start_attempt=int(attempt) if attempt.isdigit() else 1,
            may_start_again=container.may_start_again,
        )

    # -- what DockerWatcher uses besides the protocol ---------------------------------------------
    def task(self, task_ref: str) -> LiveTask | None:
        container = self.containers.get(task_ref)
        return container.as_live_task() if container is not None else None

    def ended_tasks(self) -> list[LiveTask]:
        return [c.as_live_task() for c in self.containers.values() if not c.live]

    # -- what a test does to a container ----------------------------------------------------------
    def of(self, identity: RunIdentity) -> list[FakeContainer]:
        """The containers of exactly this try that the platform still keeps."""
        return [c for c in self.containers.values() if c.identity.digest == identity.digest]

    def print(self, task_ref: str, *lines: str) -> None:
        self.containers[task_ref].output.extend(lines)

    def run(self, task_ref: str) -> None:
        """A held (created) container starts running."""
        self.containers[task_ref].state = "running"
        self._runtime_starts(self.containers[task_ref])

    def runtime_writes_status(self, task_ref: str, exit_code: int = 0) -> Status:
        """The command ended with ``exit_code`` and the runtime writes status.json (the container still exits)."""
        container = self.containers[task_ref]
        reason = StopReason.EXIT
        error = describe_failure(exit_code, reason, collections.deque(container.output)) if exit_code else None
        return self._runtime_writes(container, exit_code, reason, error)

    def finish(self, task_ref: str, exit_code: int = 0) -> Status:
        """The command ends with ``exit_code``; the runtime writes status.json, and the container exits."""
        status = self.runtime_writes_status(task_ref, exit_code)
        self._end(self.containers[task_ref], exit_code)
        return status

    def act_on_sigterm(self, task_ref: str) -> None:
        """A lingering container (Sigterm.LINGER) now ends as its runtime ends it on a SIGTERM: recorded, 143."""
        container = self.containers[task_ref]
        self._runtime_records_the_sigterm(container)
        self._end(container, EXIT_STOPPED)

    def exit(self, task_ref: str, exit_code: int) -> None:
        """The container ends with ``exit_code`` and its runtime records nothing (it died, or never ran)."""
        self._end(self.containers[task_ref], exit_code)

    def kill(self, task_ref: str) -> None:
        """A SIGKILL from outside airlaunch (docker kill, kill -9): nothing recorded."""
        self.exit(task_ref, EXIT_KILLED)

    def oom(self, task_ref: str) -> None:
        """The kernel kills it at its memory limit: nothing recorded."""
        container = self.containers[task_ref]
        container.oom_killed = True
        self._end(container, EXIT_KILLED)

    def fail_to_start(self, task_ref: str, error: str, *, may_pass: bool = True) -> None:
        """The platform could not run it (an image pull, the ENI); ``may_pass``: a new start may work."""
        container = self.containers[task_ref]
        container.platform_error, container.may_start_again = error, may_pass
        self._end(container, 127)

    def vanish(self, task_ref: str) -> None:
        """The container is gone without a trace (docker rm -f, a task ECS no longer knows)."""
        del self.containers[task_ref]
        self.journal.append(("ended", task_ref))

    # -- the runtime inside -----------------------------------------------------------------------
    def _end(self, container: FakeContainer, exit_code: int) -> None:
        container.state, container.exit_code = "exited", exit_code
        self.journal.append(("ended", container.ref))

    def _read(self, key: str, layout: ResultLayout) -> bytes | None:
        return body_if_present(self.s3, layout.bucket, key)

    def _runtime_starts(self, container: FakeContainer) -> None:
        """As the runtime does before the command starts: a stop.json there already means it never starts."""
        if container.state == "running" and self._read(container.layout.stop_key, container.layout) is not None:
            self._runtime_records_the_sigterm(container)
            self._end(container, EXIT_STOPPED)

    def _runtime_records_the_sigterm(self, container: FakeContainer) -> None:
        """As the runtime does: stop.json says airlaunch asked, and why; without it the platform stopped it."""
        stop = self._read(container.layout.stop_key, container.layout)
        reason = StopReason.STOPPED if stop is not None else StopReason.PLATFORM
        detail = StopRequest.from_json(stop).reason if stop is not None else ""
        tail = collections.deque(container.output)
        self._runtime_writes(container, EXIT_STOPPED, reason, describe_failure(EXIT_STOPPED, reason, tail, detail))

    def _runtime_writes(self, container: FakeContainer, code: int, reason: StopReason, error: str | None) -> Status:
        layout = container.layout
        status = Status(
            state=TaskState.SUCCEEDED if code == 0 else TaskState.FAILED,
            exit_code=code,
            reason=reason,
            started_at="2027-01-15T08:00:01.000+00:00",
            ended_at="2027-01-15T08:00:09.000+00:00",
            execution_id=container.env.get(ENV_EXECUTION_ID, ""),
            error=error,
            log_tail=container.output[-LOG_TAIL_LINES:],
            result_keys={"params": layout.params_key, "log": layout.log_key},
            host=container.ref[:12],
        )
        self.s3.put_object(Bucket=layout.bucket, Key=layout.status_key, Body=status.to_json().encode())
        return status
