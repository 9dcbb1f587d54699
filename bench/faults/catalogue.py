"""The one catalogue of faults, read by ``make faults`` (bench/faults/__main__.py: every row, on each backend it
runs on) and by the tests (tests/airflow/test_faults.py: the rows marked ``test``, one parametrized case each,
on the test stack's Docker backend). A fault is its name, how it is injected, what must be observed, the code
that injects it and judges what it left (bench/faults/*_rows.py, against a ``Suite``), where it runs, and
whether it is a test.

The goals every row is judged on (bench/faults/suite.py): the task ends as it should with its cause in words,
no container is left running, no result is lost or taken from another run, nothing runs twice (counted from
a Docker event stream opened before the fault: bench/faults/events.py). Goals of time (Airflow knowing of a
container's end within two seconds...) are the benchmark's alone: a test asserts none of them.

A row is not a test when it is slow or heavy; ``test`` says why. The tests run every other row: 16 cases,
about six minutes together on two cores (11 to 39 s each), Airflow and the stack already up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from bench.faults import compose, container_rows, ecs_rows, load_rows, stack_rows, user_rows
from bench.faults.suite import BACKENDS, SWEEP_SECONDS, Row, Suite

Scenario = Callable[[Suite, Row], Row]

# Why a row does not run on a backend (the table's "n/a")
SAME_IN_BOTH = "the same {what} in both modes: the Docker column measures it"
ECS_ONLY = "ECS's own fault: the Docker backend has no {what}"
# Why a row is make faults' only
ECS_MODE = "on the ECS mode only: make faults has its column; the tests' ECS mode is tests/airflow/test_ecs_mode.py"
VARIANT = "a variant of {row}, which the tests run: what it adds is a moment, which the benchmark measures"


@dataclass(frozen=True)
class Fault:
    name: str
    injected: str  # how the fault is made (the table's title)
    observed: str  # what must be seen afterwards (the goal)
    run: Scenario
    docker: bool | str = True  # runs on the launcher's Docker backend, else why not
    ecs: bool | str = True  # runs on the stack's ECS mode, else why not
    test: bool | str = True  # a case of tests/airflow/test_faults.py (Docker backend), else why make faults' only
    injected_on_ecs: str = ""  # how, where the ECS mode makes it otherwise

    def runs_on(self, backend: str) -> bool:
        return (self.docker if backend == "docker" else self.ecs) is True

    def not_on(self) -> dict[str, str]:
        """backend -> why the row does not run there."""
        return {b: str(why) for b, why in (("docker", self.docker), ("ecs", self.ecs)) if why is not True}

    def row(self, backend: str) -> Row:
        title = self.injected_on_ecs if backend == "ecs" and self.injected_on_ecs else self.injected
        return Row(self.name, title, self.observed, backend=backend)

    def run_on(self, suite: Suite) -> Row:
        """Inject the fault on the suite's stack and judge it: its filled row (a broken scenario raises)."""
        suite.clean()
        started = time.monotonic()
        row = self.run(suite, self.row(suite.backend))
        row.seconds = round(time.monotonic() - started, 1)
        return row


STOPPED = "container stopped (or never started) and its end recorded; nothing left running"
RIDDEN_OUT = "the launch is retried; task succeeds with its result, in one container"
AIRFLOW_KILL = "restarted by the supervisor; task succeeds, one container at a time, "

