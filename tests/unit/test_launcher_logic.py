"""The launcher's own logic (service.py's guarantees) through ``Launcher`` itself: moto's S3 and an
in-memory platform (tests/unit/fake_backend.py), no Docker, no Lambda, no task runtime.

Each test drives the platform as the stack would (a container runs, exits, is killed, OOM-killed,
vanishes; a SIGTERM is handled by its runtime, ignored, or outlived) and reads what the launcher
left in S3. The stack tests that prove the same on Docker and LocalStack, and what they add:

* tests/stack/test_launcher.py::test_same_identity_starts_one_container: one container per try,
  found by Docker's labels and name (mirrored by the "one container per try" tests here);
* ::test_stop_ends_task_as_failed_stopped and ::test_stop_right_after_launch_still_leaves_a_status:
  a real runtime's SIGTERM handler and Docker's stop (mirrored by the stop tests);
* ::test_describe_reports_running_then_finished (mirrored by the describe tests);
* ::test_bad_request_is_refused_and_starts_nothing (the same requests through the handler here);
* tests/airflow/test_faults.py (killed, OOM-killed, marked failed as it starts, a re-created run)
  and tests/airflow/test_trigger.py::test_a_container_gone_without_status_fails_with_the_launchers_record:
  Docker's real exit codes and OOM flag (mirrored by the stand-in status.json tests);
* tests/stack/test_ecs_mode.py::test_a_launch_past_its_budget_fails_retryable_and_leaves_nothing and
  ::test_an_image_that_cannot_be_pulled_is_started_three_times_then_fails_in_words (mirrored by the
  failed-launch and task-stopped tests).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from airlaunch.catalog import Catalog
from airlaunch.launcher import handler
from airlaunch.launcher.backends.base import ENV_START_ATTEMPT, LaunchError
from airlaunch.launcher.backends.docker import DockerBackend
from airlaunch.launcher.docker_events import DockerWatcher
from airlaunch.launcher.platform_events import EcsTaskStateChange
from airlaunch.launcher.service import REAP_GRACE_SECONDS, START_ATTEMPTS, Launcher
from airlaunch.launcher.settings import LauncherSettings
from airlaunch.protocol import (
    Handle,
    LaunchRequest,
    Overrides,
    ResultLayout,
    RunIdentity,
    Status,
    StopReason,
    StopRequest,
    TaskState,
)
from tests.unit.fake_backend import FakeBackend, Sigterm

BUCKET, ROOT = "launcher-logic", "runs"
TI = [f"0190d5b1-0000-7000-8000-{n:012x}" for n in range(1, 6)]  # Airflow's task-instance id of try n + 1
CATALOG = Catalog.from_dict(
    {
        "tasks": {
            "diagnostic": {
                "image": "airlaunch/reference-tasks:latest",
                "command": ["python", "/opt/tasks/diagnostic.py"],
                "memory_mib": 256,
                "timeout_seconds": 900,
            }
        }
    }
)
STAND_IN = "; no status.json from the task, so the launcher wrote this one"


@pytest.fixture
def s3(moto_s3: Any) -> Any:
    moto_s3.create_bucket(Bucket=BUCKET)
    return moto_s3


@pytest.fixture
def platform(s3: Any) -> FakeBackend:
    return FakeBackend(s3)


@pytest.fixture
def launcher(s3: Any, platform: FakeBackend) -> Launcher:
    settings = LauncherSettings(bucket=BUCKET, key_prefix=ROOT, backend="docker")
    return Launcher(settings, CATALOG, platform, s3, {})


def _try(number: int = 1, *, ti_id: str | None = None, map_index: int = -1) -> RunIdentity:
    """Try ``number`` of task instance dag/run/task[map_index]."""
    return RunIdentity("dag", "run", "task", map_index, number, ti_id if ti_id is not None else TI[number - 1])


def _launch(launcher: Launcher, identity: RunIdentity, overrides: Overrides | None = None, **params: Any) -> Handle:
    return launcher.launch(
        LaunchRequest(task="diagnostic", identity=identity, params=params, overrides=overrides or Overrides())
    )


def _read(s3: Any, layout: ResultLayout, key: str) -> bytes | None:
    try:
        body: bytes = s3.get_object(Bucket=layout.bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return body


def _status(s3: Any, layout: ResultLayout) -> Status:
    body = _read(s3, layout, layout.status_key)
    assert body is not None, f"no status.json at {layout.status_key}"
    return Status.from_json(body)


def _stop_json(s3: Any, layout: ResultLayout) -> StopRequest | None:
    body = _read(s3, layout, layout.stop_key)
    return StopRequest.from_json(body) if body is not None else None


def _keys(s3: Any) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


# -- one container per try, one try at a time ------------------------------------------------------


def test_a_second_launch_of_a_try_answers_with_its_live_container(
    launcher: Launcher, platform: FakeBackend, s3: Any
) -> None:
    """Airflow's hook retries a launch whose answer it lost: the try's container is found, none is added."""
    identity = _try(1)
    first = _launch(launcher, identity, n=1)
    second = _launch(launcher, identity, n=1)

    assert first.launched and not second.launched
    assert second.task_ref == first.task_ref and [c.ref for c in platform.of(identity)] == [first.task_ref]
    assert first.prefix == f"{ROOT}/dag/run/task/-1/1-{TI[0]}/" == second.prefix
    container = platform.containers[first.task_ref]
    assert container.params_at_start is not None, "params.yaml must be in S3 before the container starts"
    params = yaml.safe_load(container.params_at_start)
    assert params["params"] == {"n": 1} and params["run"]["task"] == "diagnostic"
    assert params["run"]["execution_id"] == identity.execution_id


def test_a_finished_try_starts_nothing(launcher: Launcher, platform: FakeBackend, s3: Any) -> None:
    """Once its status.json exists a try is over: a launch of it reports it and starts no container, both
    while the platform still keeps the ended container and after it was removed."""
    identity = _try(1)
    first = _launch(launcher, identity)
    platform.finish(first.task_ref, 0)

    kept = _launch(launcher, identity)
    platform.forget(first.task_ref)
    removed = _launch(launcher, identity)

    for again in (kept, removed):
        assert not again.launched and again.task_ref == "" and again.prefix == first.prefix
    assert [event for event, _ in platform.journal].count("start") == 1
    assert _status(s3, first.layout).state is TaskState.SUCCEEDED


def test_the_next_try_is_a_new_container_with_a_prefix_of_its_own(
    launcher: Launcher, platform: FakeBackend, s3: Any
) -> None:
    one = _launch(launcher, _try(1))
    platform.finish(one.task_ref, 3)
    two = _launch(launcher, _try(2))

    assert two.launched and two.task_ref != one.task_ref
    assert two.prefix == f"{ROOT}/dag/run/task/-1/2-{TI[1]}/"
    assert _status(s3, one.layout).exit_code == 3  # the earlier try's record is left as it was
    assert platform.stops == []  # it had ended: nothing to supersede


def test_a_re_created_run_with_the_same_try_number_gets_fresh_results(
    launcher: Launcher, platform: FakeBackend, s3: Any
) -> None:
    """A run deleted and triggered again under the same run id restarts try numbers at 1: Airflow's task-
    instance id in the prefix keeps the old run's status.json from answering for the new try."""
    old = _launch(launcher, _try(1, ti_id=TI[0]))
    platform.finish(old.task_ref, 0)
    new = _launch(launcher, _try(1, ti_id=TI[4]))

    assert new.launched and new.prefix != old.prefix and new.task_ref != old.task_ref


