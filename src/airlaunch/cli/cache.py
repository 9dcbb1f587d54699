"""``airlaunch cache ls|clear``: the result cache's entries (airlaunch.protocol.cache), read and removed in S3.

``ls [--task TASK]`` lists each entry: the catalog task, its key, when it was cached, the TTL its catalog
entry had then, and the try whose result it serves. ``clear --task TASK | --key KEY | --all`` deletes
entries; the next launch with that key runs its task and caches its result again. Deleting an entry is
always safe: it can only turn a hit into a miss. Like every command, these read S3 only (``clear`` also
deletes under ``<prefix>-cache/``: ``s3:ListBucket`` and ``s3:DeleteObject`` there).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, TextIO

from airlaunch.cli.render import human_duration, json_out, table
from airlaunch.cli.store import EXIT_OK, CliError, ResultStore, parallel
from airlaunch.protocol import CacheEntry, InvalidRequest, cache_root

_TASK_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_KEY_START_RE = re.compile(r"^[0-9a-f]{6,64}$")


def add_cache_commands(sub: Any, common: Any) -> None:
    """``airlaunch cache ls|clear``; ``common`` adds the flags every command takes."""
    cache = sub.add_parser("cache", help="the result cache: list its entries, or clear them")
    actions = cache.add_subparsers(dest="cache_action", required=True, metavar="ACTION")
    p = actions.add_parser("ls", help="list the cache's entries (task, key, age, TTL, the try they serve)")
    common(p)
    p.add_argument("--task", dest="cache_task", metavar="TASK", help="only this catalog task's entries")
    p.set_defaults(handler=cmd_cache_ls)
    p = actions.add_parser("clear", help="delete entries: the next identical launch runs its task again")
    common(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", dest="cache_task", metavar="TASK", help="every entry of this catalog task")
    which.add_argument("--key", metavar="KEY", help="the entry with this key (its first 6 or more hex digits)")
    which.add_argument("--all", action="store_true", help="every entry of the cache")
    p.set_defaults(handler=cmd_cache_clear)


def _root(store: ResultStore, task: str | None = None) -> str:
    if task is not None and not _TASK_RE.match(task):
        raise CliError(f"--task {task!r} is not a catalog task name (lower-case letters, digits, '_' and '-')")
    return f"{cache_root(store.root)}/" + (f"{task}/" if task else "")


def _keys(store: ResultStore, prefix: str) -> list[str]:
    keys = []
    for page in store.s3.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".json")]
    return sorted(keys)


def _entry(store: ResultStore, key: str) -> dict[str, Any]:
    task, name = key.split("/")[-2:]
    row: dict[str, Any] = {"task": task, "key": name.removesuffix(".json"), "s3_key": key}
    body = store.read(key)
    if body is None:  # cleared meanwhile
        return {**row, "problem": "gone"}
    try:
        entry = CacheEntry.from_json(body)
    except InvalidRequest as exc:
        return {**row, "problem": f"unreadable (a miss): {exc.message}"}
    age = (datetime.now(UTC).timestamp() - entry.created_epoch) if entry.created_at else None
    return {**row, **asdict(entry), "age_seconds": round(age, 3) if age is not None else None, "problem": None}


def cmd_cache_ls(store: ResultStore, args: argparse.Namespace, out: TextIO) -> int:
    prefix = _root(store, args.cache_task)
    entries = [e for e in parallel(lambda key: _entry(store, key), _keys(store, prefix)) if e["problem"] != "gone"]
    if args.json:
        json_out({"cache": f"s3://{store.bucket}/{prefix}", "entries": entries}, out)
        return EXIT_OK
    if not entries:
        out.write(f"no cache entries under s3://{store.bucket}/{prefix}\n")
        return EXIT_OK
    root = f"{store.root}/" if store.root else ""
    rows = []
    for e in entries:
        ttl = "-" if e["problem"] else (human_duration(e["ttl_seconds"]) if e.get("ttl_seconds") else "none")
        source = e["problem"] or e["prefix"].removeprefix(root).rstrip("/")
        rows.append([e["task"], e["key"][:16], human_duration(e.get("age_seconds")), ttl, source])
    table(["TASK", "KEY", "AGE", "TTL", "RESULT OF"], rows, out)
    return EXIT_OK


def cmd_cache_clear(store: ResultStore, args: argparse.Namespace, out: TextIO) -> int:
    if args.key is not None:
        if not _KEY_START_RE.match(args.key):
            raise CliError(f"--key {args.key!r}: give a cache key's first 6 or more hex digits (airlaunch cache ls)")
        keys = [k for k in _keys(store, _root(store)) if k.rsplit("/", 1)[-1].startswith(args.key)]
        if not keys:
            raise CliError(f"no cache entry has a key starting {args.key!r} (airlaunch cache ls lists them)")
        if len({k.rsplit("/", 1)[-1] for k in keys}) > 1:
            raise CliError(f"--key {args.key!r} matches {len(keys)} entries: give more of the key")
    else:
        keys = _keys(store, _root(store, None if args.all else args.cache_task))
    for first in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000
        batch = [{"Key": key} for key in keys[first : first + 1000]]
        store.s3.delete_objects(Bucket=store.bucket, Delete={"Objects": batch, "Quiet": True})
    if args.json:
        json_out({"cleared": keys}, out)
    else:
        out.write(f"cleared {len(keys)} cache entr{'y' if len(keys) == 1 else 'ies'}\n")
    return EXIT_OK
