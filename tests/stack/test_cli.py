"""The results CLI against the running local stack: real task runs, and hand-made layouts for the edge cases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airlaunch.cli import main
from airlaunch.protocol import ResultLayout, RunIdentity, Status, StopReason, TaskState
from tests.conftest import LauncherClient

DAG = "cli_tests"
AIRLAUNCH = Path(sys.executable).parent / "airlaunch"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = cli(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


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

    listed = cli_json(capsys, "tasks", DAG, run)
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

    code, out, _ = cli(capsys, "tasks", DAG, run)
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["TASK", "MAP", "TRY", "STATE", "EXIT", "DURATION", "RESULTS"]
    assert rows[1][:5] == ["flaky", "-", "1", "failed", "7"] and rows[1][6] == "params,log"
    assert rows[3][:5] == ["say_name", "-", "1", "succeeded", "0"] and rows[3][6] == "params,result,log"

    summary = [r for r in cli_json(capsys, "runs", "--dag", DAG) if r["run_id"] == run]
    assert len(summary) == 1
    assert {k: summary[0][k] for k in ("tries", "succeeded", "failed", "running", "other")} == {
        "tries": 3,
        "succeeded": 2,
        "failed": 1,
        "running": 0,
        "other": 0,
    }

    latest = cli_json(capsys, "show", DAG, run, "flaky")  # the latest try unless --try
    assert latest["try_number"] == 2 and latest["state"] == "succeeded"
    assert latest["result"]["echo"] == "second" and latest["status"]["reason"] == "exit"

    code, out, _ = cli(capsys, "show", DAG, run, "flaky", "--try", "1")
    assert code == 0
    assert "state:       failed" in out and "exit code:   7 (exit)" in out
    assert "error:       exit code 7: exiting with code 7" in out
    assert "log tail:\n" in out and "  exiting with code 7\n" in out and "result.json" not in out

    code, out, _ = cli(capsys, "show", DAG, run, "say_name")
    assert code == 0 and "log tail" not in out
    assert json.loads(out.split("result.json:\n", 1)[1]) == {"message": "my name is say_name", "map_index": -1}

    # The failed first try of "flaky" was retried: the run counts as succeeded.
    code, out, _ = cli(capsys, "wait", DAG, run, "--interval", "0.2")
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

    code, out, err = cli(capsys, "wait", DAG, run, "--interval", "0.2", "--timeout", "60")

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
        code, out, err = cli(capsys, "wait", DAG, identity["run_id"], "--interval", "0.2", "--timeout", "1.5")
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

    code, out, err = cli(capsys, "log", DAG, run, "sleeper", "--follow", "--interval", "0.2")

    assert code == 0
    assert err == "airlaunch: sleeper try 1 ended: succeeded (exit code 0)\n"
    assert out == launcher.read(handle.layout, "log.txt").decode()
    assert [line for line in out.splitlines() if line.startswith("sleeping")] == [
        f"sleeping: {i} of 4 s" for i in range(4)
    ]
    assert Status.from_json(launcher.read(handle.layout, "status.json")).state == "succeeded"

    code, again, _ = cli(capsys, "log", DAG, run, "sleeper")
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
    code, out, _ = cli(capsys, "notebook", DAG, run, "report", "-o", str(target))
    assert code == 0
    assert out == f"saved {handle.layout.uri('output.ipynb')} to {target} ({target.stat().st_size} bytes)\n"
    notebook = json.loads(target.read_text())
    injected = [c for c in notebook["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and 'name = "cli"' in "".join(injected[0]["source"])
    assert target.read_bytes() == launcher.read(handle.layout, "output.ipynb")

    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "notebook", DAG, run, "report")[0] == 0
    assert (tmp_path / "report.ipynb").read_bytes() == target.read_bytes()
    code, out, _ = cli(capsys, "notebook", DAG, run, "report", "-o", "-")
    assert code == 0 and json.loads(out) == notebook


# -- hand-made layouts -------------------------------------------------------------------------


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    """A bucket of its own, so listings hold exactly what the test put there."""
    name = f"cli-test-{time.time_ns()}"
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)


def status_json(identity: RunIdentity, state: TaskState, exit_code: int, seconds: float = 65.5) -> str:
    ended = f"2025-01-01T00:{int(seconds // 60):02d}:{seconds % 60:06.3f}+00:00"
    return Status(
        state=state,
        exit_code=exit_code,
        reason=StopReason.EXIT,
        started_at="2025-01-01T00:00:00.000+00:00",
        ended_at=ended,
        execution_id=identity.execution_id,
        error=None if exit_code == 0 else f"exit code {exit_code}: boom",
        log_tail=["boom"],
        result_keys={"params": "p", "log": "l"},
    ).to_json()


def put_try(
    s3: Any,
    bucket: str,
    root: str,
    task: str,
    map_index: int = -1,
    try_number: int = 1,
    *,
    files: dict[str, str] | None = None,
) -> None:
    identity = RunIdentity("d", "r1", task, map_index, try_number)
    layout = ResultLayout.for_identity(bucket, root, identity)
    for name, body in {"params.yaml": "params: {}\n", **(files or {})}.items():
        s3.put_object(Bucket=bucket, Key=layout.key(name), Body=body.encode())


@pytest.fixture
def layout_bucket(s3: Any, bucket: str) -> str:
    """Run d/r1: a finished try, a running one, one with a broken status.json, a mapped task, and litter."""
    ok, failed = TaskState.SUCCEEDED, TaskState.FAILED
    put_try(s3, bucket, "runs", "a", files={"status.json": status_json(RunIdentity("d", "r1", "a"), ok, 0)})
    put_try(s3, bucket, "runs", "b")
    put_try(s3, bucket, "runs", "c", files={"status.json": "{not json"})
    for index in (0, 1, 2):
        put_try(s3, bucket, "runs", "m", index, files={"status.json": status_json(RunIdentity("d", "r1", "m"), ok, 0)})
    put_try(
        s3, bucket, "runs", "m", 1, 2, files={"status.json": status_json(RunIdentity("d", "r1", "m"), failed, 5, 2)}
    )
    for litter in ("runs/d/r1/README.txt", "runs/d/r1/a/-1/1/extra/deep.txt", "runs/d/r1/z/x/1/params.yaml"):
        s3.put_object(Bucket=bucket, Key=litter, Body=b"?")
    s3.put_object(Bucket=bucket, Key="runs/d/r1/y/-1/1/notes.txt", Body=b"no params, no status: not a try")
    return bucket


def test_tasks_and_runs_read_every_state_and_ignore_litter(
    layout_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tries = cli_json(capsys, "tasks", "d", "r1", "--bucket", layout_bucket)["tries"]
    assert [(t["task_id"], t["map_index"], t["try_number"], t["state"]) for t in tries] == [
        ("a", -1, 1, "succeeded"),
        ("b", -1, 1, "running"),
        ("c", -1, 1, "invalid"),
        ("m", 0, 1, "succeeded"),
        ("m", 1, 1, "succeeded"),
        ("m", 1, 2, "failed"),
        ("m", 2, 1, "succeeded"),
    ]
    assert tries[0]["duration_seconds"] == 65.5 and tries[5]["duration_seconds"] == 2.0
    assert tries[1]["exit_code"] is None and tries[1]["result_keys"] == {"params": "runs/d/r1/b/-1/1/params.yaml"}
    assert tries[2]["error"].startswith("unreadable status.json: ")

    code, out, _ = cli(capsys, "--bucket", layout_bucket, "tasks", "d", "r1")
    assert code == 0
    rows = {(r[0], r[1], r[2]): r for r in (line.split() for line in out.splitlines()[1:])}
    assert rows[("a", "-", "1")][3:6] == ["succeeded", "0", "1m05s"]
    assert rows[("b", "-", "1")][3:5] == ["running", "-"] and rows[("b", "-", "1")][5].endswith("+")
    assert rows[("m", "1", "2")][3:6] == ["failed", "5", "2.0s"]

    assert cli_json(capsys, "runs", "--bucket", layout_bucket) == [
        {
            "dag_id": "d",
            "run_id": "r1",
            "tries": 7,
            "succeeded": 4,
            "failed": 1,
            "running": 1,
            "other": 1,
            "updated": cli_json(capsys, "runs", "--bucket", layout_bucket, "--dag", "d")[0]["updated"],
        }
    ]
    code, out, _ = cli(capsys, "runs", "--bucket", layout_bucket)
    assert out.splitlines()[1].split()[:6] == ["d", "r1", "7", "4", "1", "1"]


def test_try_selection_errors_say_what_there_is(layout_bucket: str, capsys: pytest.CaptureFixture[str]) -> None:
    b = ("--bucket", layout_bucket)
    assert cli(capsys, "show", "d", "r1", "m", *b) == (
        2,
        "",
        "airlaunch: error: task 'm' has no map index -1; choose one with --map-index: 0, 1, 2\n",
    )
    shown = cli_json(capsys, "show", "d", "r1", "m", "--map-index", "1", *b)
    assert (shown["try_number"], shown["state"], shown["exit_code"], shown["result"]) == (2, "failed", 5, None)
    assert cli(capsys, "show", "d", "r1", "m", "--map-index", "1", "--try", "5", *b)[2] == (
        "airlaunch: error: task 'm' has no try 5; its tries: 1, 2\n"
    )
    assert cli(capsys, "show", "d", "r1", "x", *b)[2] == (
        "airlaunch: error: run d/r1 has no task 'x'; its tasks: a, b, c, m\n"
    )
    assert cli(capsys, "log", "d", "r1", "b", *b) == (
        2,
        "",
        f"airlaunch: error: b try 1 has no log at s3://{layout_bucket}/runs/d/r1/b/-1/1/log.txt; "
        "it has not logged yet (use --follow)\n",
    )
    assert cli(capsys, "notebook", "d", "r1", "a", *b) == (
        2,
        "",
        "airlaunch: error: a try 1 has no output.ipynb (it is not a notebook task, or it failed before)\n",
    )
    code, out, err = cli(capsys, "show", "d", "r1", "b", *b)
    assert code == 0 and "state:       running" in out and "running for:" in out and "result.json" not in out
    code, out, err = cli(capsys, "wait", "d", "r1", "--timeout", "0.3", "--interval", "0.1", *b)
    assert code == 124 and err == "airlaunch: error: timed out after 0.3 s; still running: b try 1\n"
    assert out.splitlines()[0].startswith("d/r1: 5/6 tasks finished (3 succeeded, 1 failed, 1 running, 1 other) [")


def test_prefix_from_flag_or_environment(
    s3: Any, bucket: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = RunIdentity("d", "r1", "a")
    put_try(s3, bucket, "team/x", "a", files={"status.json": status_json(identity, TaskState.SUCCEEDED, 0)})
    assert cli_json(capsys, "runs", "--bucket", bucket) == []
    assert cli(capsys, "runs", "--bucket", bucket) == (0, f"no runs under s3://{bucket}/runs/\n", "")
    assert [r["run_id"] for r in cli_json(capsys, "runs", "--bucket", bucket, "--prefix", "/team/x/")] == ["r1"]
    monkeypatch.setenv("AIRLAUNCH_KEY_PREFIX", "team/x")
    monkeypatch.setenv("AIRLAUNCH_BUCKET", bucket)
    assert cli_json(capsys, "show", "d", "r1", "a")["uri"] == f"s3://{bucket}/team/x/d/r1/a/-1/1/"
    assert (
        cli(capsys, "runs", "--dag", "nope")[2]
        == f"airlaunch: error: no runs of DAG 'nope' under s3://{bucket}/team/x/nope/\n"
    )


def test_expected_errors_name_the_problem(
    s3: Any, bucket: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert cli(capsys, "tasks", "d", "nothing", "--bucket", bucket) == (
        2,
        "",
        f"airlaunch: error: no such run: nothing under s3://{bucket}/runs/d/nothing/ "
        "(list runs with `airlaunch runs --dag d`)\n",
    )
    code, _, err = cli(capsys, "show", "a/b", "r", "t", "--bucket", bucket)
    assert code == 2 and err == "airlaunch: error: dag_id: 'a/b' must not contain '/' or '..'\n"
    code, _, err = cli(capsys, "runs", "--bucket", "airlaunch-no-such-bucket")
    assert (code, err) == (
        1,
        "airlaunch: error: bucket 'airlaunch-no-such-bucket' does not exist (set --bucket or AIRLAUNCH_BUCKET)\n",
    )
    code, _, err = cli(capsys, "runs", "--bucket", bucket, "--endpoint-url", "http://127.0.0.1:1")
    assert code == 1 and err.startswith("airlaunch: error: cannot reach S3: ") and "--endpoint-url" in err
    status = json.loads(status_json(RunIdentity("d", "r1", "bad"), TaskState.SUCCEEDED, 0))
    status["result_keys"]["result"] = "runs/d/r1/bad/-1/1/result.json"
    put_try(s3, bucket, "runs", "bad", files={"status.json": json.dumps(status), "result.json": "{oops"})
    code, _, err = cli(capsys, "show", "d", "r1", "bad", "--bucket", bucket)
    assert code == 1 and err.startswith(f"airlaunch: error: s3://{bucket}/runs/d/r1/bad/-1/1/result.json is not JSON: ")
    with pytest.raises(SystemExit) as bad_interval:
        main(["wait", "d", "r1", "--interval", "0"])
    assert bad_interval.value.code == 2 and "'0' is not a positive number of seconds" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["show", "d"])
    assert usage.value.code == 2 and "the following arguments are required: RUN, TASK" in capsys.readouterr().err

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, out, err = cli(capsys, "runs", "--bucket", bucket)
    assert (code, out) == (1, "")
    assert err.startswith("airlaunch: error: no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID")