def test_a_new_try_stops_the_running_earlier_try_first_and_it_records_why(
    launcher: Launcher, platform: FakeBackend, s3: Any
) -> None:
    """The try that runs is asked to stop (stop.json with the reason, then SIGTERM) and has ended before the
    new try's container starts; its runtime records the stop in its own words."""
    one = _launch(launcher, _try(1))
    platform.print(one.task_ref, "sleeping: 1 of 120")
    two = _launch(launcher, _try(2))

    why = f"superseded by try 2-{TI[1]} of the same task"
    assert two.launched and platform.stops == [(one.task_ref, why)]
    assert platform.journal == [
        ("start", one.task_ref),
        ("sigterm", one.task_ref),
        ("ended", one.task_ref),
        ("start", two.task_ref),
    ]
    assert [t.task_ref for t in platform.live(_try(2))] == [two.task_ref]
    stop = _stop_json(s3, one.layout)
    assert stop is not None and stop.reason == why
    status = _status(s3, one.layout)
    assert (status.state, status.reason, status.exit_code, status.written_by) == (
        TaskState.FAILED,
        StopReason.STOPPED,
        143,
        "runtime",
    )
    assert status.error == f"stopped by airlaunch: {why} (SIGTERM)" and status.log_tail == ["sleeping: 1 of 120"]


