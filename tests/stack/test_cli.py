"""The results CLI against the running local stack on real task runs (tests/unit/test_cli.py covers the edge
cases on hand-made layouts in moto's S3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from airlaunch.protocol import Status
from tests.conftest import LauncherClient
from tests.unit.conftest import run_cli, run_cli_json

pytestmark = pytest.mark.stack

DAG = "cli_tests"
AIRLAUNCH = Path(sys.executable).parent / "airlaunch"


def in_dag(identity: dict[str, Any], task_id: str, try_number: int = 1) -> dict[str, Any]:
    return {**identity, "dag_id": DAG, "task_id": task_id, "try_number": try_number}


# -- real runs ---------------------------------------------------------------------------------


def test_runs_tasks_show_and_wait_report_real_tries(
    launcher: LauncherClient, identity: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    run = identity["run_id"]
    named = launcher.launch("task_one", in_dag(identity, "say_name"))
    flaky = launcher.launch("diagnostic", in_dag(identity, "flaky"), {"action": "exit", "code": 7})
    assert launcher.wait_status(flaky).exit_code == 7
    retry = launcher.launch("diagnostic", in_dag(identity, "flaky", 2), {"action": "echo", "message": "second"})
    launcher.wait_status(named)
    launcher.wait_status(retry)

    listed = run_cli_json(capsys, "tasks", DAG, run)
    assert listed["dag_id"] == DAG and listed["run_id"] == run
    tries = listed["tries"]
    assert [(t["task_id"], t["try_number"], t["state"], t["exit_code"]) for t in tries] == [
        ("flaky", 1, "failed", 7),
        ("flaky", 2, "succeeded", 0),
        ("say_name", 1, "succeeded", 0),
    ]
    assert tries[0]["error"] == "exit code 7: exiting with code 7" and "result" not in tries[0]["result_keys"]
    assert tries[2]["result_keys"] == {
        "params": named.layout.params_key,
        "result": named.layout.result_key,
        "log": named.layout.log_key,
    }
    assert tries[2]["uri"] == named.layout.uri() and tries[2]["map_index"] == -1
    assert all(0 < t["duration_seconds"] < 60 for t in tries)

    code, out, _ = run_cli(capsys, "tasks", DAG, run)
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["TASK", "MAP", "TRY", "STATE", "EXIT", "DURATION", "RESULTS"]
    assert rows[1][:5] == ["flaky", "-", "1", "failed", "7"] and rows[1][6] == "params,log"
    assert rows[3][:5] == ["say_name", "-", "1", "succeeded", "0"] and rows[3][6] == "params,result,log"

    summary = [r for r in run_cli_json(capsys, "runs", "--dag", DAG) if r["run_id"] == run]
    assert len(summary) == 1
    assert {k: summary[0][k] for k in ("tries", "succeeded", "failed", "running", "other")} == {
        "tries": 3,
        "succeeded": 2,
        "failed": 1,
        "running": 0,
        "other": 0,
    }

    latest = run_cli_json(capsys, "show", DAG, run, "flaky")  # the latest try unless --try
    assert latest["try_number"] == 2 and latest["state"] == "succeeded"
    assert latest["result"]["echo"] == "second" and latest["status"]["reason"] == "exit"

    code, out, _ = run_cli(capsys, "show", DAG, run, "flaky", "--try", "1")
    assert code == 0
    assert "state:       failed" in out and "exit code:   7 (exit)" in out
    assert "error:       exit code 7: exiting with code 7" in out
    assert "log tail:\n" in out and "  exiting with code 7\n" in out and "result.json" not in out

    code, out, _ = run_cli(capsys, "show", DAG, run, "say_name")
    assert code == 0 and "log tail" not in out
    assert json.loads(out.split("result.json:\n", 1)[1]) == {"message": "my name is say_name", "map_index": -1}

    # The failed first try of "flaky" was retried: the run counts as succeeded.
    code, out, _ = run_cli(capsys, "wait", DAG, run, "--interval", "0.2")
    assert code == 0
    assert out.startswith(f"{DAG}/{run}: 2/2 tasks finished (2 succeeded) [") and out.count("\n") == 1

    # Once through the installed console script, flags after the command and before it.
    env = {**os.environ, "AIRLAUNCH_BUCKET": "not-this-one"}
    done = subprocess.run(
        [str(AIRLAUNCH), "--bucket", named.bucket, "show", DAG, run, "say_name", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"]["message"] == "my name is say_name"
    no_bucket = subprocess.run([str(AIRLAUNCH), "tasks", DAG, run], capture_output=True, text=True, env=env, timeout=60)
    assert no_bucket.returncode == 1 and no_bucket.stdout == ""
    assert (
        no_bucket.stderr
        == "airlaunch: error: bucket 'not-this-one' does not exist (set --bucket or AIRLAUNCH_BUCKET)\n"
    )


def test_wait_watches_a_live_run_and_fails_when_a_task_fails(
    launcher: LauncherClient, identity: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    run = identity["run_id"]
    launcher.launch("diagnostic", in_dag(identity, "sleeper"), {"action": "sleep", "seconds": 3})
    launcher.launch("diagnostic", in_dag(identity, "breaker"), {"action": "exit", "code": 3})

    code, out, err = run_cli(capsys, "wait", DAG, run, "--interval", "0.2", "--timeout", "60")

    assert code == 1, err
    lines = out.splitlines()
    assert "\r" not in out  # not a terminal: one plain line per change
    assert "running" in lines[0]
    assert lines[-2].startswith(f"{DAG}/{run}: 2/2 tasks finished (1 succeeded, 1 failed) [")
    assert lines[-1] == "failed: breaker try 1: exit code 3: exiting with code 3"
    assert len(lines) == len(set(lines))


def test_wait_times_out_with_a_progress_line_on_a_terminal(
    launcher: LauncherClient,
    identity: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    identity["run_id"] = f"tty_{time.time_ns()}"  # short enough for the line on an 80-column terminal
    handle = launcher.launch("diagnostic", in_dag(identity, "slow"), {"action": "sleep", "seconds": 60})
    try:
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
        started = time.monotonic()
        code, out, err = run_cli(capsys, "wait", DAG, identity["run_id"], "--interval", "0.2", "--timeout", "1.5")
        assert 1.5 <= time.monotonic() - started < 10
    finally:
        launcher.invoke({"action": "stop", "handle": handle.to_dict(), "reason": "test"})
    assert code == 124
    assert err == "airlaunch: error: timed out after 1.5 s; still running: slow try 1\n"
    # rich's progress bar: the cursor hidden, the line redrawn in place, the cursor shown again at the end.
    assert out.startswith("\x1b[?25l") and out.endswith("\n\x1b[?25h") and out.count("\r\x1b[2K") >= 3
    assert f"{DAG}/{identity['run_id']}: 0/1 tasks finished (1 running)" in out and "0/1" in out


def test_log_follow_prints_the_live_log_until_the_task_ends(
    launcher: LauncherClient, identity: dict[str, Any], s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    run = identity["run_id"]
    handle = launcher.launch("diagnostic", in_dag(identity, "sleeper"), {"action": "sleep", "seconds": 4})
    with pytest.raises(s3.exceptions.ClientError):  # not finished yet: the follow has to poll
        s3.head_object(Bucket=handle.bucket, Key=handle.layout.status_key)

    code, out, err = run_cli(capsys, "log", DAG, run, "sleeper", "--follow", "--interval", "0.2")

    assert code == 0
    assert err == "airlaunch: sleeper try 1 ended: succeeded (exit code 0)\n"
    assert out == launcher.read(handle.layout, "log.txt").decode()
    assert [line for line in out.splitlines() if line.startswith("sleeping")] == [
        f"sleeping: {i} of 4 s" for i in range(4)
    ]
    assert Status.from_json(launcher.read(handle.layout, "status.json")).state == "succeeded"

    code, again, _ = run_cli(capsys, "log", DAG, run, "sleeper")
    assert code == 0 and again == out


def test_notebook_is_downloaded(
    launcher: LauncherClient,
    identity: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = identity["run_id"]
    handle = launcher.launch("report_notebook", in_dag(identity, "report"), {"name": "cli", "values": [1, 2]})
    assert launcher.wait_status(handle, timeout=180).state == "succeeded"

    target = tmp_path / "out" / "nb.ipynb"
    target.parent.mkdir()
    code, out, _ = run_cli(capsys, "notebook", DAG, run, "report", "-o", str(target))
    assert code == 0
    assert out == f"saved {handle.layout.uri('output.ipynb')} to {target} ({target.stat().st_size} bytes)\n"
    notebook = json.loads(target.read_text())
    injected = [c for c in notebook["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and 'name = "cli"' in "".join(injected[0]["source"])
    assert target.read_bytes() == launcher.read(handle.layout, "output.ipynb")

    monkeypatch.chdir(tmp_path)
    assert run_cli(capsys, "notebook", DAG, run, "report")[0] == 0
    assert (tmp_path / "report.ipynb").read_bytes() == target.read_bytes()
    code, out, _ = run_cli(capsys, "notebook", DAG, run, "report", "-o", "-")
    assert code == 0 and json.loads(out) == notebook
