"""The results CLI's view of S3: task tries found in the layout of :class:`~airlaunch.protocol.ResultLayout`.

A try is a folder holding params.yaml or status.json (:class:`~airlaunch.cli.tries.TaskTry`). This
module finds them and reads their files; it also holds the CLI's exit codes and its expected error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from airlaunch.aws_errors import error_code, is_missing
from airlaunch.cli.tries import RunSummary, TaskTry, age
from airlaunch.protocol import (
    PARAMS_FILE,
    STATUS_FILE,
    InvalidRequest,
    ResultLayout,
    RunIdentity,
    Status,
    parse_try_key,
    run_prefix,
    validate_id,
)

EXIT_OK = 0
EXIT_FAILED = 1  # an AWS problem, or a task that failed (wait)
EXIT_USAGE = 2  # a bad argument, or something asked for that does not exist
EXIT_TIMEOUT = 124  # as coreutils' timeout
EXIT_INTERRUPTED = 130

_T = TypeVar("_T")
_R = TypeVar("_R")


class CliError(Exception):
    """An expected failure: printed as ``airlaunch: error: <message>``, never as a traceback."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


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

    def run_tries(self, dag_id: str, run_id: str) -> list[TaskTry]:
        """Every try of the run; an error naming where it looked when there is none."""
        tries = self.tries(dag_id, run_id)
        if not tries:
            raise no_such_run(self, dag_id, run_id)
        return tries

    def runs(self, pairs: Sequence[tuple[str, str]]) -> list[RunSummary]:
        """Every try of each run: one flat listing per run, then the status.json of each finished try."""
        found = parallel(lambda pair: self._list_run(*pair), pairs)
        summaries = [RunSummary(dag, run, tries) for (dag, run), tries in zip(pairs, found, strict=True)]
        self._load_statuses([t for s in summaries for t in s.tries])
        return summaries

    def _list_run(self, dag_id: str, run_id: str) -> list[TaskTry]:
        prefix = run_prefix(self.root, dag_id, run_id)
        tries: dict[tuple[str, int, int, str], TaskTry] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                parsed = _parse_try_key(obj["Key"][len(prefix) :])
                if parsed is None:
                    continue  # not part of the layout: ignored
                task_id, map_index, try_number, ti_id, name = parsed
                key = (task_id, map_index, try_number, ti_id)
                if key not in tries:
                    identity = RunIdentity(dag_id, run_id, task_id, map_index, try_number, ti_id)
                    layout = ResultLayout.for_identity(self.bucket, self.root, identity)
                    tries[key] = TaskTry(identity, layout)
                tries[key].files[name] = obj["LastModified"]
        found = [t for t in tries.values() if PARAMS_FILE in t.files or STATUS_FILE in t.files]
        return sorted(found, key=lambda t: (t.identity.task_id, t.identity.map_index, *age(t)))

    def _load_statuses(self, tries: list[TaskTry]) -> None:
        parallel(self.refresh, [t for t in tries if STATUS_FILE in t.files])

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
            if is_missing(exc):
                return None
            if error_code(exc) == "InvalidRange":  # nothing after ``start`` yet
                return b""
            raise

    def find_try(self, dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int | None) -> TaskTry:
        """One try of one task; the latest if ``try_number`` is None. Errors list what there is instead."""
        validate_id(task_id, "task_id")
        tries = self.run_tries(dag_id, run_id)
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
        for task_try in reversed(of_index):  # a re-created run may have two tries 1: the newest
            if task_try.identity.try_number == try_number:
                return task_try
        numbers = ", ".join(str(t.identity.try_number) for t in of_index)
        raise CliError(f"task {task_id!r} has no try {try_number}; its tries: {numbers}")


def no_such_run(store: ResultStore, dag_id: str, run_id: str) -> CliError:
    where = store.uri(f"{dag_id}/{run_id}/")
    return CliError(f"no such run: nothing under {where} (list runs with `airlaunch runs --dag {dag_id}`)")


def _parse_try_key(relative: str) -> tuple[str, int, int, str, str] | None:
    """``task/map/try[-ti_id]/file`` -> its parts, or None for a key outside the layout."""
    parts = relative.split("/")
    if len(parts) != 4 or not parts[3]:
        return None
    try:
        try_number, ti_id = parse_try_key(parts[2])
        identity = RunIdentity("d", "r", parts[0], int(parts[1]), try_number, ti_id)
    except (ValueError, InvalidRequest):
        return None
    return identity.task_id, identity.map_index, identity.try_number, identity.ti_id, parts[3]


def parallel(fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(pool.map(fn, items))
