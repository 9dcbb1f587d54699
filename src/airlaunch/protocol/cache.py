"""The result cache's records in S3: one entry per cache key, and the claim a launch leaves on its task.

Where: ``s3://<bucket>/<key prefix>-cache/<catalog task>/<key>.json`` (:func:`entry_key`), beside the runs'
own prefix, never under it, so the CLI's runs never show it and no task's run session reaches it.

Guarantees:

* An entry is one S3 object, written whole in one conditional PUT by the launcher only (never by a task),
  so a reader sees a whole entry or none; :meth:`CacheEntry.from_json` refuses anything else with
  :class:`InvalidRequest` on field ``cache_entry``, and a reader takes that for a miss.
* An entry names the try that computed the result (``bucket``, ``prefix``) and the ETag of each file a hit
  copies, so a hit copies exactly the bytes that were cached or nothing (a file rewritten since is a miss).
* A :class:`CacheClaim` travels with the task it was made for (its environment, hence Docker's labels and
  ECS's RunTask overrides, which the platform reports back as the launcher asked): it is what the launcher
  records once that task has succeeded, and it names the image, by content, that the key was computed for.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from airlaunch.protocol.checks import InvalidRequest, parse_json, require

ENTRY_VERSION = 1
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
_TASK_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_IMAGE_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def cache_root(key_prefix: str) -> str:
    """The top-level prefix of the cache's entries, beside (never under) the runs' own prefix."""
    root = key_prefix.strip("/")
    return f"{root}-cache" if root else "airlaunch-cache"


def entry_key(key_prefix: str, task: str, key: str) -> str:
    """The S3 key of one entry: ``<root>-cache/<task>/<key>.json``."""
    return f"{cache_root(key_prefix)}/{task}/{key}.json"


def is_cache_key(text: str) -> bool:
    return bool(_KEY_RE.match(text))


@dataclass(frozen=True)
class CacheClaim:
    """What a launch that missed records if its try succeeds: the task's entry key, and the image by content
    (``sha256:...``) the key was computed for; the entry is written only if that very image ran."""

    task: str
    key: str
    image: str

    def to_env(self) -> str:
        return f"{self.task}/{self.key}/{self.image}"

    @classmethod
    def parse(cls, text: str | None) -> CacheClaim | None:
        """The claim a task carries, or None for none (or one this launcher did not write)."""
        task, _, rest = (text or "").partition("/")
        key, _, image = rest.partition("/")
        if _TASK_RE.match(task) and _KEY_RE.match(key) and _IMAGE_RE.match(image):
            return cls(task, key, image)
        return None


@dataclass(frozen=True)
class CacheEntry:
    """``<key>.json``: the result of ``task`` for cache key ``key`` is the one try ``prefix`` left."""

    key: str
    task: str
    image: str  # the image by content that computed it (what the key holds, for reading)
    bucket: str
    prefix: str  # the try that computed it: its status.json and files
    files: dict[str, str] = field(default_factory=dict)  # file name -> ETag when cached: what a hit copies
    created_at: str = ""  # ISO 8601, UTC: when the entry was written (the TTL counts from here)
    ttl_seconds: int | None = None  # the catalog entry's when written (the launcher applies the current one)
    version: int = ENTRY_VERSION

    def __post_init__(self) -> None:
        if not _KEY_RE.match(require(self.key, "cache_entry.key", str)):
            raise InvalidRequest("cache_entry.key", "must be 64 lower-case hex digits (a SHA-256)")
        if not _TASK_RE.match(require(self.task, "cache_entry.task", str)):
            raise InvalidRequest("cache_entry.task", f"{self.task!r} is not a catalog task name")
        require(self.bucket, "cache_entry.bucket", str)
        prefix = require(self.prefix, "cache_entry.prefix", str)
        if ".." in prefix or prefix.startswith("/") or not prefix.endswith("/"):
            raise InvalidRequest("cache_entry.prefix", "must be a relative key prefix ending in '/' without '..'")
        for name, etag in require(self.files, "cache_entry.files", dict).items():
            if "/" in require(name, "cache_entry.files", str) or not isinstance(etag, str):
                raise InvalidRequest("cache_entry.files", f"{name!r}: expected a file name and its ETag")
        _epoch_of(self.created_at)  # refuses a created_at that is not a time

    @property
    def created_epoch(self) -> float:
        return _epoch_of(self.created_at)

    def expired(self, ttl_seconds: int | None, now: float) -> bool:
        """Older than ``ttl_seconds`` at ``now`` (epoch seconds); never, without a TTL."""
        return ttl_seconds is not None and now - self.created_epoch > ttl_seconds

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, body: str | bytes) -> CacheEntry:
        data = parse_json(body, "cache_entry")
        require(data, "cache_entry", dict)
        known = {"key", "task", "image", "bucket", "prefix", "files", "created_at", "ttl_seconds", "version"}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:  # a required field missing
            raise InvalidRequest("cache_entry", f"malformed: {exc}") from exc


def _epoch_of(text: Any) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest("cache_entry.created_at", f"{text!r} is not an ISO 8601 time") from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def iso_at(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
