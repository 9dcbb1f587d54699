"""The usage record of real tries (Docker, LocalStack) and `airlaunch report` on them.

Needs the task images built from this tree (the runtime's usage record; the diagnostic
task's burn and allocate actions): `make reload` (or `make images`) first.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from airlaunch.cli import main
from tests.conftest import LauncherClient
from tests.unit.conftest import moments_in_order

pytestmark = pytest.mark.stack

DAG = "usage_tests"
MIB = 1024 * 1024


def in_dag(identity: dict[str, Any], task_id: str) -> dict[str, Any]:
    return {**identity, "dag_id": DAG, "task_id": task_id}


def report_json(capsys: pytest.CaptureFixture[str], bucket: str, run_id: str, *extra: str) -> Any:
    code = main(["report", DAG, run_id, "--bucket", bucket, "--region", "us-east-1", "--json", *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_a_try_that_burns_cpu_and_one_that_allocates_memory_report_both(
    launcher: LauncherClient, identity: dict[str, Any]
) -> None:
    burn = launcher.launch("diagnostic", in_dag(identity, "burn"), {"action": "burn", "cpu_seconds": 1.0})
    allocate = launcher.launch("diagnostic", in_dag(identity, "allocate"), {"action": "allocate", "mib": 96})
    burnt, allocated = launcher.wait_status(burn), launcher.wait_status(allocate)
    assert (burnt.state, allocated.state) == ("succeeded", "succeeded")
    moments_in_order(burnt)
    moments_in_order(allocated)
    assert burnt.usage is not None and allocated.usage is not None

    used = burnt.usage.resources
    assert used.cgroup in ("v1", "v2") and used.architecture in ("x86_64", "arm64")
    assert used.cpu_seconds is not None and used.cpu_seconds >= 1.0  # the task's own second, and the runtime's
    assert used.cpu_limit == 0.5 and used.memory_limit_bytes == 256 * MIB  # the catalog's size, as Docker set it
    assert used.memory_limit_hit is False and used.oom_kills == 0
    assert used.memory_peak_bytes is not None and used.memory_peak_bytes > 0

    held = allocated.usage.resources
    assert held.memory_peak_bytes is not None and held.memory_peak_bytes >= 96 * MIB
    assert held.cpu_seconds is not None and held.cpu_seconds > 0


def test_a_try_over_its_memory_limit_says_so(
    launcher: LauncherClient, identity: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    handle = launcher.launch(
        "diagnostic", in_dag(identity, "hog"), {"action": "allocate", "mib": 512}, overrides={"memory_mib": 128}
    )
    status = launcher.wait_status(handle)
    assert (status.state, status.exit_code) == ("failed", 137)  # SIGKILL from the kernel's OOM killer
    assert status.usage is not None
    used = status.usage.resources
    assert used.memory_limit_bytes == 128 * MIB
    assert used.memory_limit_hit is True and used.oom_kills is not None and used.oom_kills >= 1

    document = report_json(capsys, handle.bucket, identity["run_id"])
    (hog,) = document["tries"]
    assert hog["resources"]["memory_limit_hit"] is True and hog["state"] == "failed"
    main(["report", DAG, identity["run_id"], "--bucket", handle.bucket])
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[0] == "hog" and "OOM-KILLED" in row


def test_report_prices_a_real_try_as_the_price_table_says(
    launcher: LauncherClient, identity: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    handle = launcher.launch("diagnostic", in_dag(identity, "sleeper"), {"action": "sleep", "seconds": 2})
    status = launcher.wait_status(handle)
    runtime_started, *_, uploaded, _ = moments_in_order(status)
    chart = tmp_path / "run.html"

    document = report_json(capsys, handle.bucket, identity["run_id"], "--chart", str(chart))

    (sleeper,) = document["tries"]
    assert [p["phase"] for p in sleeper["phases"]] == ["launch", "startup", "code", "upload"]
    assert sleeper["phases"][2]["seconds"] >= 2 and sleeper["dominant_phase"] == "code"
    # 0.5 vCPU / 256 MiB (the catalog's) runs on Fargate as 0.5 vCPU / 1 GB; the container's run, billed per
    # second with a one-minute minimum, at us-east-1's x86_64 on-demand rates of src/airlaunch/prices.yaml.
    billed = max(60, math.ceil((uploaded - runtime_started).total_seconds()))
    cost = sleeper["cost"]
    assert (cost["cpu_units"], cost["memory_mib"], cost["billed_seconds"]) == (512, 1024, billed)
    assert cost["fargate"] == float((Decimal("0.5") * Decimal("0.04048") + Decimal("0.004445")) * billed / 3600)
    assert document["estimate"]["on_aws"] is False and document["estimate"]["total_cost"] == cost["total"]
    assert chart.read_text().count('class="phase-code"') == 1

    main(["report", DAG, identity["run_id"], "--bucket", handle.bucket, "--region", "us-east-1"])
    assert "this run would cost about $0.000" in capsys.readouterr().out
