"""The results CLI's commands: each reads the store and writes to ``out``, returning an exit code."""

from __future__ import annotations

import argparse
import codecs
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from airlaunch.cli.render import WaitProgress, human_duration, json_out, table
from airlaunch.cli.store import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    CliError,
    ResultStore,
    parallel,
)
from airlaunch.cli.tries import RUNNING, TaskTry, latest_tries
from airlaunch.protocol import TaskState


def cmd_runs(store: ResultStore, args: argparse.Namespace, out: TextIO) -> int:
    if args.dag:
        pairs = [(args.dag, run) for run in store.run_ids(args.dag)]
        if not pairs:
            raise CliError(f"no runs of DAG {args.dag!r} under {store.uri(args.dag + '/')}")
    else:
        dags = store.dag_ids()
        pairs = [(dag, run) for dag, runs in zip(dags, parallel(store.run_ids, dags), strict=True) for run in runs]
    far_past = datetime.min.replace(tzinfo=UTC)
    summaries = sorted(
        (s for s in store.runs(pairs) if s.tries), key=lambda s: (s.dag_id, s.updated or far_past, s.run_id)
    )
    if args.json:
        json_out([s.to_dict() for s in summaries], out)
    elif not summaries:
        out.write(f"no runs under {store.uri()}\n")
    else:
        rows = []
        for s in summaries:
            d = s.to_dict()
            updated = s.updated.strftime("%Y-%m-%d %H:%M:%SZ") if s.updated else None
            rows.append([s.dag_id, s.run_id, d["tries"], d["succeeded"], d["failed"], d["running"], updated])
        table(["DAG", "RUN", "TRIES", "SUCCEEDED", "FAILED", "RUNNING", "UPDATED"], rows, out)
    return EXIT_OK


def cmd_tasks(store: ResultStore, args: argparse.Namespace, out: TextIO) -> int:
    tries = store.run_tries(args.dag_id, args.run_id)
    if args.json:
        json_out({"dag_id": args.dag_id, "run_id": args.run_id, "tries": [t.to_dict() for t in tries]}, out)
        return EXIT_OK
    rows = []
    for t in tries:
        code = t.status.exit_code if t.status else None
        map_index = t.identity.map_index if t.identity.map_index >= 0 else None
        results = ",".join(t.result_keys)
        state = f"{t.state} (cached)" if t.status and t.status.cached_from else t.state
        rows.append([t.identity.task_id, map_index, t.identity.try_number, state, code, _dur(t), results])
    table(["TASK", "MAP", "TRY", "STATE", "EXIT", "DURATION", "RESULTS"], rows, out)
    return EXIT_OK


def _dur(task_try: TaskTry) -> str:
    text = human_duration(task_try.duration_seconds)
    return text if task_try.finished or text == "-" else f"{text}+"


def _selected_try(store: ResultStore, args: argparse.Namespace) -> TaskTry:
    return store.find_try(args.dag_id, args.run_id, args.task_id, args.map_index, args.try_number)


def cmd_show(store: ResultStore, args: argparse.Namespace, out: TextIO) -> int:
    task_try = _selected_try(store, args)
    result = None
    if task_try.status and "result" in task_try.status.result_keys:
        body = store.read(task_try.layout.result_key)
        try:
            result = json.loads(body) if body else None
        except ValueError as exc:
            raise CliError(f"{task_try.layout.uri('result.json')} is not JSON: {exc}", EXIT_FAILED) from exc
    status = task_try.status
    if args.json:
        document = {"dag_id": args.dag_id, "run_id": args.run_id, **task_try.to_dict(), "result": result}
        json_out({**document, "status": status.to_dict() if status else None}, out)
        return EXIT_OK
    lines = [("task", f"{args.dag_id}/{args.run_id}/{task_try.label}"), ("state", task_try.state)]
    if status:
        lines += [("exit code", f"{status.exit_code} ({status.reason.value})"), ("started", status.started_at)]
        lines += [("ended", status.ended_at), ("duration", human_duration(task_try.duration_seconds))]
    else:
        lines += [("running for", human_duration(task_try.duration_seconds))]
    if status and status.cached_from:  # no container ran: the result is another try's, copied
        lines.append(("cached from", f"s3://{task_try.layout.bucket}/{status.cached_from}"))
    if (status and status.error) or task_try.problem:
        lines.append(("error", (status.error if status else None) or task_try.problem or ""))
    lines += [("location", task_try.layout.uri()), ("files", ", ".join(task_try.result_keys))]
    for name, value in lines:
        out.write(f"{name + ':':<13}{value}\n")
    if status and status.state is not TaskState.SUCCEEDED and status.log_tail:
        out.write("log tail:\n" + "".join(f"  {line}\n" for line in status.log_tail))
    if result is not None:
        out.write("result.json:\n" + json.dumps(result, indent=2) + "\n")
    return EXIT_OK