FAULTS: list[Fault] = [
    # -- the container's: both backends
    Fault("exit", "container exits non-zero (at once, before its trigger runs)",
          "task failed with the exit code, its message and the log's last lines", container_rows.container_exit),
    Fault("exit-watched", "container exits non-zero after 8 s (its trigger watching)",
          "task failed with the exit code and the last log lines", partial(container_rows.container_exit, after=8),
          test=VARIANT.format(row="exit (the kill row: the watching trigger's path)")),
    Fault("kill", "docker kill (SIGKILL) of a running task container",
          "task failed: killed by signal 9; status.json written by the launcher (killed, exit code 137)",
          container_rows.docker_kill, injected_on_ecs="docker kill (SIGKILL) of a running ECS task's container"),
    Fault("oom", "OOM: the task allocates 1 GiB at a 256 MiB limit",
          "task failed: out of memory at its limit, in words (reason oom, exit code 137)", container_rows.out_of_memory,
          injected_on_ecs="OOM: the task allocates 4 GiB at a 1 GiB (Fargate's size for 256 MiB) limit"),
    Fault("sigterm", "docker stop (SIGTERM) from outside airlaunch",
          "task failed: stopped by a SIGTERM airlaunch did not send (the platform)", container_rows.outside_sigterm,
          injected_on_ecs="ECS StopTask by someone else (the console, the CLI) (SIGTERM) from outside airlaunch"),
    # -- the user's: both backends
    Fault("mark-failed-0s", "mark failed 0 s after the task starts", STOPPED, partial(user_rows.mark_failed, delay=0)),
    Fault("mark-failed-1s", "mark failed 1 s after the task starts", STOPPED, partial(user_rows.mark_failed, delay=1),
          test=VARIANT.format(row="mark-failed-0s and mark-failed-watched")),
    Fault("mark-failed-5s", "mark failed 5 s after the task starts", STOPPED, partial(user_rows.mark_failed, delay=5),
          test=VARIANT.format(row="mark-failed-watched")),
    Fault("mark-failed-watched", "mark failed once its trigger watches the container",
          STOPPED + "; the runtime in that container recorded the stop", user_rows.mark_failed_watched),
    Fault("mark-failed-in-launch", "mark failed while the launch is in flight (at its container's create event)",
          "container stopped within seconds and its end recorded; nothing left running",
          user_rows.mark_failed_in_launch, test=VARIANT.format(row="mark-failed-0s")),
    Fault("mark-failed-0s-trigger", "mark failed 0 s after the task starts (launched from the triggerer)", STOPPED,
          partial(user_rows.mark_failed, delay=0, dag_id="faults_trigger")),
    Fault("mark-failed-at-defer", "mark failed at the moment it defers (before the triggerer picked its trigger up)",
          f"the orphan sweep stops the container within {SWEEP_SECONDS:g} s (AIRLAUNCH_SWEEP_SECONDS); "
          "its end recorded; nothing left running", user_rows.mark_failed_at_defer),
    Fault("clear", "clear the task while its container runs",
          "try 1's container stopped before try 2's starts; try 2 succeeds with its own result",
          user_rows.clear_while_running),
    Fault("execution-timeout", "execution_timeout (8 s) passes while the task is deferred",
          "task failed at its timeout, container stopped, in words", user_rows.execution_timeout),
    Fault("recreated-run", "a DAG run deleted and triggered again with the same run id",
          "the new run gets fresh results in a container of its own, never the old run's", user_rows.recreated_run),
    # -- ECS's own
    Fault("ecs-cannot-pull",
          "a task definition revision whose image cannot be pulled (TaskFailedToStart: CannotPullContainerError)",
          "started three times within the try (ECS's starts that fail may pass), then failed in words; nothing runs",
          ecs_rows.cannot_pull, docker=ECS_ONLY.format(what="image pulls (it runs images on its host)"),
          test=ECS_MODE),
    Fault("ecs-spot", "a Fargate Spot interruption of a running task (warning and SIGTERM, SIGKILL 5 s later)",
          "task failed: the platform stopped it (Spot), in words", ecs_rows.spot_interruption,
          docker=ECS_ONLY.format(what="Spot (its platform stops are the docker stop row)"), test=ECS_MODE),
    Fault("ecs-capacity",
          "no Fargate capacity for the first three RunTasks (failures[]: Capacity is unavailable at this time)",
          "the launch is retried within its budget; task succeeds, one ECS task", ecs_rows.no_capacity,
          docker=ECS_ONLY.format(what="capacity to run out of"), test=ECS_MODE),
    Fault("ecs-vcpu-quota",
          "the account's Fargate vCPU quota full (0.5 vCPU, held by a 30 s task) when a task launches",
          "the launch waits for the quota (launcher and hook retries); task succeeds, one ECS task",
          ecs_rows.full_vcpu_quota, docker=ECS_ONLY.format(what="vCPU quota"), test=ECS_MODE),
    Fault("ecs-throttle", "RunTask throttled ten times in a row (ThrottlingException: Rate exceeded)",
          "the launch is retried (botocore's, then the launcher's); task succeeds, one ECS task",
          ecs_rows.run_task_throttled, docker=ECS_ONLY.format(what="API throttling"), test=ECS_MODE),
    # -- the stack's own parts: the Docker backend
    Fault("dockerd", "dockerd restarted while a task runs", "task failed: the platform (engine) stopped it",
          stack_rows.dockerd_restart,
          ecs="the engine is the local stand-in's, not ECS's: on Fargate a host's end is the platform's stop "
          "(the Spot row)",
          test="restarts the machine's one Docker engine: every container on it stops, other sessions' too"),
    Fault("localstack-10s", "LocalStack (S3, SQS) killed and kept down 10 s during a run",
          "task succeeds with its result, in one container; the outage is ridden out and its log says so",
          partial(stack_rows.localstack_down, seconds=10, task_seconds=25),
          ecs=SAME_IN_BOTH.format(what="LocalStack (S3, SQS) and retry path")),
    Fault("localstack-60s", "LocalStack (S3, SQS) killed and kept down 60 s during a run",
          "task succeeds with its result, in one container; the outage is ridden out and its log says so",
          partial(stack_rows.localstack_down, seconds=60, task_seconds=20),
          ecs=SAME_IN_BOTH.format(what="LocalStack (S3, SQS) and retry path"),
          test="90 s, and the path is localstack-10s's; here the task ends while S3 is down (the runtime's retries)"),
    Fault("launcher-down", "launcher Lambda down (20 s) when the task launches",
          RIDDEN_OUT + "; its log shows the retries", stack_rows.launcher_down_at_launch,
          ecs=SAME_IN_BOTH.format(what="launcher endpoint and Airflow's retries")),
    Fault("launcher-killed", "launcher Lambda killed mid-launch (at its container's create event)", RIDDEN_OUT,
          stack_rows.launcher_killed_mid_launch, ecs=SAME_IN_BOTH.format(what="launcher pool and Airflow's retries")),
    Fault("triggerer-killed",
          "triggerer killed (SIGKILL to its process group (its workers too)) right after the launch "
          "(launched from the triggerer)",
          AIRFLOW_KILL + "no relaunch",
          partial(stack_rows.component_killed, component="airflow-triggerer", dag_id="faults_trigger"),
          ecs=SAME_IN_BOTH.format(what="Airflow processes")),
    Fault("triggerer-restarted", "triggerer stopped and started again while its trigger watches a task",
          "the new triggerer resumes the watch: task succeeds at try 1 with that container's result, no relaunch",
          stack_rows.triggerer_restarted, ecs=SAME_IN_BOTH.format(what="Airflow processes")),
    Fault("scheduler-crash", "scheduler killed (SIGKILL to its main process only) right after the launch",
          AIRFLOW_KILL + "no relaunch",
          partial(stack_rows.component_killed, component="airflow-scheduler", dag_id="faults_worker", group=False),
          ecs=SAME_IN_BOTH.format(what="Airflow processes"),
          test="the path of triggerer-killed (a watch that outlives an Airflow process), at twice its time"),
    Fault("scheduler-killed",
          "scheduler killed (SIGKILL to its process group (its workers too)) right after the launch",
          AIRFLOW_KILL + "a retry only if the worker died before deferring",
          partial(stack_rows.component_killed, component="airflow-scheduler", dag_id="faults_worker"),
          ecs=SAME_IN_BOTH.format(what="Airflow processes"),
          test="about 6 minutes: Airflow fails the dead worker's task only after its heartbeat timeout"),
    # -- under load: the Docker backend
    Fault("log-burst", "a 100 MB log burst beside a short task",
          "the short task's completion latency unchanged (within +1 s); the burst's task log bounded",
          load_rows.log_burst, ecs=SAME_IN_BOTH.format(what="log path (runtime, S3, trigger)"),
          test="two minutes, and its goal is one of time; the bounded reads are tests/airflow/test_trigger.py's"),
    Fault("fan-out-kills", "200 concurrent tasks, 20 of them killed at random",
          "the killed fail (killed by signal 9) within 2 s, the others succeed with their results",
          load_rows.fan_out_with_kills,
          ecs="ECS's fan-out is the benchmark's (make bench PARTS=scale-ecs: 500 tasks, the RunTask rate, calls per "
          "task)",
          test="200 containers at once for about 12 minutes: the machine's whole capacity"),
    # -- a Celery worker: the compose stack
    Fault("celery-worker-killed", "Celery worker killed (SIGKILL) while its task's launch is in flight (compose stack)",
          f"Airflow fails the task once its heartbeat is missing ({compose.HEARTBEAT_TIMEOUT_S} s here); the orphan "
          f"sweep stops the container within its {compose.SWEEP_SECONDS:g} s; status.json says so; one container",
          compose.celery_worker_killed, ecs="the compose stack runs the Docker backend only",
          test="builds and runs the compose stack of its own (about 3 minutes); tests/compose has its other tests"),
]  # fmt: skip

BY_NAME = {fault.name: fault for fault in FAULTS}
TESTED = [fault for fault in FAULTS if fault.test is True and fault.runs_on("docker")]

__all__ = ["BACKENDS", "BY_NAME", "FAULTS", "TESTED", "Fault"]
