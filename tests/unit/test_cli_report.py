"""``airlaunch report`` and its chart against moto's S3, on fabricated Docker-style and ECS-style tries."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from airlaunch import cli
from airlaunch.cost import money
from airlaunch.protocol import (
    AirflowMoments,
    EcsTimes,
    LauncherMoments,
    RequestedSize,
    Resources,
    ResultLayout,
    RunIdentity,
    RuntimePhases,
    TaskState,
    Timeline,
    Usage,
)
from tests.unit.conftest import put_try, status_json

D = Decimal
MIB = 1024 * 1024


def at(origin: datetime, seconds: float) -> str:
    return (origin + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def lay_out(s3: Any, bucket: str, task: str, usage_of: Any, state: TaskState = TaskState.SUCCEEDED) -> datetime:
    """A try whose timestamps follow the S3 LastModified of its params.yaml, as a real launch's do."""
    layout = put_try(s3, bucket, "runs", task)
    written = s3.head_object(Bucket=bucket, Key=layout.params_key)["LastModified"]
    usage = usage_of(written)
    identity = RunIdentity("d", "r1", task)
    status = status_json(identity, state, 0 if state is TaskState.SUCCEEDED else 137, usage=usage)
    keys = {"params": layout.params_key, "result": layout.result_key, "log": layout.log_key}
    document = json.loads(status)
    document["result_keys"] = keys
    s3.put_object(Bucket=bucket, Key=layout.status_key, Body=json.dumps(document).encode())
    return written


def docker_usage(written: datetime) -> Usage:
    """A local try: 0.5 vCPU / 256 MiB limits, 1.5 s to start the container, 6 s of code, over its memory limit."""
    return Usage(
        phases=RuntimePhases(
            runtime_started_at=at(written, 1.5),
            params_read_at=at(written, 2.0),
            user_code_started_at=at(written, 2.25),
            user_code_ended_at=at(written, 8.25),
            results_uploaded_at=at(written, 8.75),
        ),
        resources=Resources(
            cgroup="v1",
            cpu_seconds=5.5,
            memory_peak_bytes=256 * MIB,
            memory_limit_bytes=256 * MIB,
            memory_limit_hit=True,
            oom_kills=1,
            cpu_limit=0.5,
            architecture="x86_64",
        ),
    )


def ecs_usage(written: datetime) -> Usage:
    """A Fargate try of 1 vCPU / 2 GiB in eu-west-1: ECS's own timestamps around the runtime's."""
    return Usage(
        phases=RuntimePhases(
            runtime_started_at=at(written, 31.0),
            params_read_at=at(written, 32.0),
            user_code_started_at=at(written, 32.5),
            user_code_ended_at=at(written, 92.5),
            results_uploaded_at=at(written, 93.0),
        ),
        resources=Resources(
            cgroup="v2", cpu_seconds=58.0, memory_peak_bytes=300 * MIB, memory_limit_hit=False, oom_kills=0
        ),
        ecs=EcsTimes(
            created_at=at(written, 0.5),
            pull_started_at=at(written, 5.0),
            pull_stopped_at=at(written, 25.0),
            started_at=at(written, 30.0),
            stopping_at=at(written, 94.0),
            stopped_at=at(written, 100.4),
        ),
        requested=RequestedSize(cpu=1, memory_mib=2048, region="eu-west-1", capacity_provider="FARGATE", backend="ecs"),
    )


@pytest.fixture
def run_bucket(moto_s3: Any, bucket: str) -> str:
    lay_out(moto_s3, bucket, "local", docker_usage, TaskState.FAILED)
    lay_out(moto_s3, bucket, "fargate", ecs_usage)
    old = put_try(moto_s3, bucket, "runs", "old")  # a status.json from before the usage record
    written = moto_s3.head_object(Bucket=bucket, Key=old.params_key)["LastModified"]
    status = json.loads(status_json(RunIdentity("d", "r1", "old"), TaskState.SUCCEEDED, 0))
    status.update(started_at=at(written, 1.0), ended_at=at(written, 5.0))
    moto_s3.put_object(Bucket=bucket, Key=old.status_key, Body=json.dumps(status).encode())
    put_try(moto_s3, bucket, "runs", "running")
    return bucket


