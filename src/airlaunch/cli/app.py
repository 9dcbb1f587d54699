"""``airlaunch``: what task runs left in S3, for a terminal or a script.

The CLI reads S3 only, in the layout of :class:`airlaunch.protocol.ResultLayout`
(``<prefix>/<dag_id>/<run_id>/<task_id>/<map_index>/<try>/``); it never calls the launcher, so
it works the same against LocalStack and AWS with nothing but read access to the bucket.

A try is a folder holding params.yaml or status.json. Its state comes from status.json, which
the task runtime writes last; a try with params.yaml but no status.json is reported as
``running``: S3 alone cannot tell a running task from one whose container died silently.

Exit codes: 0 done; 1 an AWS problem (bucket missing, no credentials, endpoint down, access
denied) or, for ``wait``, a failed task; 2 a usage error or something that does not exist;
124 ``wait`` or ``log --follow`` ran out of time; 130 interrupted.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from airlaunch.config import CliSettings
from airlaunch.protocol import (
    LOG_FILE,
    NOTEBOOK_FILE,
    PARAMS_FILE,
    RESULT_FILE,
    STATUS_FILE,
    InvalidRequest,
    ResultLayout,
    RunIdentity,
    Status,
    TaskState,
    run_prefix,
    validate_id,
)

EXIT_OK = 0
EXIT_FAILED = 1  # an AWS problem, or a task that failed (wait)
EXIT_USAGE = 2  # a bad argument, or something asked for that does not exist
EXIT_TIMEOUT = 124  # as coreutils' timeout
EXIT_INTERRUPTED = 130

# The files a try leaves, by the names status.json's result_keys gives them (in the runtime's order).
_RESULT_FILES = {PARAMS_FILE: "params", RESULT_FILE: "result", NOTEBOOK_FILE: "notebook", LOG_FILE: "log"}

RUNNING = "running"  # params.yaml without status.json
INVALID = "invalid"  # a status.json that does not parse

_T = TypeVar("_T")
_R = TypeVar("_R")


class CliError(Exception):
    """An expected failure: printed as ``airlaunch: error: <message>``, never as a traceback."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


# -- reading the layout -----------------------------------------------------------------------


@dataclass
class TaskTry:
    """One task try found in S3: its files (name -> last modified) and, once finished, its status."""

    identity: RunIdentity
    layout: ResultLayout
    files: dict[str, datetime] = field(default_factory=dict)
    status: Status | None = None
    problem: str | None = None  # why status.json could not be read

    @property
    def state(self) -> str:
        if self.status:
            return self.status.state.value
        return INVALID if self.problem else RUNNING

    @property
    def finished(self) -> bool:
        return (self.status is not None and self.status.state.finished) or self.problem is not None

    @property
    def duration_seconds(self) -> float | None:
        if self.status:
            return _seconds_between(self.status.started_at, self.status.ended_at)
        if PARAMS_FILE in self.files:  # still running: time since the launch wrote params.yaml
            return max(0.0, (datetime.now(UTC) - self.files[PARAMS_FILE]).total_seconds())
        return None

    @property
    def result_keys(self) -> dict[str, str]:
        if self.status:
            return dict(self.status.result_keys)
        return {kind: self.layout.key(name) for name, kind in _RESULT_FILES.items() if name in self.files}

    @property
    def label(self) -> str:
        mapped = f"[{self.identity.map_index}]" if self.identity.map_index >= 0 else ""
        return f"{self.identity.task_id}{mapped} try {self.identity.try_number}"

    def to_dict(self) -> dict[str, Any]:
        status = self.status
        return {
            "task_id": self.identity.task_id,
            "map_index": self.identity.map_index,
            "try_number": self.identity.try_number,
            "state": self.state,
            "exit_code": status.exit_code if status else None,
            "reason": status.reason.value if status else None,
            "started_at": status.started_at if status else None,
            "ended_at": status.ended_at if status else None,
            "duration_seconds": _round(self.duration_seconds),
            "error": status.error if status else self.problem,
            "result_keys": self.result_keys,
            "uri": self.layout.uri(),
        }


