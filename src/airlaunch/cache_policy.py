"""A catalog entry's ``cache``: whether, and for how long, a try may be served an earlier try's result.

``cache: true`` keeps a result until it is cleared (or the try that computed it is gone);
``cache: {ttl_seconds: N}`` for N seconds after it was cached. Absent or ``false``: never (the
default). What the key holds and how a hit is served: airlaunch.launcher.cache_key and
airlaunch.launcher.cache, docs/cache.md. Base-level like airlaunch.catalog, which reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CachePolicy:
    """Cache this entry's results: a try whose key (its inputs, image by content, command and env) is that of
    an earlier successful try is served that try's result, and nothing is started. Only for tasks whose result
    depends on nothing else: not on the clock, on chance or on data outside their params."""

    ttl_seconds: int | None = None  # None: until the entry is cleared (or the try it names is gone)


def parse_cache(data: Any, where: str, error: type[Exception] = ValueError) -> CachePolicy | None:
    """``cache``: absent or false (off), true (no expiry) or ``{ttl_seconds: N}`` with N >= 1; ``error`` names
    the field otherwise."""
    if data is None or data is False:
        return None
    if data is True:
        return CachePolicy()
    if isinstance(data, dict) and set(data) <= {"ttl_seconds"}:
        ttl = data.get("ttl_seconds")
        if ttl is None:
            return CachePolicy()
        if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl >= 1:
            return CachePolicy(ttl_seconds=ttl)
    raise error(f"{where}: 'cache' must be true, false or {{ttl_seconds: <whole seconds, at least 1>}}, not {data!r}")
