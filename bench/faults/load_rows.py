"""The scenarios under load: a 100 MB log burst beside short tasks, and 200 concurrent tasks of which 20 are
killed at random (Docker backend; ECS's fan-out is the benchmark's, make bench PARTS=scale-ecs).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from bench.faults.events import containers
from bench.faults.observe import TERMINAL, airflow_message, epoch, wait_for, wait_terminal
from bench.faults.suite import DETECTION_GOAL, FAILURE_PATTERNS, Row, Suite


def _short_latency(suite: Suite) -> tuple[float, str]:
    """A 2 s task launched from the triggerer: seconds from its status.json to Airflow's success."""
    run_id = suite.trigger("faults_trigger", {"action": "sleep", "seconds": 2})
    ti = wait_terminal(suite.api, "faults_trigger", run_id, timeout=180)
    found = suite.assess("faults_trigger", run_id)
    status = suite.status_of(ti, found) or {}
    ended = epoch(status.get("ended_at"))
    if ti["state"] != "success" or ended is None:
        raise RuntimeError(f"the short task {run_id} ended {ti['state']}")
    return (epoch(ti["end_date"]) or 0) - ended, run_id


def log_burst(suite: Suite, row: Row) -> Row:
    baseline = sorted(_short_latency(suite)[0] for _ in range(3))
    burst_run = suite.trigger("faults_trigger", {"action": "log", "log_mib": 100})
    suite.started(burst_run)
    part = f"runs/faults_trigger/{burst_run}/task/-1/"

    def parts() -> list[str]:
        listed = suite.s3.list_objects_v2(Bucket=suite.bucket, Prefix=part).get("Contents", [])
        return [o["Key"] for o in listed if "/log/" in o["Key"]]

    wait_for(lambda: len(parts()) >= 4, "the burst's fourth log part", 180, 0.5)
    during: list[float] = []
    while len(during) < 3 and suite.api.task_instance("faults_trigger", burst_run, "task")["state"] not in TERMINAL:
        during.append(_short_latency(suite)[0])
    found = suite.assess("faults_trigger", burst_run)
    row = suite.judge(row, "faults_trigger", burst_run, expect="success", found=found)
    ti = found.task_instances[0]
    log = suite.api.log("faults_trigger", burst_run, "task")
    status = suite.status_of(ti, found) or {}
    row.details.update(baseline=baseline, during=during, airflow_log_bytes=len(log))
    median = baseline[len(baseline) // 2]
    row.detection = round(max(during), 2) if during else None
    row.notes.append(
        f"short task latency without the burst {', '.join(f'{x:.2f}' for x in baseline)} s; during it "
        f"{', '.join(f'{x:.2f}' for x in during)} s; the burst's task log in Airflow is {len(log) / 1e6:.2f} MB, "
        f"its log.txt {_size(suite, status.get('result_keys', {}).get('log')) / 1e6:.0f} MB"
    )
    if not during:
        row.missed.append("the burst ended before a short task could run beside it")
    elif max(during) > median + 1.0:
        row.late.append(f"the short task took up to {max(during):.2f} s against {median:.2f} s without the burst")
    if len(log) > 5_000_000:
        row.missed.append(f"the burst's task log in Airflow is {len(log) / 1e6:.1f} MB")
    row.message = f"the burst's log in Airflow: {len(log) / 1e6:.2f} MB; " + (
        next((line for line in log.splitlines() if "bytes of output not shown" in line), "no truncation marker")
    )
    return row.conclude()


def fan_out_with_kills(suite: Suite, row: Row, count: int = 200, kills: int = 20) -> Row:
    # Long enough that all of them run at once: starting 200 takes about 5 minutes on 2 cores, and the
    # kills wait for that start-up to settle (up to 3 minutes): detection is measured beside 200
    # running tasks, not inside their start-up's queue for the CPU.
    run_id = suite.trigger("faults_fan", {"count": count, "min_seconds": 540, "max_seconds": 570})
    wait_for(lambda: len(suite.events.of_run(run_id, "start")) >= count, f"{count} containers to start", 900, 1.0)
    settled = time.monotonic() + 180
    while (busy := cpu_busy(5.0)) > 0.8 and time.monotonic() < settled:
        pass
    concurrent = len(containers(suite.scope, run_id, running_only=True))
    row.notes.append(
        f"{concurrent} running at once at the first kill; the CPU {busy:.0%} busy over the 5 s before it, "
        f"load average {os.getloadavg()[0]:.0f}"
    )
    killed: dict[str, float] = {}
    rng = random.Random(12)
    while len(killed) < kills:
        running = [c for c in containers(suite.scope, run_id, running_only=True) if c not in killed]
        if not running:
            break
        victim = rng.choice(running)
        killed[victim] = time.time()
        suite.stack.docker("kill", victim)
        time.sleep(rng.uniform(0.2, 1.5))
    found = suite.assess("faults_fan", run_id, task_id="sleep")
    starts = {e.container: e for e in suite.events.of_run(run_id, "start")}
    index_of = {c: int(e.labels.get("airlaunch.map_index", "-1")) for c, e in starts.items()}
    tis = {ti["map_index"]: ti for ti in found.task_instances}
    detections, wrong, too_late, recorded = [], [], [], []
    for container, at in killed.items():
        ti = tis.get(index_of.get(container, -2))
        if ti is None:
            wrong.append(f"{container[:12]}: no task instance")
            continue
        status = suite.status_of(ti, found) or {}
        ended = epoch(status.get("ended_at"))
        if status.get("state") == "succeeded" and ended is not None and ended <= at:
            too_late.append(ti["map_index"])  # it had finished (status.json written) when the kill came
            continue
        if ti["state"] != "failed":
            wrong.append(f"[{ti['map_index']}] killed but {ti['state']}")
        detections.append((epoch(ti["end_date"]) or at) - at)
        written = next((t.status_written for t in found.tries if t.ti_id == ti["id"]), None)
        if written is not None:
            recorded.append(written - at)
    if too_late:
        row.notes.append(f"killed after their status.json (so rightly succeeded): {too_late}")
    others = [ti for index, ti in tis.items() if index not in {index_of.get(c) for c in killed} - set(too_late)]
    not_ok = [f"[{ti['map_index']}] {ti['state']}" for ti in others if ti["state"] != "success"]
    detections.sort()
    if detections:
        row.detection = round(detections[-1], 2)
        p50 = detections[len(detections) // 2]
        row.notes.append(f"detection of the {len(detections)} kills: p50 {p50:.2f} s, max {detections[-1]:.2f} s")
    if recorded:
        recorded.sort()
        row.notes.append(
            f"the launcher's status.json was in S3 (LastModified, whole seconds) {recorded[len(recorded) // 2]:.0f} s "
            f"after the kill at p50, {recorded[-1]:.0f} s at most"
        )
    sample = next(iter(killed), None)
    if sample is not None and index_of.get(sample) in tis:
        ti = tis[index_of[sample]]
        row.message = airflow_message(suite.api, "faults_fan", run_id, ti, FAILURE_PATTERNS).removeprefix(
            "AirflowException: "
        )
    row.notes.append(
        f"{len(starts)} containers started for {len(tis)} tasks; {len(others) - len(not_ok)} of {len(others)} "
        f"not killed succeeded"
    )
    row.details.update(run_id=run_id, detections=detections, assessment=found.to_dict(), wrong=wrong, not_ok=not_ok)
    if wrong:
        row.missed.append(f"killed tasks not failed: {', '.join(wrong[:5])}")
    if not_ok:
        row.missed.append(f"tasks not killed that did not succeed: {', '.join(not_ok[:5])}")
    row.count(found, most=5)
    if not detections or detections[-1] > DETECTION_GOAL:
        row.late.append(f"detection up to {row.detection} s, over the {DETECTION_GOAL:g} s goal")
    if "killed by signal 9" not in row.message:
        row.missed.append("the message does not say 'killed by signal 9'")
    return row.conclude()


def cpu_busy(seconds: float) -> float:
    """The share of the machine's CPU time spent busy over the next ``seconds`` (/proc/stat)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle, iowait
        return sum(fields) - idle, sum(fields)

    busy, total = sample()
    time.sleep(seconds)
    busy_after, total_after = sample()
    return (busy_after - busy) / max(1, total_after - total)


def _size(suite: Suite, key: str | None) -> int:
    if not key:
        return 0
    size: int = suite.s3.head_object(Bucket=suite.bucket, Key=key)["ContentLength"]
    return size
