"""A write-through journal of S3 buckets and objects in one SQLite file (standard library only).

Why SQLite: one file, atomic transactions, and a commit that returns only once the write is
in its write-ahead log, so an object whose PUT was answered survives a kill -9 of LocalStack
and a clean reboot; with ``synchronous=FULL`` (the default) it also survives a power cut.
Objects are kept in chunks, so neither their size nor the memory used is bounded by
SQLite's limit on one value.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

CHUNK_BYTES = 4 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (name TEXT PRIMARY KEY, account_id TEXT NOT NULL, region TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL, key TEXT NOT NULL, meta BLOB NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (bucket, key)
);
CREATE TABLE IF NOT EXISTS chunks (
    bucket TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (bucket, key, seq)
);
"""


@dataclass(frozen=True)
class StoredBucket:
    name: str
    account_id: str
    region: str


class Journal:
    """Buckets and objects as last written; every method is one transaction, safe across threads."""

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous={synchronous!r}: expected OFF, NORMAL, FULL or EXTRA")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def _write(self, statements: Iterable[tuple[str, tuple[object, ...]]]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    self._db.execute(sql, args)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def put_bucket(self, name: str, account_id: str, region: str) -> None:
        self._write([("INSERT OR REPLACE INTO buckets VALUES (?, ?, ?)", (name, account_id, region))])

    def delete_bucket(self, name: str) -> None:
        self._write(
            [
                ("DELETE FROM chunks WHERE bucket = ?", (name,)),
                ("DELETE FROM objects WHERE bucket = ?", (name,)),
                ("DELETE FROM buckets WHERE name = ?", (name,)),
            ]
        )

    def put_object(self, bucket: str, key: str, meta: bytes, data: Iterable[bytes]) -> None:
        """Replace the object: its metadata (opaque bytes) and its content, read chunk by chunk."""

        def statements() -> Iterator[tuple[str, tuple[object, ...]]]:
            yield "DELETE FROM chunks WHERE bucket = ? AND key = ?", (bucket, key)
            size = 0
            for seq, chunk in enumerate(_rechunk(data)):
                size += len(chunk)
                yield "INSERT INTO chunks VALUES (?, ?, ?, ?)", (bucket, key, seq, chunk)
            yield "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?)", (bucket, key, meta, size)

        self._write(statements())

    def delete_object(self, bucket: str, key: str) -> None:
        self._write(
            [
                ("DELETE FROM chunks WHERE bucket = ? AND key = ?", (bucket, key)),
                ("DELETE FROM objects WHERE bucket = ? AND key = ?", (bucket, key)),
            ]
        )

    def buckets(self) -> list[StoredBucket]:
        with self._lock:
            rows = self._db.execute("SELECT name, account_id, region FROM buckets ORDER BY name").fetchall()
        return [StoredBucket(*row) for row in rows]

    def objects(self, bucket: str) -> list[tuple[str, bytes]]:
        """(key, metadata) of every object of the bucket."""
        with self._lock:
            return self._db.execute("SELECT key, meta FROM objects WHERE bucket = ? ORDER BY key", (bucket,)).fetchall()

    def read(self, bucket: str, key: str) -> Iterator[bytes]:
        """The object's content, one chunk at a time (only one chunk is held in memory)."""
        seq = 0
        while True:
            with self._lock:
                row = self._db.execute(
                    "SELECT data FROM chunks WHERE bucket = ? AND key = ? AND seq = ?", (bucket, key, seq)
                ).fetchone()
            if row is None:
                return
            yield row[0]
            seq += 1

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _rechunk(data: Iterable[bytes]) -> Iterator[bytes]:
    """Chunks of CHUNK_BYTES (the last may be shorter) from pieces of any size."""
    buffer = bytearray()
    for piece in data:
        buffer += piece
        while len(buffer) >= CHUNK_BYTES:
            yield bytes(buffer[:CHUNK_BYTES])
            del buffer[:CHUNK_BYTES]
    if buffer:
        yield bytes(buffer)


class ChunkReader:
    """A read()-able stream over chunks, as LocalStack's object store wants for a write."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out
