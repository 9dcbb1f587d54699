"""The try's outcome: its results published, then status.json, the try's last word, written once.

What it guarantees:

* status.json is written last and in every outcome: success, a non-zero exit, a timeout, a stop,
  a failure of the runtime itself, even one while publishing (then the log, which says what went
  wrong, is given one more try). It says how the try ended in words (``describe_failure``), with
  the last log lines, what the try used (``resources``) and where it ran.
* A result.json that is not JSON fails the try here, not the reader downstream.
* The task's secret values are masked in everything kept: result.json and the output notebook
  (every string in them), status.json's error; the log was masked as it was written.
"""

from __future__ import annotations

import collections
import contextlib
import json
import re
import socket
from collections.abc import Sequence
from pathlib import Path

from airlaunch.protocol import (
    INLINE_RESULT_BYTES,
    NOTEBOOK_FILE,
    RESULT_FILE,
    Status,
    StopReason,
    TaskState,
    mask,
    mask_json,
    utcnow,
)
from airlaunch.runtime import resources
from airlaunch.runtime.log_archive import LogArchive
from airlaunch.runtime.run_files import JSON, RunFiles
from airlaunch.runtime.supervise import EXIT_RUNTIME_ERROR, Exit

NOTEBOOK = "application/x-ipynb+json"


def publish(files: RunFiles, work: Path, log: LogArchive, secrets: Sequence[str]) -> dict[str, str]:
    """Upload the result, the notebook and log.txt (closing the log); the keys of everything the task left."""
    layout = files.layout
    keys = {"params": layout.params_key}
    result = work / RESULT_FILE
    if result.exists():
        json.loads(result.read_text())  # a malformed result fails the task, not the reader downstream
        _mask_file(result, secrets)
        files.persist("result.json", lambda: files.put_file(result, layout.result_key, JSON))
        keys["result"] = layout.result_key
    notebook = work / NOTEBOOK_FILE
    if notebook.exists():
        _mask_file(notebook, secrets)
        files.persist("output.ipynb", lambda: files.put_file(notebook, layout.notebook_key, NOTEBOOK))
        keys["notebook"] = layout.notebook_key
    log.close()
    files.persist("log.txt", lambda: files.put_log(log.path))
    keys["log"] = layout.log_key
    return keys


def _mask_file(path: Path, secrets: Sequence[str]) -> None:
    """A JSON file the task left (result.json, output.ipynb) with every string in it masked."""
    if secrets:
        masked = mask_json(json.loads(path.read_text()), secrets)
        path.write_text(json.dumps(masked, ensure_ascii=False, indent=1))


def report(
    files: RunFiles,
    work: Path,
    log: LogArchive,
    ended: Exit,
    *,
    error: str | None,
    started_at: str,
    clock: resources.PhaseClock,
    execution_id: str,
    secrets: Sequence[str],
) -> int:
    """Publish the results, then write status.json saying how the try ended; the exit code to leave with."""
    code, reason = ended.code, ended.reason
    keys: dict[str, str] = {"params": files.layout.params_key}
    try:
        keys = publish(files, work, log, secrets)
    except Exception as exc:
        code, reason = code or EXIT_RUNTIME_ERROR, StopReason.ERROR
        error = f"airlaunch runtime: publishing results failed: {exc}"
        log.write(f"{error}\n")
        log.close()
        with contextlib.suppress(Exception):  # the log says what went wrong: one more try to keep it
            files.put_log(log.path)
            keys["log"] = files.layout.log_key
    if code != 0 and error is None:
        error = describe_failure(code, reason, log.tail, ended.detail)
    if error is not None and secrets:
        error = mask(error, secrets)
    status = Status(
        state=TaskState.SUCCEEDED if code == 0 else TaskState.FAILED,
        exit_code=code,
        reason=reason,
        started_at=started_at,
        usage=resources.measure(clock),  # before ended_at: results_uploaded_at <= ended_at
        ended_at=utcnow(),
        execution_id=execution_id,
        error=error,
        log_tail=list(log.tail),
        result_keys=keys,
        host=where_am_i(),
        log_bytes=log_size(log),
        log_lines=log.lines,
        result_json=small_result(work) if "result" in keys else None,
    )
    body = status.to_json().encode()
    files.persist("status.json", lambda: files.put_status(body))
    print(f"airlaunch: {status.state.value} with exit code {code}, status at {files.layout.uri('status.json')}")
    return code


def small_result(work: Path) -> str | None:
    """result.json's text as uploaded (masked), if it is at most INLINE_RESULT_BYTES: status.json carries it, so
    that the trigger need not read result.json (one S3 GET a try fewer)."""
    try:
        body = (work / RESULT_FILE).read_bytes()
        return body.decode() if len(body) <= INLINE_RESULT_BYTES else None
    except (OSError, UnicodeDecodeError):
        return None


def log_size(log: LogArchive) -> int | None:
    """log.txt's size, as uploaded (status.json's ``log_bytes``: its reader need not read what it has shown)."""
    try:
        return log.path.stat().st_size
    except OSError:
        return None


def describe_failure(code: int, reason: StopReason, tail: collections.deque[str], detail: str = "") -> str:
    """How a try failed, in words: who stopped it and why, a timeout, the OOM killer, a signal, or its exit."""
    if reason is StopReason.STOPPED:
        return f"stopped by airlaunch: {detail or 'a stop was requested'} (SIGTERM)"
    if reason is StopReason.PLATFORM:
        return (
            "stopped by a SIGTERM that airlaunch did not send: the platform ended the container "
            "(Docker engine restart or docker stop, host shutdown, Spot interruption)"
        )
    if reason is StopReason.TIMEOUT:
        return "stopped: timeout reached"
    last = next((line for line in reversed(tail) if line.strip()), "")
    if reason in (StopReason.OOM, StopReason.KILLED) and detail:
        return f"{detail} (exit code {code})" + (f"; its last line: {last.strip()}" if last else "")
    return f"exit code {code}" + (f": {last.strip()}" if last else "")


def where_am_i() -> str:
    """The short Docker container id (found in our own mounts), else the hostname.

    With ``--network host`` a container has the host's hostname, but Docker still mounts its
    per-container /etc/hostname from /var/lib/docker/containers/<id>/.
    """
    try:
        match = re.search(r"/containers/([0-9a-f]{64})/", Path("/proc/self/mountinfo").read_text())
    except OSError:
        match = None
    return match.group(1)[:12] if match else socket.gethostname()