def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["report", "d", "r1", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_report_json_has_phases_resources_and_costs_that_match_the_price_table(
    run_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = report(capsys, "--bucket", run_bucket, "--json")
    assert code == 0, err
    document = json.loads(out)
    tries = {t["task_id"]: t for t in document["tries"]}
    assert [t["task_id"] for t in document["tries"]][:2] == ["fargate", "local"]  # the costliest first

    fargate = tries["fargate"]
    assert [(p["phase"], p["seconds"], p["clock"]) for p in fargate["phases"]] == [
        ("launch", 0.5, "S3 (1 s) -> ECS"),
        ("provision", 4.5, "ECS"),
        ("pull", 20.0, "ECS"),
        ("start", 5.0, "ECS"),
        ("boot", 1.0, "ECS -> container"),
        ("startup", 1.5, "container"),
        ("code", 60.0, "container"),
        ("upload", 0.5, "container"),
        ("exit", 1.0, "container -> ECS"),
        ("stop", 6.4, "ECS"),
    ]
    assert fargate["dominant_phase"] == "code" and fargate["resources"]["cpu_seconds"] == 58.0
    # Billed from the image pull (5.0) to the stop (100.4): 95.4 s, rounded up to 96 s.
    cost = fargate["cost"]
    assert (cost["region"], cost["cpu_units"], cost["memory_mib"], cost["billed_seconds"]) == (
        "eu-west-1",
        1024,
        2048,
        96,
    )
    assert cost["fargate"] == float((D(1) * D("0.04048") + D(2) * D("0.004445")) * 96 / 3600)
    assert cost["lambda"] == float(D("0.0000002") + D("0.25") * D("0.5") * D("0.0000166667"))
    # PUTs: params, result, log, status and the interim log uploads of 60 s of code (every 2 s for 20 s,
    # then a tenth of the task's age: 10 + 11); GETs: params, status, result.
    assert cost["s3"] == float(((3 + 1 + 21) * D("0.005") + 3 * D("0.0004")) / 1000)
    assert fargate["cost_note"] == "requested size 1 vCPU/2048 MiB, ECS pull to stop"

    local = tries["local"]
    assert [(p["phase"], p["seconds"]) for p in local["phases"]] == [
        ("launch", 1.5),
        ("startup", 0.75),
        ("code", 6.0),
        ("upload", 0.5),
    ]
    assert local["phases"][0]["clock"] == "S3 (1 s) -> container"
    resources = local["resources"]
    assert (resources["memory_limit_hit"], resources["oom_kills"], resources["memory_peak_bytes"]) == (
        True,
        1,
        256 * MIB,
    )
    # 0.5 vCPU / 256 MiB runs on Fargate as 512 units / 1024 MiB; 7.25 s of container run bills the minute.
    assert (local["cost"]["cpu_units"], local["cost"]["memory_mib"], local["cost"]["billed_seconds"]) == (512, 1024, 60)
    assert local["cost"]["fargate"] == float((D("0.5") * D("0.04048") + D(1) * D("0.004445")) * 60 / 3600)
    assert local["cost"]["region"] == "us-east-1"

    assert [(p["phase"], p["seconds"]) for p in tries["old"]["phases"]] == [("launch", 1.0), ("run", 4.0)]
    assert tries["old"]["cost"]["billed_seconds"] == 60
    assert tries["old"]["cost_note"].startswith("assumed size 0.5 vCPU/512 MiB")
    assert tries["running"]["cost"] is None and tries["running"]["cost_note"] == "still running: no duration yet"

    estimate = document["estimate"]
    assert estimate["on_aws"] is True and estimate["prices_date"] == "2026-12-01"
    priced = [t["cost"]["total"] for t in document["tries"] if t["cost"]]
    assert estimate["total_cost"] == pytest.approx(sum(priced), rel=1e-12)
    totals = list(document["phase_totals"].items())
    assert totals[0][0] == "code" and [s for _, s in totals] == sorted((s for _, s in totals), reverse=True)


def test_report_table_is_sorted_by_cost_and_says_what_dominates(
    run_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = report(capsys, "--bucket", run_bucket)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "TASK", "MAP", "TRY", "STATE", "LAUNCH", "STARTUP", "CODE", "UPLOAD", "END", "TOTAL",
        "CPU-S", "PEAK", "MEM", "MEM", "LIMIT", "COST", "DOMINANT",
    ]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in lines[1:5]}
    assert list(rows) == ["fargate", "local", "old", "running"]
    assert rows["fargate"][4:11] == ["31.00", "1.50", "60.00", "0.50", "-", "100.40", "58.00"]
    assert rows["fargate"][11:] == ["300.0MiB", "ok", rows["fargate"][13], "code"]
    assert rows["local"][3:11] == ["failed", "1.50", "0.75", "6.00", "0.50", "-", "8.75", "5.50"]
    assert rows["local"][11:] == ["256.0MiB", "OOM-KILLED", rows["local"][13], "code"]
    assert re.fullmatch(r"\$0\.\d{6}", rows["local"][13])
    assert rows["running"][3:] == ["running"] + ["-"] * 11
    summary = "\n".join(lines[5:])
    assert "4 tries; time by phase, largest first: code " in summary
    assert "this run costs about $0.00" in summary and "prices of 2026-12-01" in summary
    assert "no cost for some tries: still running: no duration yet" in summary


def test_a_local_run_says_what_it_would_cost_on_fargate(
    moto_s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lay_out(moto_s3, bucket, "local", docker_usage)
    options = ("--bucket", bucket, "--arch", "arm64", "--region", "eu-central-1")
    document = json.loads(report(capsys, *options, "--json")[1])
    cost = document["tries"][0]["cost"]
    assert cost["fargate"] == float((D("0.5") * D("0.03725") + D(1) * D("0.00409")) * 60 / 3600)
    assert document["estimate"]["on_aws"] is False and document["estimate"]["total_cost"] == cost["total"]
    code, out, _ = report(capsys, *options)
    assert (
        code == 0
        and f"this run would cost about {money(cost['total'])} on Fargate (eu-central-1, arm64, on demand;" in out
    )
    code, out, _ = report(capsys, "--bucket", bucket, "--arch", "arm64", "--spot", "--json")
    assert json.loads(out)["tries"][0]["cost_note"] == "no Fargate Spot price for arm64 in us-east-1 (it has: x86_64)"


@pytest.mark.parametrize("suffix", [".html", ".svg"])
def test_the_chart_is_one_self_contained_file_with_a_bar_per_try(
    run_bucket: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, suffix: str
) -> None:
    chart = tmp_path / f"run{suffix}"
    code, out, _ = report(capsys, "--bucket", run_bucket, "--chart", str(chart))
    assert code == 0 and out.endswith(f"chart: {chart}\n")
    text = chart.read_text()
    assert text.startswith("<!DOCTYPE html>" if suffix == ".html" else "<svg ")
    assert "<script" not in text and "href=" not in text and "src=" not in text  # nothing fetched from elsewhere
    assert re.findall(r"https?://[^\"' ]+", text) == ["http://www.w3.org/2000/svg"]
    rects = re.findall(r'<rect class="phase-(\w+)"', text)
    assert rects.count("code") == 2 and rects.count("pull") == 1 and rects.count("launch") == 3
    assert rects.count("run") == 1 and len(rects) == 10 + 4 + 2
    for label in ("fargate try 1", "local try 1", "old try 1", "running try 1"):
        assert f">{label}</text>" in text
    assert "running try 1: " not in text and "no phases recorded" in text
    assert "fargate try 1: code 60.000 s (container)" in text


def test_ecs_times_without_a_zone_are_taken_as_utc(
    moto_s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def naive_ecs(written: datetime) -> Usage:
        usage = ecs_usage(written)
        naive = {
            k: v.replace("+00:00", "") if isinstance(v, str) and k != "clock" else v
            for k, v in asdict(usage.ecs).items()
        }
        return replace(usage, ecs=EcsTimes(**naive))

    lay_out(moto_s3, bucket, "fargate", naive_ecs)
    code, out, _ = report(capsys, "--bucket", bucket, "--json")
    assert code == 0 and json.loads(out)["tries"][0]["cost"]["billed_seconds"] == 96


def timed_try(moto_s3: Any, bucket: str, capsys: pytest.CaptureFixture[str], container_started_after: float) -> Any:
    """A local try with Airflow's and the launcher's timings.json (the container started this long after
    params.yaml was written), as the report's JSON shows it."""
    written = lay_out(moto_s3, bucket, "local", docker_usage)
    timeline = Timeline(
        airflow=AirflowMoments(
            task_started_at=at(written, -1.0),
            launch_requested_at=at(written, -0.4),
            completion_seen_at=at(written, 9.0),
            task_ended_at=at(written, 9.25),
        ),
        launcher=LauncherMoments(
            received_at=at(written, -0.3),
            container_created_at=at(written, 0.5),
            container_started_at=at(written, container_started_after),
        ),
    )
    layout = ResultLayout.for_identity(bucket, "runs", RunIdentity("d", "r1", "local"))
    moto_s3.put_object(Bucket=bucket, Key=layout.timings_key, Body=timeline.to_json().encode())
    [tried] = json.loads(report(capsys, "--bucket", bucket, "--json")[1])["tries"]
    return tried


def test_timings_json_gives_every_phase_from_airflows_start_to_its_end(
    moto_s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tried = timed_try(moto_s3, bucket, capsys, container_started_after=1.0)
    phases = [(p["phase"], p["seconds"], p["clock"]) for p in tried["phases"]]
    assert phases == [
        ("airflow", 0.6, "Airflow"),
        ("invoke", 0.1, "Airflow -> launcher"),
        ("launch", 0.8, "launcher -> platform"),
        ("create", 0.5, "platform"),
        ("boot", 0.5, "platform -> container"),
        ("startup", 0.75, "container"),
        ("code", 6.0, "container"),
        ("upload", 0.5, "container"),
        ("notify", 0.25, "container -> Airflow"),
        ("finish", 0.25, "Airflow"),
    ]
    assert tried["total_seconds"] == 10.25


def test_a_platform_start_recorded_after_the_runtime_began_makes_no_negative_phase(
    moto_s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Docker's StartedAt and ECS's startedAt come once the start call is done, after the runtime inside
    has begun (measured: ECS mode's startedAt 49 ms after the runtime's start): boot is zero, not negative."""
    tried = timed_try(moto_s3, bucket, capsys, container_started_after=1.9)  # the runtime starts at +1.5 s
    seconds = {p["phase"]: p["seconds"] for p in tried["phases"]}
    assert seconds["boot"] == 0 and seconds["create"] == 1.0 and min(seconds.values()) >= 0
    assert tried["total_seconds"] == 10.25