def test_an_earlier_try_that_ignores_sigterm_is_recorded_by_the_launcher(
    launcher: Launcher, platform: FakeBackend, s3: Any
) -> None:
    """Killed after the grace period, its runtime wrote nothing: the launcher's status.json says who
    stopped it and why, and how it ended."""
    platform.on_sigterm = Sigterm.IGNORE
    one = _launch(launcher, _try(1))
    _launch(launcher, _try(2))

    status = _status(s3, one.layout)
    why = f"superseded by try 2-{TI[1]} of the same task"
    assert (status.reason, status.exit_code, status.written_by) == (StopReason.STOPPED, 137, "launcher")
    assert status.error == f"stopped by airlaunch ({why}); killed by signal 9 (SIGKILL) (exit code 137){STAND_IN}"


# -- stop --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("on_sigterm", "written_by", "exit_code", "error"),
    [
        (Sigterm.RUNTIME, "runtime", 143, "stopped by airlaunch: cancelled in Airflow (SIGTERM)"),
        (
            Sigterm.EXIT,
            "launcher",
            143,
            f"stopped by airlaunch (cancelled in Airflow); killed by signal 15 (SIGTERM) (exit code 143){STAND_IN}",
        ),
        (
            Sigterm.IGNORE,
            "launcher",
            137,
            f"stopped by airlaunch (cancelled in Airflow); killed by signal 9 (SIGKILL) (exit code 137){STAND_IN}",
        ),
    ],
    ids=["runtime-records-it", "dies-before-its-runtime-could", "killed-after-the-grace"],
)
def test_a_stopped_try_ends_failed_saying_who_stopped_it_and_why(
    launcher: Launcher,
    platform: FakeBackend,
    s3: Any,
    on_sigterm: Sigterm,
    written_by: str,
    exit_code: int,
    error: str,
) -> None:
    """Whatever the container does with the SIGTERM, the stop's answer and status.json say "stopped",
    with the reason given; the runtime's own record when it made one, else the launcher's."""
    platform.on_sigterm = on_sigterm
    handle = _launch(launcher, _try(1))
    platform.print(handle.task_ref, "sleeping: 1 of 120")

    answer = launcher.stop(handle.layout, handle.task_ref, "cancelled in Airflow")

    assert answer.state is TaskState.FAILED and answer.status == _status(s3, handle.layout)
    status = answer.status
    assert (status.reason, status.exit_code, status.written_by) == (StopReason.STOPPED, exit_code, written_by)
    assert status.error == error and status.log_tail == ["sleeping: 1 of 120"]
    assert platform.live(_try(1)) == []


