"""The result cache's entries in a stack's bucket, for the stack, Airflow and compose tests: which tries a task's
entries point at, and waiting until the launcher has written one (it does as it records a container's end, after
the try's status.json)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from airlaunch.protocol import CacheEntry, cache_root


def cache_entries(s3: Any, bucket: str, task: str, key_prefix: str = "runs") -> list[tuple[str, CacheEntry]]:
    """Every cache entry of catalog task ``task``: (its S3 key, the entry)."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{cache_root(key_prefix)}/{task}/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return [(k, CacheEntry.from_json(s3.get_object(Bucket=bucket, Key=k)["Body"].read())) for k in keys]


def wait_until_cached(s3: Any, bucket: str, tasks: Iterable[str], prefixes: set[str], timeout: float = 60) -> None:
    """Wait until an entry of one of ``tasks`` points at each of these tries' prefixes."""
    tasks = list(tasks)
    deadline = time.monotonic() + timeout
    while True:
        found = {entry.prefix for task in tasks for _, entry in cache_entries(s3, bucket, task)}
        if prefixes <= found:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not cached within {timeout} s: {sorted(prefixes - found)}")
        time.sleep(0.5)
