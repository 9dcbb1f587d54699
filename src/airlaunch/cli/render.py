"""How the results CLI shows things: rich tables and progress on a terminal, plain lines elsewhere.

Piped output (scripts, CI logs) stays stable and grep-able: no colours, no wrapping, no
trailing blanks, ``-`` for an empty cell, one line per progress change.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

_PIPE_WIDTH = 10_000  # wide enough that rich never wraps a row written to a pipe


def console(out: TextIO) -> Console:
    """A console on ``out``: its terminal's width and colours, or plain and unwrapped for a pipe."""
    tty = out.isatty()
    return Console(file=out, width=None if tty else _PIPE_WIDTH, force_terminal=tty, highlight=False)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], out: TextIO, *, right: Sequence[str] = ()) -> None:
    """Columns separated by two spaces, headers bold on a terminal; ``right`` names right-aligned columns."""
    grid = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", padding=(0, 1))
    for header in headers:
        grid.add_column(header, justify="right" if header in right else "left", overflow="fold")
    for row in rows:
        grid.add_row(*("-" if cell is None else str(cell) for cell in row))
    target = console(out)
    if target.is_terminal:
        target.print(grid, markup=False)
        return
    buffer = io.StringIO()
    Console(file=buffer, width=_PIPE_WIDTH, highlight=False, color_system=None).print(grid, markup=False)
    out.write("".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines()))


def json_out(data: Any, out: TextIO) -> None:
    out.write(json.dumps(data, indent=2, default=str) + "\n")


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def human_bytes(count: int | None) -> str:
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}GiB"


class WaitProgress:
    """``wait``'s display: a rich progress bar on a terminal, else a plain line each time the counts change."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.last = ""
        self.bar: Progress | None = None
        self.task_id: Any = None
        if out.isatty():
            self.bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console(out),
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self.bar.start()
            self.task_id = self.bar.add_task("", total=None)

    def show(self, summary: str, finished: int, total: int, elapsed: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task_id, description=summary, completed=finished, total=total or None)
            self.bar.refresh()
        elif summary != self.last:
            self.out.write(f"{summary} [{elapsed}]\n")
            self.out.flush()
        self.last = summary

    def end(self) -> None:
        if self.bar is not None:
            self.bar.stop()