@dataclass(frozen=True)
class RunSummary:
    dag_id: str
    run_id: str
    tries: list[TaskTry]

    def count(self, state: str) -> int:
        return sum(1 for t in self.tries if t.state == state)

    @property
    def updated(self) -> datetime | None:
        return max((m for t in self.tries for m in t.files.values()), default=None)

    def to_dict(self) -> dict[str, Any]:
        counts = {state: self.count(state) for state in (TaskState.SUCCEEDED.value, TaskState.FAILED.value, RUNNING)}
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "tries": len(self.tries),
            **counts,
            "other": len(self.tries) - sum(counts.values()),  # lost, or an unreadable status.json
            "updated": self.updated.isoformat() if self.updated else None,
        }


class ResultStore:
    """Walks the result layout in one bucket. Finished statuses are cached: status.json is written once."""

    def __init__(self, s3: Any, bucket: str, root: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.root = root.strip("/")
        self._statuses: dict[str, Status] = {}

    def uri(self, prefix: str = "") -> str:
        root = f"{self.root}/" if self.root else ""
        return f"s3://{self.bucket}/{root}{prefix}"

    def children(self, prefix: str) -> list[str]:
        """The names of the "folders" directly under ``prefix`` (ListObjectsV2 with a delimiter)."""
        names = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            names += [p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return names

    def dag_ids(self) -> list[str]:
        return self.children(f"{self.root}/" if self.root else "")

    def run_ids(self, dag_id: str) -> list[str]:
        validate_id(dag_id, "dag_id")
        return self.children(f"{self.root}/{dag_id}/" if self.root else f"{dag_id}/")

    def tries(self, dag_id: str, run_id: str) -> list[TaskTry]:
        return self.runs([(dag_id, run_id)])[0].tries

    def runs(self, pairs: Sequence[tuple[str, str]]) -> list[RunSummary]:
        """Every try of each run: one flat listing per run, then the status.json of each finished try."""
        found = _parallel(lambda pair: self._list_run(*pair), pairs)
        summaries = [RunSummary(dag, run, tries) for (dag, run), tries in zip(pairs, found, strict=True)]
        self._load_statuses([t for s in summaries for t in s.tries])
        return summaries

    def _list_run(self, dag_id: str, run_id: str) -> list[TaskTry]:
        prefix = run_prefix(self.root, dag_id, run_id)
        tries: dict[tuple[str, int, int], TaskTry] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                parsed = _parse_try_key(obj["Key"][len(prefix) :])
                if parsed is None:
                    continue  # not part of the layout: ignored
                task_id, map_index, try_number, name = parsed
                key = (task_id, map_index, try_number)
                if key not in tries:
                    identity = RunIdentity(dag_id, run_id, task_id, map_index, try_number)
                    layout = ResultLayout.for_identity(self.bucket, self.root, identity)
                    tries[key] = TaskTry(identity, layout)
                tries[key].files[name] = obj["LastModified"]
        found = [t for t in tries.values() if PARAMS_FILE in t.files or STATUS_FILE in t.files]
        return sorted(found, key=lambda t: (t.identity.task_id, t.identity.map_index, t.identity.try_number))

    def _load_statuses(self, tries: list[TaskTry]) -> None:
        _parallel(self.refresh, [t for t in tries if STATUS_FILE in t.files])

    def refresh(self, task_try: TaskTry) -> bool:
        """Read the try's status.json if it has one now (for polling); True once the try has finished."""
        key = task_try.layout.status_key
        if key not in self._statuses and task_try.problem is None:
            body = self.read(key)
            if body is None:
                return False
            task_try.files.setdefault(STATUS_FILE, datetime.now(UTC))
            try:
                self._statuses[key] = Status.from_json(body)
            except (InvalidRequest, ValueError) as exc:
                task_try.problem = f"unreadable status.json: {exc}"
        task_try.status = self._statuses.get(key)
        return task_try.finished

    def read(self, key: str, start: int = 0) -> bytes | None:
        """The object's bytes from ``start`` on; None if it does not exist."""
        extra = {"Range": f"bytes={start}-"} if start else {}
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key, **extra)["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404"):
                return None
            if code == "InvalidRange":  # nothing after ``start`` yet
                return b""
            raise

    def find_try(self, dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int | None) -> TaskTry:
        """One try of one task; the latest if ``try_number`` is None. Errors list what there is instead."""
        validate_id(task_id, "task_id")
        tries = self.tries(dag_id, run_id)
        if not tries:
            raise no_such_run(self, dag_id, run_id)
        of_task = [t for t in tries if t.identity.task_id == task_id]
        if not of_task:
            names = ", ".join(sorted({t.identity.task_id for t in tries}))
            raise CliError(f"run {dag_id}/{run_id} has no task {task_id!r}; its tasks: {names}")
        of_index = [t for t in of_task if t.identity.map_index == map_index]
        if not of_index:
            indexes = ", ".join(str(i) for i in sorted({t.identity.map_index for t in of_task}))
            raise CliError(f"task {task_id!r} has no map index {map_index}; choose one with --map-index: {indexes}")
        if try_number is None:
            return of_index[-1]
        for task_try in of_index:
            if task_try.identity.try_number == try_number:
                return task_try
        numbers = ", ".join(str(t.identity.try_number) for t in of_index)
        raise CliError(f"task {task_id!r} has no try {try_number}; its tries: {numbers}")


def no_such_run(store: ResultStore, dag_id: str, run_id: str) -> CliError:
    where = store.uri(f"{dag_id}/{run_id}/")
    return CliError(f"no such run: nothing under {where} (list runs with `airlaunch runs --dag {dag_id}`)")


def _parse_try_key(relative: str) -> tuple[str, int, int, str] | None:
    """``task/map/try/file`` -> its parts, or None for a key outside the layout."""
    parts = relative.split("/")
    if len(parts) != 4 or not parts[3]:
        return None
    try:
        identity = RunIdentity("d", "r", parts[0], int(parts[1]), int(parts[2]))
    except (ValueError, InvalidRequest):
        return None
    return identity.task_id, identity.map_index, identity.try_number, parts[3]


def latest_tries(tries: Iterable[TaskTry]) -> list[TaskTry]:
    """The last try of each (task, map index): earlier ones were retried by Airflow."""
    latest: dict[tuple[str, int], TaskTry] = {}
    for task_try in tries:
        key = (task_try.identity.task_id, task_try.identity.map_index)
        if key not in latest or task_try.identity.try_number > latest[key].identity.try_number:
            latest[key] = task_try
    return list(latest.values())


def _parallel(fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(pool.map(fn, items))


# -- formatting -------------------------------------------------------------------------------


def _seconds_between(start: str, end: str) -> float | None:
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return None


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], out: TextIO) -> None:
    cells = [[str(c) for c in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _json(data: Any, out: TextIO) -> None:
    out.write(json.dumps(data, indent=2, default=str) + "\n")


# -- commands ---------------------------------------------------------------------------------


def cmd_runs(store: ResultStore, args: argparse.Namespace, out: TextIO) -> int:
    if args.dag:
        pairs = [(args.dag, run) for run in store.run_ids(args.dag)]
        if not pairs:
            raise CliError(f"no runs of DAG {args.dag!r} under {store.uri(args.dag + '/')}")
    else:
        dags = store.dag_ids()
        pairs = [(dag, run) for dag, runs in zip(dags, _parallel(store.run_ids, dags), strict=True) for run in runs]
    far_past = datetime.min.replace(tzinfo=UTC)
    summaries = sorted(
        (s for s in store.runs(pairs) if s.tries), key=lambda s: (s.dag_id, s.updated or far_past, s.run_id)
    )
    if args.json:
        _json([s.to_dict() for s in summaries], out)
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
    tries = _run_tries(store, args.dag_id, args.run_id)
    if args.json:
        _json({"dag_id": args.dag_id, "run_id": args.run_id, "tries": [t.to_dict() for t in tries]}, out)
        return EXIT_OK
    rows = []
    for t in tries:
        code = t.status.exit_code if t.status else None
        map_index = t.identity.map_index if t.identity.map_index >= 0 else None
        results = ",".join(t.result_keys)
        rows.append([t.identity.task_id, map_index, t.identity.try_number, t.state, code, _dur(t), results])
    table(["TASK", "MAP", "TRY", "STATE", "EXIT", "DURATION", "RESULTS"], rows, out)
    return EXIT_OK


def _dur(task_try: TaskTry) -> str:
    text = human_duration(task_try.duration_seconds)
    return text if task_try.finished or text == "-" else f"{text}+"


def _run_tries(store: ResultStore, dag_id: str, run_id: str) -> list[TaskTry]:
    tries = store.tries(dag_id, run_id)
    if not tries:
        raise no_such_run(store, dag_id, run_id)
    return tries


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
    if args.json:
        _json(
            {
                "dag_id": args.dag_id,
                "run_id": args.run_id,
                **task_try.to_dict(),
                "result": result,
                "status": task_try.status.to_dict() if task_try.status else None,
            },
            out,
        )
        return EXIT_OK
    status = task_try.status
    lines = [("task", f"{args.dag_id}/{args.run_id}/{task_try.label}"), ("state", task_try.state)]
    if status:
        lines += [("exit code", f"{status.exit_code} ({status.reason.value})"), ("started", status.started_at)]
        lines += [("ended", status.ended_at), ("duration", human_duration(task_try.duration_seconds))]
    else:
        lines += [("running for", human_duration(task_try.duration_seconds))]
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


def cmd_log(store: ResultStore, args: argparse.Namespace, out: TextIO) -> int:
    task_try = _selected_try(store, args)
    key = task_try.layout.log_key
    if not args.follow:
        body = store.read(key)
        if body is None:
            hint = "; it has not logged yet (use --follow)" if not task_try.finished else ""
            raise CliError(f"{task_try.label} has no log at s3://{store.bucket}/{key}{hint}")
        out.write(body.decode("utf-8", errors="replace"))
        return EXIT_OK
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    deadline = time.monotonic() + args.timeout if args.timeout else None
    offset = 0
    while True:
        done = store.refresh(task_try)
        chunk = store.read(key, offset) or b""  # read after the status check: the final log is uploaded first
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


class Progress:
    """One line rewritten in place on a terminal; a plain line per change otherwise (CI logs, pipes)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.last = ""

    def show(self, line: str, changed_key: str) -> None:
        if self.tty:
            self.out.write(f"\r{line}\x1b[K")
        elif changed_key != self.last:
            self.out.write(line + "\n")
        self.last = changed_key
        self.out.flush()

    def end(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


def cmd_wait(store: ResultStore, args: argparse.Namespace, out: TextIO) -> int:
    """Until the latest try of every task of the run has a status.json; 1 if any of them failed."""
    progress = Progress(sys.stderr if args.json else out)
    started = time.monotonic()
    while True:
        tries = latest_tries(_run_tries(store, args.dag_id, args.run_id))
        counts = {s: sum(1 for t in tries if t.state == s) for s in ("succeeded", "failed", RUNNING)}
        finished = sum(1 for t in tries if t.finished)
        states = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        other = len(tries) - sum(counts.values())
        states += f", {other} other" if other else ""
        elapsed = time.monotonic() - started
        summary = f"{args.dag_id}/{args.run_id}: {finished}/{len(tries)} tasks finished ({states})"
        progress.show(f"{summary} [{human_duration(elapsed)}]", summary)
        timed_out = args.timeout is not None and elapsed >= args.timeout
        if finished == len(tries) or timed_out:
            break
        time.sleep(args.interval)
    progress.end()
    failed = [t for t in tries if t.finished and t.state != TaskState.SUCCEEDED]
    if args.json:
        _json(
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


# -- the command line -------------------------------------------------------------------------


def add_common_args(parser: argparse.ArgumentParser, settings: CliSettings, *, with_defaults: bool) -> None:
    """The flags every command takes. Subcommands get them without defaults, so they go before or after it."""

    def default(value: Any) -> Any:
        return value if with_defaults else argparse.SUPPRESS

    parser.add_argument("--bucket", default=default(settings.bucket), help="S3 bucket [AIRLAUNCH_BUCKET]")
    parser.add_argument("--prefix", default=default(settings.key_prefix), help="key prefix [AIRLAUNCH_KEY_PREFIX]")
    parser.add_argument("--endpoint-url", default=default(None), help="S3 endpoint [AWS_ENDPOINT_URL]")
    parser.add_argument("--json", action="store_true", default=default(False), help="print JSON, for scripts")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def build_parser(settings: CliSettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airlaunch", description="Read what airlaunch task runs left in S3.")

    add_common_args(parser, settings, with_defaults=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def task_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("dag_id", metavar="DAG")
        p.add_argument("run_id", metavar="RUN")
        p.add_argument("task_id", metavar="TASK")
        p.add_argument("--map-index", type=int, default=-1, help="map index of a mapped task (default: -1)")
        p.add_argument("--try", dest="try_number", type=int, help="try number (default: the latest)")

    def polling_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--timeout", type=_positive, help="give up after this many seconds (exit 124)")
        p.add_argument(
            "--interval",
            type=_positive,
            default=settings.poll_seconds,
            help="seconds between looks at S3 [AIRLAUNCH_CLI_POLL_SECONDS; %(default)s]",
        )

    p = sub.add_parser("runs", help="list DAG runs with counts of task tries by state")
    add_common_args(p, settings, with_defaults=False)
    p.add_argument("--dag", help="only the runs of this DAG")
    p.set_defaults(handler=cmd_runs)
    p = sub.add_parser("tasks", help="every task try of one run")
    add_common_args(p, settings, with_defaults=False)
    p.add_argument("dag_id", metavar="DAG")
    p.add_argument("run_id", metavar="RUN")
    p.set_defaults(handler=cmd_tasks)
    p = sub.add_parser("show", help="status and result.json of one task try")
    add_common_args(p, settings, with_defaults=False)
    task_args(p)
    p.set_defaults(handler=cmd_show)
    p = sub.add_parser("log", help="print log.txt of one task try")
    add_common_args(p, settings, with_defaults=False)
    task_args(p)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the task ends")
    polling_args(p)
    p.set_defaults(handler=cmd_log)
    p = sub.add_parser("notebook", help="download output.ipynb of one task try")
    add_common_args(p, settings, with_defaults=False)
    task_args(p)
    p.add_argument("-o", "--output", help="file to write, '-' for stdout (default: TASK.ipynb)")
    p.set_defaults(handler=cmd_notebook)
    p = sub.add_parser("wait", help="wait until every task of a run has finished")
    add_common_args(p, settings, with_defaults=False)
    p.add_argument("dag_id", metavar="DAG")
    p.add_argument("run_id", metavar="RUN")
    polling_args(p)
    p.set_defaults(handler=cmd_wait)
    return parser


def explain(exc: Exception, store: ResultStore) -> CliError:
    """An AWS error as a sentence naming the problem and the fix."""
    if isinstance(exc, NoCredentialsError):
        return CliError("no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", 1)
    if isinstance(exc, EndpointConnectionError):
        return CliError(f"cannot reach S3: {exc} (check --endpoint-url / AWS_ENDPOINT_URL)", 1)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        if code == "NoSuchBucket":
            return CliError(f"bucket {store.bucket!r} does not exist (set --bucket or AIRLAUNCH_BUCKET)", 1)
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
            return CliError(f"access to {store.uri()} refused: {code}: {error.get('Message', '')}".rstrip(": "), 1)
        return CliError(f"S3 error on {store.uri()}: {code}: {error.get('Message', '')}", 1)
    return CliError(f"AWS error: {exc}", 1)


def main(argv: Sequence[str] | None = None) -> int:
    settings = CliSettings()
    args = build_parser(settings).parse_args(argv)
    s3 = boto3.session.Session().client(  # a session of its own: every call reads the environment afresh
        "s3",
        endpoint_url=args.endpoint_url or None,
        config=Config(max_pool_connections=32, retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5),
    )
    store = ResultStore(s3, args.bucket, args.prefix)
    out = sys.stdout
    try:
        for name in ("dag_id", "run_id", "task_id", "dag"):
            if getattr(args, name, None) is not None:
                validate_id(getattr(args, name), name)
        if getattr(args, "try_number", None) is not None and args.try_number < 0:
            raise CliError("--try must be >= 0")
        try:
            return int(args.handler(store, args, out))
        except (BotoCoreError, ClientError) as exc:
            raise explain(exc, store) from exc
    except InvalidRequest as exc:
        return _fail(str(exc), EXIT_USAGE)
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:  # `airlaunch runs | head`
        with contextlib.suppress(OSError, ValueError):  # no second error when Python flushes stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"airlaunch: error: {message}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