def test_a_stop_whose_platform_answers_before_the_task_ends_is_recorded_at_once_then_by_the_runtime(
    launcher: Launcher, platform: FakeBackend, s3: Any
) -> None:
    """ECS's StopTask returns while the task still runs: the launcher's status.json says it was stopped
    and why straight away, and the runtime's own record, written as it ends, takes its place."""
    platform.on_sigterm = Sigterm.LINGER
    handle = _launch(launcher, _try(1))

    answer = launcher.stop(handle.layout, handle.task_ref, "marked failed in Airflow")

    assert answer.status is not None and answer.status == _status(s3, handle.layout)
    assert (answer.status.reason, answer.status.written_by) == (StopReason.STOPPED, "launcher")
    assert answer.status.error == (  # not "its container never started", as it said before: it ran
        "stopped by airlaunch (marked failed in Airflow); its container was running when it was asked to stop"
        + STAND_IN
    )
    assert platform.live(_try(1)) != []  # still running: ECS stops it later
    platform.act_on_sigterm(handle.task_ref)
    status = _status(s3, handle.layout)
    assert (status.written_by, status.exit_code) == ("runtime", 143)
    assert status.error == "stopped by airlaunch: marked failed in Airflow (SIGTERM)"


def test_a_stop_before_the_launch_leaves_stop_json_and_a_status_that_the_launch_respects(
    launcher: Launcher, platform: FakeBackend, s3: Any
) -> None:
    """Marked failed before its launch came (the stop by identity finds no container): stop.json and a
    status.json are left, and the launch that comes later starts nothing and writes no params.yaml."""
    identity = _try(1)
    layout = launcher.layout_of(identity)

    answer = launcher.stop(layout, "", "marked failed in Airflow", identity)
    handle = _launch(launcher, identity)

    assert answer.state is TaskState.FAILED
    stop = _stop_json(s3, layout)
    assert stop is not None and stop.reason == "marked failed in Airflow"
    status = _status(s3, layout)
    assert (status.reason, status.exit_code, status.written_by) == (StopReason.STOPPED, None, "launcher")
    assert status.error == f"stopped by airlaunch (marked failed in Airflow); its container never started{STAND_IN}"
    assert not handle.launched and handle.task_ref == "" and platform.journal == []
    assert _keys(s3) == sorted([layout.stop_key, layout.status_key])


def test_a_container_a_launch_started_while_a_stop_was_written_never_runs_its_command(
    launcher: Launcher, platform: FakeBackend, s3: Any
) -> None:
    """The stop arrives after the launch looked for status.json and before its container exists: the
    stop finds nothing to stop; the container's runtime, reading stop.json before its command starts
    (tests/unit/test_runtime_failures.py), never starts it and records the stop. The launcher does not
    look for stop.json after the start: the runtime's look comes later, so it misses nothing the
    launcher's would have seen."""
    identity = _try(1)
    layout = launcher.layout_of(identity)
    answers = []
    platform.before_start = lambda who: answers.append(launcher.stop(layout, "", "marked failed in Airflow", who))

    handle = _launch(launcher, identity)

    assert [a.state for a in answers] == [TaskState.FAILED] and handle.launched
    assert platform.stops == []  # no signal needed: the command never started
    assert platform.journal == [("start", handle.task_ref), ("ended", handle.task_ref)]
    assert platform.live(identity) == []
    status = _status(s3, layout)
    assert status.reason is StopReason.STOPPED and "marked failed in Airflow" in (status.error or "")


# -- nothing half-done ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [LaunchError("no capacity just now", retryable=True), RuntimeError("a bug"), KeyboardInterrupt()],
    ids=["launch-error", "any-error", "interrupted"],
)
def test_a_launch_that_fails_after_params_yaml_was_written_deletes_it(
    launcher: Launcher, platform: FakeBackend, s3: Any, failure: BaseException
) -> None:
    """A params.yaml without a container would read as a try still starting: whatever the error, the
    launch leaves nothing, and the same launch later starts the try."""
    identity = _try(1)
    platform.refuse_next_start = failure

    with pytest.raises(type(failure)):
        _launch(launcher, identity)

    assert _keys(s3) == [] and platform.containers == {}
    again = _launch(launcher, identity)
    assert again.launched and _keys(s3) == [again.layout.params_key]


