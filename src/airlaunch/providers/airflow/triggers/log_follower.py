"""LogFollower: a running task's output in its Airflow task log, at a bounded cost per request.

The task runtime uploads its log in numbered parts while it runs (``log/000000``, ...) and
log.txt whole at the end. The follower reads one part per call with a ranged GET of at
most ``read_bytes`` (AIRLAUNCH_LOG_READ_BYTES) and shows at most ``max_lines`` of it; what
it skips it says, with how many bytes and where the whole log is. At the end it shows what
it had not read yet, or, if that is more than one read, a marker and the last ``read_bytes``.
So a task printing 100 MB costs the triggerer the same as one printing ten lines, and never
stalls the other tasks on the same event loop. At the end, what the runtime's status.json says of
the log spares that read where it can: the follower has shown all of log.txt (``log_bytes``), or
has shown none of it and status.json's ``log_tail`` holds every line (``log_lines``): one S3 GET
fewer for most short tasks.
"""

from __future__ import annotations

import re
from typing import Any

from airlaunch.protocol import ResultLayout, Status
from airlaunch.providers.airflow.hooks.launcher import aget

_TOTAL_RE = re.compile(r"/(\d+)$")


async def read_range(client: Any, bucket: str, key: str, first: int, last: int | None) -> tuple[bytes, int] | None:
    """Bytes ``first..last`` (or to the end; negative ``first``: the last -first bytes) and the object's
    size; None when the object does not exist (yet) or the range starts past its end."""
    byte_range = f"bytes={first}" if first < 0 else f"bytes={first}-{'' if last is None else last}"
    got = await aget(client, bucket, key, byte_range)
    if got is None:
        return None
    data, content_range = got
    match = _TOTAL_RE.search(content_range)
    return data, int(match.group(1)) if match else len(data)


class LogFollower:
    def __init__(self, layout: ResultLayout, log: Any, read_bytes: int = 65536, max_lines: int = 200) -> None:
        self.layout = layout
        self.log = log
        self.read_bytes = read_bytes
        self.max_lines = max_lines
        self.part = 0  # the next part to read
        self.offset = 0  # bytes of the log read or skipped so far
        self._partial = b""  # the start of a line whose end is in the next part
        self._held: list[str] | None = None  # while ``finish`` runs: what it shows, logged as one event at its end

    async def step(self, client: Any) -> bool:
        """Show the next part if it exists; True if there was one."""
        read = await read_range(client, self.layout.bucket, self.layout.log_part_key(self.part), 0, self.read_bytes - 1)
        if read is None:
            return False
        data, size = read
        self._show(data, skipped=size - len(data))
        self.part += 1
        self.offset += size
        return True

    async def finish(self, client: Any, status: Status | None = None, closing: str | None = None) -> None:
        """Show what is left of the log (from log.txt, unless ``status`` says it holds all of it or there is
        nothing left), bounded as everything else, and ``closing`` after it: all of it as one log event, also
        when the read fails (the error is raised after it).

        One event, not one per piece: in the triggerer each log event is a message to its supervisor, and each
        message that arrives on its own wakes the supervisor for a whole turn of its database loop (assigning
        and listing triggers, deleting unused ones); the lines the end of a try shows cost one turn so."""
        self._held = []
        try:
            await self._finish(client, status)
        finally:
            held, self._held = self._held, None
            if closing is not None:
                held.append(closing)
            if held:
                self.log.info("%s", "\n".join(held))

    async def _finish(self, client: Any, status: Status | None) -> None:
        if status is not None and status.log_bytes is not None:
            if status.log_bytes == self.offset:
                self._flush_partial()
                return
            if self.offset == 0 and not self._partial and status.log_is_in_tail:
                self._show("".join(f"{line}\n" for line in status.log_tail).encode(), 0, newest=True)
                self.offset = status.log_bytes
                return
        bucket, key = self.layout.bucket, self.layout.log_key
        read = await read_range(client, bucket, key, self.offset, self.offset + self.read_bytes - 1)
        if read is None:
            self._flush_partial()
            return
        data, size = read
        skipped = 0
        if size - self.offset > len(data):  # more than one read is left: show its end instead
            self._flush_partial()
            tail = await read_range(client, bucket, key, -self.read_bytes, None)
            data = tail[0] if tail else b""
            data = data[data.find(b"\n") + 1 :]  # from the first whole line
            skipped = size - self.offset - len(data)
        self._show(data, skipped, newest=True)
        self._flush_partial()
        self.offset = size

    def _show(self, data: bytes, skipped: int, newest: bool = False) -> None:
        """Log the whole lines of ``data``: the first max_lines, with ``skipped`` unread bytes after it;
        or (``newest``) the last max_lines, with ``skipped`` unread bytes before it."""
        data = self._partial + data
        complete = data.rfind(b"\n") + 1
        whole, rest = data[:complete], data[complete:]
        if skipped and not newest:  # cut short: its last line is incomplete, and the rest of it is not read
            skipped, rest = skipped + len(rest), b""
        self._partial = rest
        lines = whole[:-1].split(b"\n") if whole else []
        shown = lines[-self.max_lines :] if newest else lines[: self.max_lines]
        hidden = skipped + len(whole) - sum(len(line) + 1 for line in shown)
        if hidden > 0 and newest:
            self._marker(hidden)
        if shown:  # one log event per part, not per line: a chatty task costs the triggerer one call per read
            self._emit("\n".join(f"[container] {line.decode('utf-8', 'replace')}" for line in shown))
        if hidden > 0 and not newest:
            self._marker(hidden)

    def _emit(self, text: str) -> None:
        """Log ``text`` now, or hold it for ``finish``'s one event."""
        if self._held is not None:
            self._held.append(text)
        else:
            self.log.info("%s", text)

    def _flush_partial(self) -> None:
        if self._partial:
            self._emit(f"[container] {self._partial.decode('utf-8', 'replace')}")
            self._partial = b""

    def _marker(self, hidden_bytes: int) -> None:
        self._emit(
            f"[container] ... {hidden_bytes} bytes of output not shown here; the whole log is at "
            f"{self.layout.uri('log.txt')}"
        )
