"""The results CLI against moto's S3: every command, flag, JSON document and exit code on hand-made layouts.

tests/stack/test_cli.py runs the same commands on real task runs against LocalStack.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from airlaunch import cli
from airlaunch.protocol import RunIdentity, TaskState
from tests.unit.conftest import put_try, run_cli, run_cli_json, status_json

main = cli.main


@pytest.fixture
def layout_bucket(moto_s3: Any, bucket: str) -> str:
    """Run d/r1: a finished try, a running one, one with a broken status.json, a mapped task, and litter."""
    ok, failed = TaskState.SUCCEEDED, TaskState.FAILED
    put_try(moto_s3, bucket, "runs", "a", files={"status.json": status_json(RunIdentity("d", "r1", "a"), ok, 0)})
    put_try(moto_s3, bucket, "runs", "b")
    put_try(moto_s3, bucket, "runs", "c", files={"status.json": "{not json"})
    for index in (0, 1, 2):
        status = status_json(RunIdentity("d", "r1", "m"), ok, 0)
        put_try(moto_s3, bucket, "runs", "m", index, files={"status.json": status})
    status = status_json(RunIdentity("d", "r1", "m"), failed, 5, 2)
    put_try(moto_s3, bucket, "runs", "m", 1, 2, files={"status.json": status})
    for litter in ("runs/d/r1/README.txt", "runs/d/r1/a/-1/1/extra/deep.txt", "runs/d/r1/z/x/1/params.yaml"):
        moto_s3.put_object(Bucket=bucket, Key=litter, Body=b"?")
    moto_s3.put_object(Bucket=bucket, Key="runs/d/r1/y/-1/1/notes.txt", Body=b"no params, no status: not a try")
    return bucket


def test_tasks_and_runs_read_every_state_and_ignore_litter(
    layout_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tries = run_cli_json(capsys, "tasks", "d", "r1", "--bucket", layout_bucket)["tries"]
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

    code, out, _ = run_cli(capsys, "--bucket", layout_bucket, "tasks", "d", "r1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "TASK  MAP  TRY  STATE      EXIT  DURATION  RESULTS"  # rich, but plain in a pipe
    assert all(line == line.rstrip() for line in lines) and "\x1b" not in out
    rows = {(r[0], r[1], r[2]): r for r in (line.split() for line in lines[1:])}
    assert rows[("a", "-", "1")][3:6] == ["succeeded", "0", "1m05s"]
    assert rows[("b", "-", "1")][3:5] == ["running", "-"] and rows[("b", "-", "1")][5].endswith("+")
    assert rows[("m", "1", "2")][3:6] == ["failed", "5", "2.0s"]

    summary = run_cli_json(capsys, "runs", "--bucket", layout_bucket)
    updated = run_cli_json(capsys, "runs", "--bucket", layout_bucket, "--dag", "d")[0]["updated"]
    assert summary == [
        {
            "dag_id": "d",
            "run_id": "r1",
            "tries": 7,
            "succeeded": 4,
            "failed": 1,
            "running": 1,
            "other": 1,
            "updated": updated,
        }
    ]
    code, out, _ = run_cli(capsys, "runs", "--bucket", layout_bucket)
    assert out.splitlines()[0].split() == ["DAG", "RUN", "TRIES", "SUCCEEDED", "FAILED", "RUNNING", "UPDATED"]
    assert out.splitlines()[1].split()[:6] == ["d", "r1", "7", "4", "1", "1"]


def test_try_selection_errors_say_what_there_is(layout_bucket: str, capsys: pytest.CaptureFixture[str]) -> None:
    b = ("--bucket", layout_bucket)
    assert run_cli(capsys, "show", "d", "r1", "m", *b) == (
        2,
        "",
        "airlaunch: error: task 'm' has no map index -1; choose one with --map-index: 0, 1, 2\n",
    )
    shown = run_cli_json(capsys, "show", "d", "r1", "m", "--map-index", "1", *b)
    assert (shown["try_number"], shown["state"], shown["exit_code"], shown["result"]) == (2, "failed", 5, None)
    assert run_cli(capsys, "show", "d", "r1", "m", "--map-index", "1", "--try", "5", *b)[2] == (
        "airlaunch: error: task 'm' has no try 5; its tries: 1, 2\n"
    )
    assert run_cli(capsys, "show", "d", "r1", "x", *b)[2] == (
        "airlaunch: error: run d/r1 has no task 'x'; its tasks: a, b, c, m\n"
    )
    assert run_cli(capsys, "log", "d", "r1", "b", *b) == (
        2,
        "",
        f"airlaunch: error: b try 1 has no log at s3://{layout_bucket}/runs/d/r1/b/-1/1/log.txt; "
        "it has not logged yet (use --follow)\n",
    )
    assert run_cli(capsys, "notebook", "d", "r1", "a", *b) == (
        2,
        "",
        "airlaunch: error: a try 1 has no output.ipynb (it is not a notebook task, or it failed before)\n",
    )
    code, out, _ = run_cli(capsys, "show", "d", "r1", "b", *b)
    assert code == 0 and "state:       running" in out and "running for:" in out and "result.json" not in out
    code, out, err = run_cli(capsys, "wait", "d", "r1", "--timeout", "0.3", "--interval", "0.1", *b)
    assert code == 124 and err == "airlaunch: error: timed out after 0.3 s; still running: b try 1\n"
    assert out.splitlines()[0].startswith("d/r1: 5/6 tasks finished (3 succeeded, 1 failed, 1 running, 1 other) [")


def test_show_log_and_notebook_of_a_finished_try(
    moto_s3: Any, bucket: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = RunIdentity("d", "r1", "nb")
    keys = {"params": "runs/d/r1/nb/-1/1/params.yaml", "result": "runs/d/r1/nb/-1/1/result.json"}
    status = status_json(identity, TaskState.FAILED, 3, result_keys=keys)
    notebook = {"cells": [], "nbformat": 4}
    files = {"status.json": status, "result.json": '{"rows": 42}', "log.txt": "one\ntwo\n"}
    put_try(moto_s3, bucket, "runs", "nb", files={**files, "output.ipynb": json.dumps(notebook)})
    b = ("--bucket", bucket)

    code, out, _ = run_cli(capsys, "show", "d", "r1", "nb", *b)
    assert code == 0 and "exit code:   3 (exit)" in out and "error:       exit code 3: boom" in out
    assert "log tail:\n  boom\n" in out and json.loads(out.split("result.json:\n", 1)[1]) == {"rows": 42}
    shown = run_cli_json(capsys, "show", "d", "r1", "nb", *b)
    assert shown["result"] == {"rows": 42} and shown["status"]["exit_code"] == 3

    assert run_cli(capsys, "log", "d", "r1", "nb", *b) == (0, "one\ntwo\n", "")
    assert run_cli(capsys, "log", "d", "r1", "nb", "--follow", "--interval", "0.1", *b) == (
        0,
        "one\ntwo\n",
        "airlaunch: nb try 1 ended: failed (exit code 3)\n",
    )
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "notebook", "d", "r1", "nb", *b)
    assert code == 0 and json.loads((tmp_path / "nb.ipynb").read_text()) == notebook
    assert (
        out == f"saved s3://{bucket}/runs/d/r1/nb/-1/1/output.ipynb to nb.ipynb ({len(json.dumps(notebook))} bytes)\n"
    )
    assert json.loads(run_cli(capsys, "notebook", "d", "r1", "nb", "-o", "-", *b)[1]) == notebook


def test_wait_prints_a_line_per_change_in_a_pipe_and_fails_with_a_failed_task(
    layout_bucket: str, moto_s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    put_try(
        moto_s3,
        layout_bucket,
        "runs",
        "b",
        files={"status.json": status_json(RunIdentity("d", "r1", "b"), TaskState.SUCCEEDED, 0)},
    )
    code, out, err = run_cli(capsys, "wait", "d", "r1", "--interval", "0.1", "--bucket", layout_bucket)
    assert code == 1 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("d/r1: 6/6 tasks finished (4 succeeded, 1 failed, 1 other) [") and "\r" not in out
    assert lines[1:] == [
        "failed: c try 1: unreadable status.json: " + lines[1].split(": ", 3)[3],
        "failed: m[1] try 2: exit code 5: boom",
    ]
    code, out, err = run_cli(capsys, "wait", "d", "r1", "--bucket", layout_bucket, "--json")
    document = json.loads(out)  # the progress moves to stderr
    assert code == 1 and document["finished"] is True and len(document["tries"]) == 6
    assert err.startswith("d/r1: 6/6 tasks finished (")


def test_wait_on_a_terminal_draws_a_rich_progress_bar(
    layout_bucket: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, err = run_cli(
        capsys, "wait", "d", "r1", "--interval", "0.1", "--timeout", "0.5", "--bucket", layout_bucket
    )
    assert code == 124
    assert err == "airlaunch: error: timed out after 0.5 s; still running: b try 1\n"
    assert "d/r1: 5/6 tasks finished (3 succeeded, 1 failed, 1 running, 1 other)" in out
    bar, shown, after = out.partition("\x1b[?25h")  # rich hides the cursor while it draws, then shows it
    assert bar.startswith("\x1b[?25l") and shown and bar.count("\r\x1b[2K") >= 3  # redrawn in place
    assert "━" in bar and "5/6" in bar and "\n" not in bar.rstrip("\n")
    assert after.endswith("failed: m[1] try 2: exit code 5: boom\n")


def test_prefix_from_flag_or_environment(
    moto_s3: Any, bucket: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = RunIdentity("d", "r1", "a")
    put_try(moto_s3, bucket, "team/x", "a", files={"status.json": status_json(identity, TaskState.SUCCEEDED, 0)})
    assert run_cli_json(capsys, "runs", "--bucket", bucket) == []
    assert run_cli(capsys, "runs", "--bucket", bucket) == (0, f"no runs under s3://{bucket}/runs/\n", "")
    assert [r["run_id"] for r in run_cli_json(capsys, "runs", "--bucket", bucket, "--prefix", "/team/x/")] == ["r1"]
    monkeypatch.setenv("AIRLAUNCH_KEY_PREFIX", "team/x")
    monkeypatch.setenv("AIRLAUNCH_BUCKET", bucket)
    assert run_cli_json(capsys, "show", "d", "r1", "a")["uri"] == f"s3://{bucket}/team/x/d/r1/a/-1/1/"
    assert (
        run_cli(capsys, "runs", "--dag", "nope")[2]
        == f"airlaunch: error: no runs of DAG 'nope' under s3://{bucket}/team/x/nope/\n"
    )


def test_expected_errors_name_the_problem(
    moto_s3: Any, bucket: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run_cli(capsys, "tasks", "d", "nothing", "--bucket", bucket) == (
        2,
        "",
        f"airlaunch: error: no such run: nothing under s3://{bucket}/runs/d/nothing/ "
        "(list runs with `airlaunch runs --dag d`)\n",
    )
    code, _, err = run_cli(capsys, "show", "a/b", "r", "t", "--bucket", bucket)
    assert code == 2 and err == "airlaunch: error: dag_id: 'a/b' must not contain '/' or '..'\n"
    code, _, err = run_cli(capsys, "runs", "--bucket", "airlaunch-no-such-bucket")
    assert (code, err) == (
        1,
        "airlaunch: error: bucket 'airlaunch-no-such-bucket' does not exist (set --bucket or AIRLAUNCH_BUCKET)\n",
    )
    status = json.loads(status_json(RunIdentity("d", "r1", "bad"), TaskState.SUCCEEDED, 0))
    status["result_keys"]["result"] = "runs/d/r1/bad/-1/1/result.json"
    put_try(moto_s3, bucket, "runs", "bad", files={"status.json": json.dumps(status), "result.json": "{oops"})
    code, _, err = run_cli(capsys, "show", "d", "r1", "bad", "--bucket", bucket)
    assert code == 1 and err.startswith(f"airlaunch: error: s3://{bucket}/runs/d/r1/bad/-1/1/result.json is not JSON: ")
    with pytest.raises(SystemExit) as bad_interval:
        main(["wait", "d", "r1", "--interval", "0"])
    assert bad_interval.value.code == 2 and "'0' is not a positive number of seconds" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["show", "d"])
    assert usage.value.code == 2 and "the following arguments are required: RUN, TASK" in capsys.readouterr().err
    code, _, err = run_cli(capsys, "report", "d", "r1", "--bucket", bucket, "--chart", str(tmp_path / "x.png"))
    assert (code, err) == (2, f"airlaunch: error: --chart {tmp_path / 'x.png'}: name an .html or .svg file\n")


def test_a_missing_rich_is_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "rich" or m.startswith(("rich.", "airlaunch.cli."))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rich", None)  # import rich -> ModuleNotFoundError
    assert run_cli(capsys, "runs") == (2, "", "airlaunch: error: the CLI needs rich: pip install 'airlaunch[cli]'\n")