def test_a_start_that_failed_after_the_platform_took_it_keeps_the_container_and_its_params(
    launcher: Launcher, platform: FakeBackend, s3: Any
) -> None:
    """The platform started the container but its answer was lost (a timeout): the launch takes that
    container, and keeps its params.yaml, which the container reads."""
    identity = _try(1)
    platform.lose_next_answer = True

    handle = _launch(launcher, identity, n=2)

    [container] = platform.of(identity)
    assert handle.launched and handle.task_ref == container.ref and container.state == "running"
    body = _read(s3, handle.layout, handle.layout.params_key)
    assert body is not None and yaml.safe_load(body)["params"] == {"n": 2}


# -- status.json on a container's behalf -------------------------------------------------------------

ENDS: dict[str, tuple[Callable[[FakeBackend, str], None], StopReason, int | None, str]] = {
    "killed": (FakeBackend.kill, StopReason.KILLED, 137, "killed by signal 9 (SIGKILL) (exit code 137)"),
    "oom": (
        FakeBackend.oom,
        StopReason.OOM,
        137,
        "out of memory: the kernel killed it at its 256 MiB memory limit (exit code 137)",
    ),
    "exit-unrecorded": (
        lambda platform, ref: platform.exit(ref, 3),
        StopReason.LOST,
        3,
        "it exited with code 3 without its runtime recording how it ended",
    ),
    "could-not-run": (
        lambda platform, ref: platform.fail_to_start(ref, "exec: python: not found", may_pass=False),
        StopReason.PLATFORM,
        127,
        "Docker could not run it: exec: python: not found (exit code 127)",
    ),
}


@pytest.mark.parametrize("how", sorted(ENDS))
def test_a_container_that_ended_without_status_json_gets_one_in_words(
    launcher: Launcher, platform: FakeBackend, s3: Any, how: str
) -> None:
    """The watcher's path (Launcher.ended): the launcher writes status.json on the container's behalf,
    with the exit code, the cause as a reason and in words, and the container's last lines; then the
    platform forgets the container."""
    end, reason, exit_code, words = ENDS[how]
    identity = _try(1)
    handle = _launch(launcher, identity)
    platform.print(handle.task_ref, "allocating", "still allocating")
    end(platform, handle.task_ref)
    [task] = [c.as_live_task() for c in platform.of(identity)]

    recorded = launcher.ended(task)

    status = _status(s3, handle.layout)
    assert recorded == status
    assert (status.state, status.reason, status.exit_code, status.written_by) == (
        TaskState.FAILED,
        reason,
        exit_code,
        "launcher",
    )
    assert status.error == words + STAND_IN
    assert status.log_tail == ["allocating", "still allocating"] and status.host == handle.task_ref[:12]
    assert status.execution_id == identity.execution_id
    assert status.result_keys == {"params": handle.layout.params_key}
    assert platform.of(identity) == []  # forgotten once its end is recorded


def test_an_end_still_running_after_all_records_nothing(launcher: Launcher, platform: FakeBackend, s3: Any) -> None:
    """A "die" the watcher saw for a container that runs again (Docker restarted it): nothing ended."""
    handle = _launch(launcher, _try(1))
    [task] = platform.live(_try(1))

    assert launcher.ended(task) is None
    assert _keys(s3) == [handle.layout.params_key] and handle.task_ref in platform.containers


