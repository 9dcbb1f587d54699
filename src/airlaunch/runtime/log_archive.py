"""The task's output, kept: teed to stdout, archived as log.txt, uploaded in parts while the task runs.

What it guarantees: every line is masked (the task's secret values) before it goes anywhere; each
byte of the running log is uploaded once, in numbered parts, however long the log gets; a part whose
upload fails is tried again at the next flush, so nothing is skipped; the last lines are kept for
status.json. log.txt, the whole log, is uploaded once at the end (by the outcome, ``outcome.publish``).
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from airlaunch.protocol import mask


class LogArchive:
    """Tees the task's output to stdout and a file, keeps the last lines, uploads it while it grows.

    At each flush (``flush_interval(age)`` apart) what is new goes up as the next numbered part (``log/000000``,
    ``log/000001``...; at most ``part_bytes`` each, cut after a newline where there is one), so
    each byte is uploaded once while the task runs, however long the log gets. A part whose
    upload fails is tried again at the next flush: nothing is skipped. log.txt, the whole log,
    is uploaded once at the end. Every line is masked (``secrets``) before it goes anywhere.
    """

    def __init__(
        self,
        path: Path,
        tail_lines: int,
        upload_part: Any,
        flush_interval: Callable[[float], float],
        part_bytes: int = 1 << 20,
        secrets: Sequence[str] = (),
    ) -> None:
        self.path = path
        self.secrets = secrets
        self.tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._file = path.open("w", encoding="utf-8")
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._upload_part = upload_part
        self._flush_interval = flush_interval
        self._part_bytes = part_bytes
        self.parts = 0
        self.uploaded = 0  # bytes of the file already uploaded as parts
        self.lines = 0  # lines written (each one of the tail's while there are no more than it holds)
        self._done = threading.Event()
        self._uploader = threading.Thread(target=self._upload_loop, daemon=True)
        self._uploader.start()

    def write(self, line: str) -> None:
        if self.secrets:
            line = mask(line, self.secrets)
        sys.stdout.write(line)
        sys.stdout.flush()
        with self._lock:
            if not self._file.closed:
                self._file.write(line)
                self._file.flush()
            self.tail.append(line.rstrip("\n"))
            self.lines += 1

    def pump(self, stream: IO[str]) -> threading.Thread:
        def run() -> None:
            for line in stream:
                self.write(line)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def _upload_loop(self) -> None:
        started = time.monotonic()
        while not self._done.wait(self._flush_interval(time.monotonic() - started)):
            self.flush()

    def flush(self) -> None:
        """Upload what was written before this flush began, part by part.

        Only up to the size the log had at the start: what the task prints during a slow upload
        waits for the next flush, or a busy S3 would make each flush run on, a PUT after another."""
        with self._flush_lock, self.path.open("rb") as source:
            end = os.fstat(source.fileno()).st_size
            while self.uploaded < end:
                source.seek(self.uploaded)
                data = source.read(min(self._part_bytes, end - self.uploaded))
                cut = data.rfind(b"\n") + 1
                if 0 < cut < len(data):
                    data = data[:cut]
                try:
                    self._upload_part(self.parts, data)
                except Exception as exc:  # a failed interim upload must not kill the task: retried next time
                    sys.stderr.write(f"airlaunch: log upload failed, will retry: {exc}\n")
                    return
                self.parts += 1
                self.uploaded += len(data)

    def close(self) -> None:
        self._done.set()
        self._uploader.join()
        with self._lock:
            self._file.close()
