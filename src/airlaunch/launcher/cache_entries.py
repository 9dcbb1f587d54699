"""The result cache's entries in S3 (airlaunch.protocol.cache): read, judged servable, written once.

What it guarantees (for airlaunch.launcher.cache): an entry is servable only if it is whole, not older
than the TTL given (the catalog's as it reads now), names a try in this bucket's results whose own
runtime said it succeeded, and whose cached files still have the ETags they had when cached; a write
is one conditional PUT, the first writer's entry stands while it is servable, and one that is not is
replaced only through If-Match on the ETag read, never over an entry written since.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from airlaunch.aws_errors import error_code, is_missing
from airlaunch.launcher.settings import LauncherSettings
from airlaunch.protocol import (
    CacheClaim,
    CacheEntry,
    InvalidRequest,
    ResultLayout,
    Status,
    TaskState,
    entry_key,
    identity_of_prefix,
    status_of,
)

log = logging.getLogger(__name__)

PRECONDITION = ("PreconditionFailed", "412")


def computed(status: Status) -> bool:
    """A success its own runtime reported: never a stand-in, never a try that was itself served a hit."""
    return status.state is TaskState.SUCCEEDED and status.written_by == "runtime" and status.cached_from is None


class CacheEntries:
    def __init__(self, settings: LauncherSettings, s3: Any, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.s3 = s3
        self.clock = clock

    def read(self, task: str, key: str) -> tuple[CacheEntry | None, str | None]:
        """The entry and its ETag; (None, ETag) for an object that is not an entry, (None, None) for none."""
        try:
            found = self.s3.get_object(Bucket=self.settings.bucket, Key=entry_key(self.settings.key_prefix, task, key))
        except ClientError as exc:
            if is_missing(exc):
                return None, None
            raise
        etag = str(found.get("ETag", ""))
        try:
            entry = CacheEntry.from_json(found["Body"].read())
        except InvalidRequest as exc:
            log.warning("cache entry %s/%s is unreadable (%s): a miss", task, key, exc)
            return None, etag
        return (entry, etag) if entry.key == key and entry.task == task else (None, etag)

    def usable(self, claim: CacheClaim, ttl_seconds: int | None) -> CacheEntry | None:
        """The entry for ``claim`` if a hit may be served from it (module docstring); None otherwise."""
        entry, _ = self.read(claim.task, claim.key)
        if entry is None:
            return None
        if entry.image != claim.image:
            return None
        return entry if self._servable(entry, ttl_seconds) else None

    def _servable(self, entry: CacheEntry, ttl_seconds: int | None) -> bool:
        if entry.expired(ttl_seconds, self.clock()):
            log.info("cache entry %s expired (ttl_seconds %s): a miss", entry.key, ttl_seconds)
            return False
        return self._source_succeeded(entry) and self._files_unchanged(entry)

    def _files_unchanged(self, entry: CacheEntry) -> bool:
        """Each file a hit copies still has its ETag of when it was cached (the copy checks it again)."""
        source = ResultLayout(entry.bucket, entry.prefix)
        for name, etag in entry.files.items():
            try:
                now = str(self.s3.head_object(Bucket=source.bucket, Key=source.key(name))["ETag"])
            except ClientError as exc:
                if is_missing(exc):
                    log.info("cache entry %s: %s of %s is gone: a miss", entry.key, name, entry.prefix)
                    return False
                raise
            if now != etag:
                log.info("cache entry %s: %s of %s changed since: a miss", entry.key, name, entry.prefix)
                return False
        return True

    def _source_succeeded(self, entry: CacheEntry) -> bool:
        """The try an entry names is in this bucket's results and its own runtime said it succeeded."""
        root = self.settings.key_prefix.strip("/")
        if entry.bucket != self.settings.bucket or identity_of_prefix(entry.prefix) is None:
            return False
        if root and not entry.prefix.startswith(f"{root}/"):
            return False
        source = ResultLayout(entry.bucket, entry.prefix)
        try:
            body = self.s3.get_object(Bucket=source.bucket, Key=source.status_key)["Body"].read()
            status = status_of(body, source)
        except ClientError as exc:
            if is_missing(exc):
                log.info("cache entry %s names %s, which is gone: a miss", entry.key, entry.prefix)
                return False
            raise
        except InvalidRequest:
            return False
        return status is not None and computed(status)

    def write(self, entry: CacheEntry, ttl: int | None) -> None:
        where = {"Bucket": self.settings.bucket, "Key": entry_key(self.settings.key_prefix, entry.task, entry.key)}
        body = entry.to_json().encode()
        try:
            self.s3.put_object(**where, Body=body, ContentType="application/json", IfNoneMatch="*")
            log.info("cached the result of %s as %s/%s", entry.prefix, entry.task, entry.key)
            return
        except ClientError as exc:
            if error_code(exc) not in PRECONDITION:
                raise
        existing, etag = self.read(entry.task, entry.key)
        if existing is not None and self._servable(existing, ttl):
            log.info("%s/%s is cached already (from %s): kept", entry.task, entry.key, existing.prefix)
            return
        # the one read is replaced, not one written since; cleared in between: a new one, as first intended
        condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        try:
            self.s3.put_object(**where, Body=body, ContentType="application/json", **condition)
            log.info("replaced cache entry %s/%s with the result of %s", entry.task, entry.key, entry.prefix)
        except ClientError as exc:
            if error_code(exc) not in PRECONDITION:
                raise
            log.info("%s/%s was written by another try meanwhile: kept", entry.task, entry.key)