def test_the_runtimes_status_json_is_never_overwritten(launcher: Launcher, platform: FakeBackend, s3: Any) -> None:
    """The runtime wrote status.json (its command failed with 5), then the container was killed before it
    exited: the launcher records nothing over it."""
    handle = _launch(launcher, _try(1))
    platform.runtime_writes_status(handle.task_ref, 5)
    written = _read(s3, handle.layout, handle.layout.status_key)
    platform.kill(handle.task_ref)
    [task] = [c.as_live_task() for c in platform.of(_try(1))]

    status = launcher.ended(task)

    assert status is not None and status.written_by == "runtime" and status.exit_code == 5
    assert _read(s3, handle.layout, handle.layout.status_key) == written


class _RuntimeWritesFirst:
    """An S3 client on which the runtime's status.json lands just before the launcher's conditional write."""

    def __init__(self, s3: Any, runtime_writes: Callable[[], object]) -> None:
        self.s3 = s3
        self.runtime_writes: Callable[[], object] | None = runtime_writes

    def __getattr__(self, name: str) -> Any:
        return getattr(self.s3, name)

    def put_object(self, **request: Any) -> Any:
        if request.get("IfNoneMatch") == "*" and self.runtime_writes is not None:
            runtime_writes, self.runtime_writes = self.runtime_writes, None
            runtime_writes()
        return self.s3.put_object(**request)


def test_a_status_json_the_runtime_writes_while_the_launcher_records_the_end_wins(
    launcher: Launcher, platform: FakeBackend, s3: Any
) -> None:
    """The launcher's write is conditional (If-None-Match): when the runtime's own status.json lands
    between the launcher's read and its write, the launcher's is refused and it answers with the runtime's."""
    handle = _launch(launcher, _try(1))
    platform.kill(handle.task_ref)
    launcher.files.s3 = _RuntimeWritesFirst(s3, lambda: platform.runtime_writes_status(handle.task_ref, 0))
    [task] = [c.as_live_task() for c in platform.of(_try(1))]

    recorded = launcher.ended(task)

    status = _status(s3, handle.layout)
    assert status.written_by == "runtime" and status.state is TaskState.SUCCEEDED
    assert recorded == status


def test_the_watchers_sweep_records_ends_nobody_listened_to_and_removes_the_containers(
    launcher: Launcher, platform: FakeBackend, s3: Any
) -> None:
    """DockerWatcher.sweep (on reconnecting to the engine, and every interval): each ended container's
    end is recorded (by the launcher only where the runtime wrote nothing) and the container removed."""
    killed, finished, running = (_launch(launcher, _try(1, map_index=n)) for n in range(3))
    platform.kill(killed.task_ref)
    platform.finish(finished.task_ref, 0)

    DockerWatcher(launcher, cast(DockerBackend, platform)).sweep()  # it uses ended_tasks() and task(), as the fake has

    assert _status(s3, killed.layout).written_by == "launcher"
    assert _status(s3, finished.layout).written_by == "runtime"
    assert set(platform.containers) == {running.task_ref}
    assert _read(s3, running.layout, running.layout.status_key) is None


# -- describe --------------------------------------------------------------------------------------------


def test_describe_says_pending_running_then_finished_from_status_json(
    launcher: Launcher, platform: FakeBackend, s3: Any
) -> None:
    platform.hold_starts = True
    handle = _launch(launcher, _try(1))

    pending = launcher.describe(handle)
    platform.run(handle.task_ref)
    running = launcher.describe(handle)
    platform.finish(handle.task_ref, 0)
    done = launcher.describe(handle)

    assert (pending.state, pending.status, pending.detail) == (TaskState.PENDING, None, "created")
    assert (running.state, running.status) == (TaskState.RUNNING, None)
    assert done.state is TaskState.SUCCEEDED and done.status is not None and done.status.exit_code == 0


