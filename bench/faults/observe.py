"""What a fault left, seen from the outside: Airflow's REST API, S3, and the Docker events of bench/faults/events.py.

``assess`` settles a DAG run and counts what the goals are about: containers left behind, tries without a
recorded end or whose result did not reach Airflow (results lost), and containers beyond one per try or two
tries of one task running at once (duplicates). ``wait_for``, ``wait_terminal`` and ``airflow_message`` are
the waits and reads every scenario shares.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airlaunch.airflow_rest import TASK_ENDED_STATES as TERMINAL
from airlaunch.airflow_rest import AirflowApiError, AirflowRest
from bench.faults.events import ContainerScope, DockerEvents, containers

# A container stopped on its task's end gets SIGTERM, then SIGKILL after the stop grace (10 s): one that
# ran on longer than this after its task instance ended counts as left behind.
ORPHAN_GRACE_SECONDS = 12.0
MIN_SETTLE_SECONDS = 10.0  # looked at no sooner than this after the task ended


def epoch(text: str | None) -> float | None:
    """An ISO timestamp (Airflow's, the runtime's) as epoch seconds."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def wait_for(condition: Any, what: str, timeout: float = 120, pause: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except (AirflowApiError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(pause)


def ti_state(api: AirflowRest, dag_id: str, run_id: str, task_id: str = "task", map_index: int = -1) -> dict[str, Any]:
    return api.task_instance(dag_id, run_id, task_id, map_index)


def wait_terminal(
    api: AirflowRest, dag_id: str, run_id: str, timeout: float = 300, task_id: str = "task"
) -> dict[str, Any]:
    """Wait until the task instance has ended (success, failed...); its REST record."""

    def ended() -> dict[str, Any] | None:
        ti = api.task_instance(dag_id, run_id, task_id)
        return ti if ti["state"] in TERMINAL else None

    result: dict[str, Any] = wait_for(ended, f"{dag_id}/{run_id}/{task_id} to end", timeout, pause=0.2)
    return result


def airflow_message(api: AirflowRest, dag_id: str, run_id: str, ti: dict[str, Any], patterns: tuple[str, ...]) -> str:
    """The first line of the task's log (as the UI shows it) that contains one of ``patterns``."""
    try:
        log = api.log(dag_id, run_id, ti["task_id"], ti["try_number"] or 1, ti.get("map_index", -1))
    except AirflowApiError:
        return ""
    for pattern in patterns:
        for line in log.splitlines():
            if pattern in line:
                return line.strip()
    return ""


@dataclass
class Try:
    prefix: str
    map_index: int
    try_number: int
    ti_id: str
    keys: set[str] = field(default_factory=set)
    status: dict[str, Any] | None = None
    status_written: float | None = None  # status.json's LastModified (S3 gives whole seconds)


def tries(s3: Any, bucket: str, dag_id: str, run_id: str) -> list[Try]:
    """Every try the run left in S3 (each has its own folder <task>/<map>/<try>-<ti_id>/)."""
    found: dict[str, Try] = {}
    root = f"runs/{dag_id}/{run_id}/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root):
        for item in page.get("Contents", []):
            rest = item["Key"][len(root) :].split("/")
            if len(rest) < 4:
                continue
            task_id, map_index, try_key, name = rest[0], rest[1], rest[2], "/".join(rest[3:])
            prefix = f"{root}{task_id}/{map_index}/{try_key}/"
            number, _, ti_id = try_key.partition("-")
            found.setdefault(prefix, Try(prefix, int(map_index), int(number), ti_id)).keys.add(name)
            if name == "status.json":
                found[prefix].status_written = item["LastModified"].timestamp()
    for item in found.values():
        if "status.json" in item.keys:
            body = s3.get_object(Bucket=bucket, Key=item.prefix + "status.json")["Body"].read()
            item.status = json.loads(body)
    return sorted(found.values(), key=lambda t: (t.map_index, t.try_number))


@dataclass
class Assessment:
    """What one DAG run left behind, against the goals."""

    containers_left: int = 0  # still there after the settle time, or ran on long after their task ended
    left_detail: list[str] = field(default_factory=list)
    outlived: dict[str, float] = field(default_factory=dict)  # container: seconds it ran past its task's end
    last_container_gone_after: float | None = None  # seconds after the run's tasks ended
    results_lost: int = 0
    lost_detail: list[str] = field(default_factory=list)
    duplicates: int = 0
    duplicate_detail: list[str] = field(default_factory=list)
    exit_overlaps: list[float] = field(default_factory=list)  # seconds a container took to exit after its status.json
    tries: list[Try] = field(default_factory=list)
    task_instances: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what else was counted, in words (ECS's tasks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "notes": self.notes,
            "containers_left": self.containers_left,
            "left_detail": self.left_detail,
            "outlived": self.outlived,
            "last_container_gone_after": self.last_container_gone_after,
            "results_lost": self.results_lost,
            "lost_detail": self.lost_detail,
            "duplicates": self.duplicates,
            "duplicate_detail": self.duplicate_detail,
            "tries": [
                {
                    "prefix": t.prefix,
                    "status": {k: (t.status or {}).get(k) for k in ("state", "reason", "exit_code", "written_by")},
                }
                for t in self.tries
            ][:50],
        }


