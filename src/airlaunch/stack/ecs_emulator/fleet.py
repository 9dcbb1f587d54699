"""ECS's task lifecycle, played on moto's task objects with real containers.

A Fargate task RunTask created (moto's ``Task``, adopted here) goes through the states of
"Amazon ECS task lifecycle" (ECS Developer Guide), each change stamped as ECS stamps it and
published as a task state change event:

    PROVISIONING (createdAt) -> PENDING (connectivityAt, pullStartedAt) -> ACTIVATING
    (pullStoppedAt) -> RUNNING (startedAt) -> DEACTIVATING -> STOPPING (stoppingAt) ->
    DEPROVISIONING (executionStoppedAt: the container has exited) -> STOPPED (stoppedAt)

How it ends, in ECS's words ("Amazon ECS stopped tasks error codes"; TaskStopCode):

* the container exits: stopCode ``EssentialContainerExited``, stoppedReason "Essential container
  in task exited", the container's ``exitCode``; killed by the OOM killer, the container's
  reason is "OutOfMemoryError: Container killed due to memory usage" (exit 137);
* the task cannot start (an image not present, an env file that cannot be read): stopCode
  ``TaskFailedToStart``, the reason as stoppedReason and as the container's reason, no exit code;
* StopTask: desiredStatus STOPPED at once, stopCode ``UserInitiated``, stoppedReason the reason
  given ("Task stopped by user" when none); lastStatus goes DEACTIVATING, then STOPPING, and
  stays STOPPING until the container has exited: SIGTERM now, SIGKILL after the container's
  ``stopTimeout`` (ECS's default 30 s);
* a Fargate Spot interruption (control API): the two-minute warning is an event with
  desiredStatus STOPPED, lastStatus RUNNING, stopCode ``TerminationNotice``, stoppedReason
  "Your Spot Task was interrupted." and SIGTERM; after the grace, SIGKILL; the stopped task's
  stopCode is ``SpotInterruption`` ("Handling Fargate Spot termination notices").

All state lives under one lock; Docker calls are made outside it. The short states after an
exit last ``phase_seconds`` each (ECS takes tens of seconds; the emulator keeps them brief).

One job, a little over 300 lines: every transition above reads and writes the same task records
under that one lock, so the state machine stays in one module; what it stands on is elsewhere
(the records in ecs_emulator.records, building and running containers in containers and runner,
the events in events, the clock in clock).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from airlaunch.stack.ecs_emulator.clock import Scheduler, utcnow
from airlaunch.stack.ecs_emulator.containers import SecretStore, StartFailure, build_spec
from airlaunch.stack.ecs_emulator.events import EventDelivery, envelope, task_detail
from airlaunch.stack.ecs_emulator.records import TaskRecord, docker_name, new_record
from airlaunch.stack.ecs_emulator.runner import DockerRunner

log = logging.getLogger(__name__)

EXITED = "Essential container in task exited"
OOM = "OutOfMemoryError: Container killed due to memory usage"
SPOT = "Your Spot Task was interrupted."
USER = "Task stopped by user"


class Fleet:
    """The emulator's tasks: adopts moto's Fargate tasks, runs them on Docker, stops them as ECS does."""

    def __init__(
        self,
        scheduler: Scheduler,
        events: EventDelivery,
        s3: Any,
        platform_env: dict[str, str],
        default_stop_timeout: float = 30.0,
        phase_seconds: float = 0.2,
        start_workers: int = 4,
        shutdown_grace: float = 2.0,
        secrets: SecretStore | None = None,
    ) -> None:
        self._scheduler = scheduler
        self._events = events
        self._s3 = s3
        self._secrets = secrets  # where the task definitions' secrets are read
        self._platform_env = platform_env
        self._default_stop_timeout = default_stop_timeout
        self._phase = phase_seconds
        self._lock = threading.RLock()
        self._records: dict[str, TaskRecord] = {}
        self._by_container: dict[str, TaskRecord] = {}
        self._closing = False
        self._starts = ThreadPoolExecutor(max_workers=start_workers, thread_name_prefix="ecs-emulator-start")
        self.runner = DockerRunner(self.on_exit, shutdown_grace=shutdown_grace)

    def start(self) -> None:
        self.runner.start()

    def close(self) -> None:
        with self._lock:
            self._closing = True
        self._starts.shutdown(wait=True, cancel_futures=True)
        self.runner.close()

    # -- queries --------------------------------------------------------------------------------
    def find(self, task: str, cluster: str | None = None) -> Any | None:
        """The moto task of an ARN or id that this emulator runs (in ``cluster``, a name or ARN, if given)."""
        with self._lock:
            record = self._records.get(task) or next(
                (r for r in self._records.values() if r.arn.endswith("/" + task)), None
            )
        if record is None or (cluster and record.task.cluster_name != cluster.rsplit("/", 1)[-1]):
            return None
        return record.task

    def vcpus_in_use(self, region: str, pool: str) -> float:
        with self._lock:
            return sum(
                r.vcpus
                for r in self._records.values()
                if r.region == region and r.pool == pool and r.task.status != "STOPPED"
            )

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "taskArn": r.arn,
                    "lastStatus": r.task.status,
                    "desiredStatus": r.task.desired_status,
                    "stopCode": r.task.stop_code,
                    "containerId": r.container_id,
                    "exitCode": r.task.containers[0].exitCode,
                    "pool": r.pool,
                    "vcpus": r.vcpus,
                }
                for r in self._records.values()
            ]

    # -- RunTask ----------------------------------------------------------------------------------
    def adopt(self, backend: Any, task: Any, start: bool = True) -> TaskRecord:
        """Take a Fargate task moto's RunTask just made: ECS's first state and fields; then :meth:`begin` it."""
        record = new_record(backend, task, self._default_stop_timeout)
        with self._lock:
            self._records[record.arn] = record
            self._publish(record)
        if start:
            self.begin(record)
        return record

    def begin(self, record: TaskRecord) -> None:
        """Start the task's container in the background (RunTask has answered with PROVISIONING by then)."""
        self._starts.submit(self._start, record)

    def _start(self, r: TaskRecord) -> None:
        try:
            self._start_container(r)
        except StartFailure as failure:
            with self._lock:
                self._fail_start(r, failure.reason)
        except Exception as exc:  # Docker unreachable, say: the task fails to start, as on Fargate
            log.exception("task %s could not start", r.arn)
            with self._lock:
                self._fail_start(r, f"CannotStartContainerError: {exc}")

    def _start_container(self, r: TaskRecord) -> None:
        t = r.task
        with self._lock:
            if self._closing or t.desired_status == "STOPPED":
                return self._never_started(r)
            now = utcnow()
            t.status, t.connectivity, t.connectivity_at, t.pull_started_at = "PENDING", "CONNECTED", now, now
            for attachment in t.attachments:
                attachment["status"] = "ATTACHED"
            self._publish(r)
        spec = build_spec(t, r.definition, r.region, self._s3, self._platform_env, r.stop_timeout, self._secrets)
        digest = self.runner.image_digest(spec.image)
        with self._lock:
            if self._closing or t.desired_status == "STOPPED":
                return self._never_started(r)
            t.pull_stopped_at = utcnow()
            t.containers[0].image_digest = digest
            t.status = "ACTIVATING"
            r.stop_timeout = spec.stop_timeout
            self._publish(r)
        container_id = self.runner.create(spec, docker_name(r), r.arn)
        with self._lock:
            r.container_id = container_id
            self._by_container[container_id] = r
            if self._closing or t.desired_status == "STOPPED":
                self.runner.remove(container_id)
                return self._never_started(r)
        started_at = self.runner.start_container(container_id)
        with self._lock:
            if not r.exited:
                self._mark_running(r, started_at)
                if t.desired_status == "STOPPED" and r.kill is None:
                    self._begin_stop(r, r.stop_timeout)  # stopped while starting
        return None

    def _mark_running(self, r: TaskRecord, started_at: datetime | None = None) -> None:
        r.started = True
        r.task.status, r.task.started_at = "RUNNING", started_at or utcnow()
        r.task.containers[0].last_status = "RUNNING"
        r.task.containers[0].runtime_id = r.container_id
        self._publish(r)

    def _fail_start(self, r: TaskRecord, reason: str) -> None:
        t = r.task
        if r.exited:
            return
        log.info("task %s failed to start: %s", r.arn, reason)
        t.stop_code, t.stopped_reason = t.stop_code or "TaskFailedToStart", t.stopped_reason or reason
        t.containers[0].reason = reason
        if r.container_id:
            self.runner.remove(r.container_id)
        self._never_started(r)

    def _never_started(self, r: TaskRecord) -> None:
        """A task that ends without a running container (stopped before it started, or failed to start)."""
        t, now = r.task, utcnow()
        r.exited = True
        t.desired_status = "STOPPED"
        t.stop_code = "SpotInterruption" if t.stop_code == "TerminationNotice" else t.stop_code
        t.stopping_at, t.execution_stopped_at = t.stopping_at if _has(t, "stopping_at") else now, now
        t.containers[0].last_status = "STOPPED"
        t.status = "DEPROVISIONING"
        self._publish(r)
        self._scheduler.call_later(self._phase, self._finish, r)

    # -- exits, StopTask, Spot ----------------------------------------------------------------
    def on_exit(self, container_id: str, exit_code: int | None, oom: bool) -> None:
        """The container of a task exited (Docker's ``die``): the task stops as ECS reports it."""
        with self._lock:
            r = self._by_container.get(container_id)
            if r is None or r.exited:
                return
            t, now = r.task, utcnow()
            if not r.started:
                self._mark_running(r)  # it exited before its start was recorded
            r.exited = True
            if r.kill is not None:
                r.kill.cancel()
            container = t.containers[0]
            container.last_status, container.exitCode = "STOPPED", exit_code
            if oom:
                container.reason = OOM
            if t.stop_code is None:
                t.stop_code, t.stopped_reason = "EssentialContainerExited", EXITED
            elif t.stop_code == "TerminationNotice":
                t.stop_code = "SpotInterruption"
            t.desired_status = "STOPPED"
            t.stopping_at = t.stopping_at if _has(t, "stopping_at") else now
            t.execution_stopped_at = now
            for status in ("DEACTIVATING", "STOPPING"):
                if t.status in ("RUNNING", "DEACTIVATING"):
                    t.status = status
                    self._publish(r)
            self._scheduler.call_later(self._phase, self._deprovision, r)
        self.runner.remove(container_id)

    def _deprovision(self, r: TaskRecord) -> None:
        with self._lock:
            r.task.status = "DEPROVISIONING"
            self._publish(r)
        self._scheduler.call_later(self._phase, self._finish, r)

    def _finish(self, r: TaskRecord) -> None:
        with self._lock:
            r.task.status, r.task.stopped_at = "STOPPED", utcnow()
            for attachment in r.task.attachments:
                attachment["status"] = "DELETED"
            self._publish(r)

    def stop(self, task: Any, reason: str | None) -> bool:
        """StopTask on a task of this emulator (False if it is not one): returns at once, the task stops later."""
        with self._lock:
            r = self._records.get(task.task_arn)
            if r is None:
                return False
            if r.task.desired_status == "STOPPED":
                return True
            t = r.task
            t.desired_status, t.stop_code, t.stopped_reason, t.stopping_at = (
                "STOPPED",
                "UserInitiated",
                reason or USER,
                utcnow(),
            )
            if r.started and not r.exited:
                self._begin_stop(r, r.stop_timeout)
            else:
                self._publish(r)  # the start worker ends it before it runs
            return True

    def interrupt(self, task_arn: str, grace: float | None = None) -> bool:
        """A Fargate Spot interruption; False if the task is unknown or already stopping."""
        with self._lock:
            r = self._records.get(task_arn)
            if r is None or r.task.desired_status == "STOPPED":
                return False
            t = r.task
            t.desired_status, t.stop_code, t.stopped_reason, t.stopping_at = (
                "STOPPED",
                "TerminationNotice",
                SPOT,
                utcnow(),
            )
            self._publish(r)  # the two-minute warning, lastStatus still RUNNING
            if r.started and not r.exited:
                self._begin_stop(r, r.stop_timeout if grace is None else grace)
            return True

    def stop_all(self, reason: str) -> int:
        with self._lock:
            live = [r.task for r in self._records.values() if r.task.desired_status != "STOPPED"]
            return sum(self.stop(task, reason) for task in live)

    def _begin_stop(self, r: TaskRecord, grace: float) -> None:
        for status in ("DEACTIVATING", "STOPPING"):
            if r.task.status in ("RUNNING", "DEACTIVATING"):
                r.task.status = status
                self._publish(r)
        assert r.container_id is not None
        self.runner.signal(r.container_id, "SIGTERM")
        r.kill = self._scheduler.call_later(grace, self._force_kill, r)

    def _force_kill(self, r: TaskRecord) -> None:
        with self._lock:
            if not r.exited and r.container_id:
                log.info("task %s: stopTimeout passed, SIGKILL", r.arn)
                self.runner.signal(r.container_id, "SIGKILL")

    def _publish(self, r: TaskRecord) -> None:
        """A change of the task: its version and updatedAt move on, and its state change event goes out."""
        r.updated_at = utcnow()
        r.task.version += 1
        detail = task_detail(r.task, r.updated_at)
        self._events.publish(envelope(r.account, r.region, detail, r.updated_at))


def _has(task: Any, attribute: str) -> bool:
    return getattr(task, attribute, None) is not None