def test_describe_of_a_try_whose_container_vanished_records_it_lost(
    launcher: Launcher, platform: FakeBackend, s3: Any
) -> None:
    """No container and no status.json (docker rm -f, a task ECS forgot): the try is recorded as lost, so
    that its trigger ends instead of waiting for a status.json that will never come."""
    handle = _launch(launcher, _try(1))
    platform.vanish(handle.task_ref)

    answer = launcher.describe(handle)

    assert answer.state is TaskState.FAILED and answer.status == _status(s3, handle.layout)
    assert (answer.status.reason, answer.status.exit_code, answer.status.written_by) == (
        StopReason.LOST,
        None,
        "launcher",
    )
    assert answer.status.error == "its container no longer exists" + STAND_IN


def test_describe_without_a_container_or_status_json_is_lost(launcher: Launcher, s3: Any) -> None:
    handle = Handle("fake", "", BUCKET, launcher.layout_of(_try(1)).prefix, launched=False)

    answer = launcher.describe(handle)

    assert (answer.state, answer.detail) == (TaskState.LOST, "no task was started and no status.json exists")
    assert _keys(s3) == []


# -- reap --------------------------------------------------------------------------------------------------


def test_the_reaper_stops_only_tasks_long_past_their_timeout(
    launcher: Launcher, platform: FakeBackend, s3: Any
) -> None:
    """A task whose runtime failed to enforce its timeout is stopped once it is more than the grace past
    it, saying so; one within the grace and a young one are left running."""
    now = platform.now
    short = Overrides(timeout_seconds=60)
    handles = []
    for number, started in enumerate((now - 60 - REAP_GRACE_SECONDS - 80, now - 60 - REAP_GRACE_SECONDS, now)):
        platform.now = started
        handles.append(_launch(launcher, _try(1, map_index=number), short))
    overdue, in_grace, young = handles

    reaped = launcher.reap(now=now)

    why = f"reaped by the launcher: its timeout of 60 s passed {REAP_GRACE_SECONDS + 80} s ago"
    assert reaped == [overdue.task_ref] and platform.stops == [(overdue.task_ref, why)]
    stop = _stop_json(s3, overdue.layout)
    assert stop is not None and stop.reason == why
    status = _status(s3, overdue.layout)
    assert status.reason is StopReason.STOPPED and status.error == f"stopped by airlaunch: {why} (SIGTERM)"
    assert {t.task_ref for t in platform.live_tasks()} == {in_grace.task_ref, young.task_ref}
    assert _stop_json(s3, in_grace.layout) is None and _stop_json(s3, young.layout) is None


# -- a platform's "task stopped" events (ECS) -----------------------------------------------------------


def _stopped_event(task_ref: str) -> EcsTaskStateChange:
    return EcsTaskStateChange("event-1", task_ref, "arn:aws:ecs:us-east-1:123456789012:cluster/al", "STOPPED")


def test_a_try_that_failed_to_start_is_started_again_from_its_params_then_fails_in_words(
    launcher: Launcher, platform: FakeBackend, s3: Any
) -> None:
    """Each start that failed for a reason that may pass is started again, from the try's own params.yaml
    and catalog entry, up to START_ATTEMPTS starts in all; the try then fails saying why. Meanwhile the
    try's handle describes it as running, and a repeated event starts nothing more."""
    identity = _try(1)
    handle = _launch(launcher, identity, n=7)
    refs = [handle.task_ref]
    for attempt in range(2, START_ATTEMPTS + 1):
        platform.fail_to_start(refs[-1], "CannotPullContainerError: pull access denied")
        reply = launcher.task_stopped(_stopped_event(refs[-1]))
        assert reply.started_again is not None and reply.started_again not in refs
        refs.append(reply.started_again)
        again = platform.containers[refs[-1]]
        assert again.env[ENV_START_ATTEMPT] == str(attempt)
        assert again.params_at_start is not None and yaml.safe_load(again.params_at_start)["params"] == {"n": 7}
        assert launcher.describe(handle).detail == f"started again as {refs[-1]}"
        assert launcher.task_stopped(_stopped_event(refs[-2])).started_again == refs[-1]  # a repeated event

    platform.fail_to_start(refs[-1], "CannotPullContainerError: pull access denied")
    reply = launcher.task_stopped(_stopped_event(refs[-1]))

    assert reply.started_again is None and reply.recorded == "by the launcher" and reply.state == "failed"
    assert len(refs) == START_ATTEMPTS and [e for e, _ in platform.journal].count("start") == START_ATTEMPTS
    status = _status(s3, handle.layout)
    assert status.reason is StopReason.PLATFORM and status.written_by == "launcher"
    assert (
        status.error
        == f"Docker could not run it: CannotPullContainerError: pull access denied (exit code 127){STAND_IN}"
    )