def assess(
    api: AirflowRest,
    s3: Any,
    bucket: str,
    events: DockerEvents,
    scope: ContainerScope,
    dag_id: str,
    run_id: str,
    settle_seconds: float = 75.0,
    task_id: str = "task",
    orphan_grace: float = ORPHAN_GRACE_SECONDS,
) -> Assessment:
    """Wait until the run's task instances ended and its containers are gone (up to ``settle_seconds``:
    the orphan sweep may need its interval plus its grace), then count orphans, lost results and
    duplicates."""
    found = Assessment()
    tis = wait_for(
        lambda: (
            [ti for ti in api.task_instances(dag_id, run_id) if ti["task_id"] == task_id]
            if all(ti["state"] in TERMINAL for ti in api.task_instances(dag_id, run_id) if ti["task_id"] == task_id)
            else None
        ),
        f"every {task_id} of {dag_id}/{run_id} to end",
        timeout=900,
        pause=1.0,
    )
    found.task_instances = tis
    ended = max((epoch(ti["end_date"]) or time.time() for ti in tis), default=time.time())
    # a launch may still be in flight when a task is ended by hand: give it time to show up first
    time.sleep(max(0.0, ended + MIN_SETTLE_SECONDS - time.time()))
    deadline = time.monotonic() + settle_seconds
    while containers(scope, run_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = containers(scope, run_id)
    found.last_container_gone_after = None if left else max(0.0, time.time() - ended)
    found.containers_left = len(left)
    for container in left:
        state = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Status}} {{.Name}}", container], capture_output=True, text=True
        ).stdout.strip()
        found.left_detail.append(f"{container[:12]} {state} {time.time() - ended:.0f} s after the task ended")
    # a container that ran on well after its task instance had ended was an orphan, even if something
    # (the orphan sweep, the reaper) stopped it later
    ends = {ti["id"]: epoch(ti["end_date"]) for ti in tis}
    died = {e.container: e.at for e in events.of_run(run_id, "die")}
    for start in events.of_run(run_id, "start"):
        ti_end = ends.get(start.labels.get("airlaunch.ti_id", ""))
        if start.container in left or ti_end is None:
            continue
        outlived = died.get(start.container, time.time()) - ti_end
        found.outlived[start.container] = round(outlived, 2)
        if outlived > orphan_grace:
            found.containers_left += 1
            found.left_detail.append(f"{start.container[:12]} ran on {outlived:.0f} s after its task ended")

    # results: every try recorded how it ended; a successful task's result reached Airflow
    found.tries = tries(s3, bucket, dag_id, run_id)
    by_ti = {t.ti_id: t for t in found.tries}
    for item in found.tries:
        if item.status is None:
            found.results_lost += 1
            found.lost_detail.append(f"{item.prefix}: no status.json (the try's end was never recorded)")
    for ti in tis:
        last = by_ti.get(ti["id"])
        label = f"{task_id}[{ti['map_index']}] try {ti['try_number']}"
        if last is None or last.status is None:
            continue  # a try that never reached the launcher (or already counted above)
        for earlier in found.tries:  # a try that succeeded but was not the last: Airflow never took its result
            if (
                earlier.map_index == ti["map_index"]
                and earlier.try_number < ti["try_number"]
                and (earlier.status or {}).get("state") == "succeeded"
            ):
                found.results_lost += 1
                found.lost_detail.append(
                    f"{task_id}[{ti['map_index']}] try {earlier.try_number} succeeded, but Airflow ran the work "
                    f"again as try {ti['try_number']}"
                )
        if last.status["state"] == "succeeded" and ti["state"] != "success":
            found.results_lost += 1
            found.lost_detail.append(f"{label}: its container succeeded but Airflow says {ti['state']}")
        if ti["state"] == "success" and last.status["state"] == "succeeded":
            result_key = last.status.get("result_keys", {}).get("result")
            if result_key is None:
                continue
            expected = json.loads(s3.get_object(Bucket=bucket, Key=result_key)["Body"].read())
            try:
                got = api.xcom(dag_id, run_id, task_id, map_index=ti["map_index"])
            except AirflowApiError as exc:
                got = f"no XCom ({exc})"
            if got != expected:
                found.results_lost += 1
                found.lost_detail.append(f"{label}: XCom {got!r} is not its result.json {expected!r}")

    # duplicates: one container per try, and never two tries of one task at once
    # (a try that recorded its end in status.json runs no more code: its container only exits)
    runs: dict[tuple[str, ...], list[tuple[float, float, tuple[str, str]]]] = defaultdict(list)
    starts: dict[tuple[str, ...], list[str]] = defaultdict(list)
    recorded = {t.ti_id: epoch((t.status or {}).get("ended_at")) for t in found.tries}
    for start in events.of_run(run_id, "start"):
        if start.labels.get("airlaunch.task_id") != task_id:
            continue
        try_id = (*start.slot, *start.try_key)
        if start.container not in starts[try_id]:
            starts[try_id].append(start.container)
        end = min(x for x in (died.get(start.container), recorded.get(start.try_key[1]), time.time()) if x)
        runs[start.slot].append((start.at, end, start.try_key))
        exited = died.get(start.container)
        if exited and end < exited - 0.05:
            found.exit_overlaps.append(round(exited - end, 2))
    for key, ids in starts.items():
        if len(ids) > 1:
            found.duplicates += len(ids) - 1
            found.duplicate_detail.append(f"try {key[4]} of map index {key[3]}: {len(ids)} containers")
    for slot, intervals in runs.items():
        intervals.sort()
        for (_, first_end, first), (second_start, _, second) in itertools.pairwise(intervals):
            if first != second and second_start < first_end - 0.05:
                found.duplicates += 1
                found.duplicate_detail.append(
                    f"map index {slot[3]}: try {second[0]} started {first_end - second_start:.1f} s before try "
                    f"{first[0]} ended"
                )
    return found