def _log_parts(store: ResultStore, task_try: TaskTry, first: int) -> tuple[bytes, int]:
    """The running log's parts from ``first`` on (the runtime uploads them while it runs); the number
    of the next part to read."""
    chunks = []
    while (chunk := store.read(task_try.layout.log_part_key(first))) is not None:
        chunks.append(chunk)
        first += 1
    return b"".join(chunks), first


def cmd_log(store: ResultStore, args: argparse.Namespace, out: TextIO) -> int:
    task_try = _selected_try(store, args)
    key = task_try.layout.log_key
    if not args.follow:
        body = store.read(key)
        if body is None and not store.refresh(task_try):
            body = _log_parts(store, task_try, 0)[0] or None  # still running: what it logged so far
        if body is None:
            hint = "; it has not logged yet (use --follow)" if not task_try.finished else ""
            raise CliError(f"{task_try.label} has no log at s3://{store.bucket}/{key}{hint}")
        out.write(body.decode("utf-8", errors="replace"))
        return EXIT_OK
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    deadline = time.monotonic() + args.timeout if args.timeout else None
    offset, part = 0, 0
    while True:
        done = store.refresh(task_try)
        if done:  # the whole log is in log.txt (uploaded before status.json): the rest from there
            chunk = store.read(key, offset) or b""
        else:
            chunk, part = _log_parts(store, task_try, part)
        offset += len(chunk)
        out.write(decoder.decode(chunk, final=done))
        out.flush()
        if done:
            sys.stderr.write(f"airlaunch: {task_try.label} ended: {_outcome(task_try)}\n")
            return EXIT_OK
        if deadline and time.monotonic() > deadline:
            raise CliError(f"{task_try.label} still running after {args.timeout:g} s", EXIT_TIMEOUT)
        time.sleep(args.interval)


def _outcome(task_try: TaskTry) -> str:
    if task_try.status is None:
        return task_try.state + (f" ({task_try.problem})" if task_try.problem else "")
    return f"{task_try.state} (exit code {task_try.status.exit_code})"


def cmd_notebook(store: ResultStore, args: argparse.Namespace, out: TextIO) -> int:
    task_try = _selected_try(store, args)
    body = store.read(task_try.layout.notebook_key)
    if body is None:
        why = "it is still running" if not task_try.finished else "it is not a notebook task, or it failed before"
        raise CliError(f"{task_try.label} has no output.ipynb ({why})")
    if args.output == "-":
        out.write(body.decode("utf-8"))
        return EXIT_OK
    mapped = f"-{task_try.identity.map_index}" if task_try.identity.map_index >= 0 else ""
    path = Path(args.output or f"{task_try.identity.task_id}{mapped}.ipynb")
    try:
        path.write_bytes(body)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}", EXIT_FAILED) from exc
    out.write(f"saved {task_try.layout.uri('output.ipynb')} to {path} ({len(body)} bytes)\n")
    return EXIT_OK


def cmd_wait(store: ResultStore, args: argparse.Namespace, out: TextIO) -> int:
    """Until the latest try of every task of the run has a status.json; 1 if any of them failed."""
    progress = WaitProgress(sys.stderr if args.json else out)
    started = time.monotonic()
    try:
        while True:
            tries = latest_tries(store.run_tries(args.dag_id, args.run_id))
            counts = {s: sum(1 for t in tries if t.state == s) for s in ("succeeded", "failed", RUNNING)}
            finished = sum(1 for t in tries if t.finished)
            states = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
            other = len(tries) - sum(counts.values())
            states += f", {other} other" if other else ""
            elapsed = time.monotonic() - started
            summary = f"{args.dag_id}/{args.run_id}: {finished}/{len(tries)} tasks finished ({states})"
            progress.show(summary, finished, len(tries), human_duration(elapsed))
            timed_out = args.timeout is not None and elapsed >= args.timeout
            if finished == len(tries) or timed_out:
                break
            time.sleep(args.interval)
    finally:
        progress.end()
    failed = [t for t in tries if t.finished and t.state != TaskState.SUCCEEDED]
    if args.json:
        json_out(
            {
                "dag_id": args.dag_id,
                "run_id": args.run_id,
                "finished": finished == len(tries),
                "tries": [t.to_dict() for t in tries],
            },
            out,
        )
    else:
        for t in failed:
            out.write(f"failed: {t.label}: {(t.status.error if t.status else t.problem) or t.state}\n")
    if finished < len(tries):
        running = ", ".join(t.label for t in tries if not t.finished)
        raise CliError(f"timed out after {args.timeout:g} s; still running: {running}", EXIT_TIMEOUT)
    return EXIT_FAILED if failed else EXIT_OK