def test_an_event_for_a_task_the_platform_does_not_report_stopped_does_nothing(
    launcher: Launcher, platform: FakeBackend, s3: Any
) -> None:
    """A forged event, or one for a task that still runs: ignored, nothing started or written."""
    handle = _launch(launcher, _try(1))
    keys = _keys(s3)

    for ref in ("not-a-task-of-this-platform", handle.task_ref):
        reply = launcher.task_stopped(_stopped_event(ref))
        assert reply.ignored == f"{ref} is not a stopped airlaunch task of this launcher"

    assert _keys(s3) == keys and [e for e, _ in platform.journal] == ["start"]


def test_a_try_stopped_by_airlaunch_is_not_started_again(launcher: Launcher, platform: FakeBackend, s3: Any) -> None:
    """A failed start of a try that was stopped meanwhile (its status.json is there) is only recorded."""
    handle = _launch(launcher, _try(1))
    platform.on_sigterm = Sigterm.LINGER
    platform.containers[handle.task_ref].on_sigterm = Sigterm.LINGER
    launcher.stop(handle.layout, handle.task_ref, "marked failed in Airflow")
    platform.fail_to_start(handle.task_ref, "CannotPullContainerError: pull access denied")

    reply = launcher.task_stopped(_stopped_event(handle.task_ref))

    assert reply.started_again is None and [e for e, _ in platform.journal].count("start") == 1
    assert _status(s3, handle.layout).reason is StopReason.STOPPED


# -- through the handler ----------------------------------------------------------------------------


def test_bad_requests_are_refused_naming_the_field_and_leave_nothing(
    platform: FakeBackend, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stack test's bad requests (tests/stack/test_launcher.py::BAD_REQUESTS) through the handler and
    the real service with the repository's catalog: each refused, nothing started, nothing written."""
    from tests.stack.test_launcher import BAD_REQUESTS

    catalog = Catalog.load(Path(__file__).resolve().parents[2] / "tasks" / "catalog.yaml")
    settings = LauncherSettings(bucket=BUCKET, key_prefix=ROOT, backend="docker")
    monkeypatch.setattr(handler, "get_launcher", lambda: Launcher(settings, catalog, platform, s3, {}))
    identity = _try(1).to_dict()

    for request_patch, field, message in BAD_REQUESTS:
        patch = dict(cast(dict[str, Any], request_patch))
        request = {"identity": {**identity, **patch.pop("identity_patch", {})}, "params": {}, **patch}
        response = handler.handler({"action": "launch", "request": request})
        assert response["ok"] is False and response["error"]["type"] == "InvalidRequest", response
        assert response["error"]["field"] == field and message in response["error"]["message"]

    assert platform.journal == [] and _keys(s3) == []


def test_list_names_each_live_task_with_where_its_try_writes(
    launcher: Launcher, platform: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the orphan sweep reads: every live task with its bucket, prefix and start; ended ones not."""
    monkeypatch.setattr(handler, "get_launcher", lambda: launcher)
    live, ended = (_launch(launcher, _try(1, map_index=n)) for n in range(2))
    platform.finish(ended.task_ref, 0)

    response = handler.handler({"action": "list"})

    assert response["ok"] and response["tasks"] == [
        {"task_ref": live.task_ref, "bucket": BUCKET, "prefix": live.prefix, "started_at": platform.now}
    ]
