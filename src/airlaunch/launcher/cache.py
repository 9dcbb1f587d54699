"""The result cache: a launch whose key (airlaunch.launcher.cache_key) an earlier successful try holds is
served that try's result, and nothing is started. The launcher calls it in two places only: once per
launch (:meth:`ResultCache.step`, before anything is written) and where it records how a container ended
(:meth:`ResultCache.record`: Docker's watcher, ECS's task-stopped events), the one place that sees every
try end on both platforms, whoever watches it (a trigger, a sensor, nobody at all).

What it guarantees:

* **Never a stale result.** A hit needs an entry that is whole (one S3 object, written in one conditional
  PUT), not older than the catalog entry's ``ttl_seconds`` as the catalog reads now, whose try still has
  the status.json its own runtime wrote saying it succeeded, and whose files still have the ETags they had
  when cached (the copies are conditional on them). Anything else is a miss, never an error; a miss runs
  the task as if there were no cache.
* **Only a success is cached**, and only as the launcher saw it end: the runtime's own status.json says
  succeeded (not a stand-in, not a hit), the platform reports the container ran the very image, by content,
  the key was computed for (a tag moved between the key and the pull is not cached), and the claim comes
  from the platform (Docker's labels, ECS's RunTask overrides), never from anything the task wrote.
* **One writer wins.** Two identical tries that ran together write one entry: the first PUT (If-None-Match)
  stands; an entry that is no longer usable (expired, its try gone) is replaced only through If-Match on
  the ETag read, so a reader never sees half an entry and no writer overwrites a fresh one.
* **A hit looks like a run.** The try gets its own params.yaml, copies of the result (and notebook), a
  log.txt saying where they come from, and status.json last with ``cached_from`` (the computing try's
  prefix) and ``written_by`` "cache": XCom, the CLI and the report read it as any finished try.
* **The cache never fails a launch**: a key that cannot be computed (no image digest, an upstream object
  unreadable now) or an S3 error while serving means the task runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from airlaunch.aws_errors import error_code, is_missing
from airlaunch.catalog import Catalog, CatalogFile, TaskSpec
from airlaunch.launcher.backends.base import Backend, BackendState, LiveTask
from airlaunch.launcher.cache_entries import PRECONDITION, CacheEntries, computed
from airlaunch.launcher.cache_key import NoKey, ObjectResolver, cache_key
from airlaunch.launcher.settings import LauncherSettings
from airlaunch.protocol import (
    ENV_CACHE_CLAIM,
    LOG_FILE,
    NOTEBOOK_FILE,
    RESULT_FILE,
    CacheClaim,
    CacheEntry,
    InvalidRequest,
    LaunchRequest,
    ResultLayout,
    Status,
    StopReason,
    TaskState,
)
from airlaunch.protocol.cache import iso_at

log = logging.getLogger(__name__)

CACHED_FILES = {"result": RESULT_FILE, "notebook": NOTEBOOK_FILE}  # result_keys kind -> file a hit copies
MAX_LOG_COPY_BYTES = 1024 * 1024  # a hit's log.txt repeats the source's log up to this size


@dataclass(frozen=True)
class Step:
    """What the cache made of one launch: served from it (``served_from``, the computing try's prefix), or
    the environment to start the task with (its claim, when the task is cacheable), or nothing."""

    served_from: str | None = None
    env: dict[str, str] = field(default_factory=dict)


class ResultCache:
    def __init__(
        self,
        settings: LauncherSettings,
        catalog: Catalog | CatalogFile,
        backend: Backend,
        s3: Any,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.backend = backend
        self.s3 = s3
        self.entries = CacheEntries(settings, s3, clock)

    @property
    def clock(self) -> Callable[[], float]:
        """Epoch seconds: entries' ages (tests set their own)."""
        return self.entries.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self.entries.clock = clock

    # -- at launch ------------------------------------------------------------------------------------
    def step(self, request: LaunchRequest, spec: TaskSpec, layout: ResultLayout, params_yaml: bytes) -> Step:
        """Serve the try from the cache if its key has a usable entry; else say what to record if it succeeds."""
        if spec.cache is None or request.cache is False:
            return Step()
        claim = self._claim(request, spec)
        if claim is None:
            return Step()
        try:
            served = self._serve(claim, spec, layout, params_yaml)
        except (ClientError, BotoCoreError, InvalidRequest) as exc:
            log.warning("serving %s from the cache failed (%s): running it", layout.prefix, exc)
            self._clean(layout)
            served = None
        return Step(served_from=served) if served else Step(env={ENV_CACHE_CLAIM: claim.to_env()})

    def _claim(self, request: LaunchRequest, spec: TaskSpec) -> CacheClaim | None:
        try:
            image = self.backend.image_digest(spec)
        except Exception as exc:  # the image's content cannot be known: no key, the task runs
            log.warning("no cache for %s: its image %s has no digest now (%s)", spec.name, spec.image, exc)
            return None
        if image is None:
            log.warning("no cache for %s: the digest of image %s cannot be resolved", spec.name, spec.image)
            return None
        try:
            params = ObjectResolver(self.s3, self.settings.bucket, self.settings.key_prefix).resolve(request.params)
        except NoKey as exc:
            log.warning("no cache for %s: %s", request.identity.execution_id, exc)
            return None
        key = cache_key(request, spec, image, params)
        log.info("cache key of %s: %s (%s, image %s)", request.identity.execution_id, key.key, spec.name, image)
        return CacheClaim(spec.name, key.key, image)

    def _serve(self, claim: CacheClaim, spec: TaskSpec, layout: ResultLayout, params_yaml: bytes) -> str | None:
        entry = self.entries.usable(claim, spec.cache.ttl_seconds if spec.cache else None)
        if entry is None:
            return None
        source = ResultLayout(entry.bucket, entry.prefix)
        self.s3.put_object(Bucket=layout.bucket, Key=layout.params_key, Body=params_yaml,
                           ContentType="application/yaml")  # fmt: skip
        result_keys = {"params": layout.params_key}
        for kind, name in CACHED_FILES.items():
            if name not in entry.files:
                continue
            try:
                self.s3.copy_object(
                    Bucket=layout.bucket, Key=layout.key(name), CopySource={"Bucket": source.bucket,
                    "Key": source.key(name)}, CopySourceIfMatch=entry.files[name],
                )  # fmt: skip
            except ClientError as exc:
                if not (is_missing(exc) or error_code(exc) in PRECONDITION):
                    raise
                log.info("cache entry %s is stale (%s changed or is gone): running the task", claim.key, name)
                self._clean(layout)
                return None
            result_keys[kind] = layout.key(name)
        self.s3.put_object(Bucket=layout.bucket, Key=layout.log_key, Body=self._log(source),
                           ContentType="text/plain; charset=utf-8")  # fmt: skip
        result_keys["log"] = layout.log_key
        now = iso_at(self.clock())
        root = self.settings.key_prefix.strip("/")
        status = Status(
            state=TaskState.SUCCEEDED, exit_code=0, reason=StopReason.EXIT, started_at=now, ended_at=now,
            execution_id=layout.prefix.removeprefix(f"{root}/" if root else "").rstrip("/"),
            result_keys=result_keys, written_by="cache", cached_from=entry.prefix,
        )  # fmt: skip
        try:  # last, as the runtime writes it; never over one a stop wrote meanwhile
            self.s3.put_object(Bucket=layout.bucket, Key=layout.status_key, Body=status.to_json().encode(),
                               ContentType="application/json", IfNoneMatch="*")  # fmt: skip
        except ClientError as exc:
            if error_code(exc) not in PRECONDITION:
                raise
        log.info("served %s from the cache: the result of %s (key %s)", layout.prefix, entry.prefix, claim.key)
        return entry.prefix

    def _log(self, source: ResultLayout) -> bytes:
        head = (
            f"airlaunch: served from the result cache, no container ran: this try's result is that of "
            f"{source.uri()}, whose log follows\n"
        ).encode()
        try:
            size = int(self.s3.head_object(Bucket=source.bucket, Key=source.log_key)["ContentLength"])
            if size <= MAX_LOG_COPY_BYTES:
                return head + self.s3.get_object(Bucket=source.bucket, Key=source.log_key)["Body"].read()
        except ClientError as exc:
            if not is_missing(exc):
                raise
            return head
        return head + f"(its log is {size} bytes: read it at {source.uri(LOG_FILE)})\n".encode()

    def _clean(self, layout: ResultLayout) -> None:
        """A hit that could not be served leaves nothing behind: the launch writes its own files next."""
        for key in (layout.params_key, layout.log_key, *(layout.key(n) for n in CACHED_FILES.values())):
            try:
                self.s3.delete_object(Bucket=layout.bucket, Key=key)
            except (ClientError, BotoCoreError) as exc:
                log.warning("could not delete %s of an unserved cache hit: %s", key, exc)

    # -- at the end of a try ----------------------------------------------------------------------------
    def record(self, task: LiveTask, status: Status | None, seen: BackendState | None) -> None:
        """A try's container ended and ``status`` is how: cache its result if it is a success to cache."""
        claim = CacheClaim.parse(task.cache)
        if claim is None or status is None or not computed(status):
            return
        try:
            self._record(claim, task.layout, status, seen)
        except Exception:  # the cache is never worth failing the record of a try's end for
            log.exception("caching the result of %s failed: the next identical try runs", task.layout.prefix)

    def _record(self, claim: CacheClaim, layout: ResultLayout, status: Status, seen: BackendState | None) -> None:
        ran = seen.image if seen is not None else None
        if ran != claim.image:
            log.warning("not caching %s: it ran image %s, not %s its key holds", layout.prefix, ran, claim.image)
            return
        if layout.bucket != self.settings.bucket:
            return
        files = {}
        for kind, name in CACHED_FILES.items():
            if kind in status.result_keys:
                try:
                    files[name] = str(self.s3.head_object(Bucket=layout.bucket, Key=layout.key(name))["ETag"])
                except ClientError as exc:
                    if is_missing(exc):
                        log.warning("not caching %s: its %s is missing", layout.prefix, name)
                        return
                    raise
        ttl = self._ttl(claim.task)
        entry = CacheEntry(
            key=claim.key, task=claim.task, image=claim.image, bucket=layout.bucket, prefix=layout.prefix,
            files=files, created_at=iso_at(self.clock()), ttl_seconds=ttl,
        )  # fmt: skip
        self.entries.write(entry, ttl)

    def _ttl(self, task: str) -> int | None:
        try:
            policy = self.catalog.get(task).cache
        except Exception:  # the task left the catalog: no lookup will find the entry anyway
            return None
        return policy.ttl_seconds if policy else None
