"""The fault suite's table: printed, written into docs/faults.md (between markers) and kept as JSON."""

from __future__ import annotations

import json
import os
import platform
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.faults.scenarios import DETECTION_GOAL, SCENARIOS, Row

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "faults.md"
RESULTS = REPO / "bench" / "results"
BEGIN, END = "<!-- faults:begin -->", "<!-- faults:end -->"
HEADERS = ["Scenario", "Outcome", "Detection (s)", "Message Airflow shows", "Containers left", "Results lost", "Dups"]


def _cell(value: Any, width: int = 0) -> str:
    text = "—" if value is None else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if not width or len(text) <= width else text[: width - 1] + "…"


def cells(row: Row, message_width: int = 150) -> list[str]:
    outcome = row.outcome.upper() if row.outcome in ("pass", "fail") else row.outcome
    detection = f"{row.detection:.2f}" if row.detection is not None else None
    return [
        row.title,
        outcome,
        _cell(detection),
        _cell(row.message, message_width),
        _cell(row.containers_left),
        _cell(row.results_lost),
        _cell(row.duplicates),
    ]


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def text_table(rows: list[Row]) -> str:
    """The table for a terminal: fixed-width columns, the message cut to fit."""
    table = [HEADERS, *[cells(row, 70) for row in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADERS))]
    out = []
    for number, row in enumerate(table):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if number == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def machine() -> dict[str, Any]:
    return {
        "host": platform.node(),
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load": [round(x, 2) for x in os.getloadavg()],
    }


def with_earlier_rows(rows: list[Row], measured: str) -> list[Row]:
    """This run's rows, and for the scenarios it did not run, their rows from the latest earlier run
    (marked with when they were measured), in the suite's order: a partial run updates its rows only."""
    for row in rows:
        row.details["measured"] = measured
    earlier: dict[str, Row] = {}
    for path in sorted(RESULTS.glob("faults-*.json")):
        document = json.loads(path.read_text())
        for data in document["rows"]:
            row = Row(**data)
            row.details.setdefault("measured", document["started"][:16].replace("T", " "))
            earlier[row.name] = row
    ran = {row.name for row in rows}
    merged = rows + [row for name, row in earlier.items() if name not in ran and name in SCENARIOS]
    order = list(SCENARIOS)
    return sorted(merged, key=lambda row: order.index(row.name) if row.name in order else len(order))


def explanations(rows: list[Row]) -> str:
    parts = []
    for row in rows:
        when = f", measured {row.details['measured']}" if row.details.get("measured") else ""
        lines = [f"- **{row.title}** ({row.outcome}, {row.seconds:.0f} s{when}). Goal: {row.goal or '—'}."]
        lines += [f"  {note[0].upper() + note[1:]}." for note in row.notes]
        if row.missed:
            lines.append("  Goals missed: " + "; ".join(row.missed) + ".")
        parts.append("\n".join(lines))
    return "\n".join(parts)


def save(rows: list[Row], started: datetime, settings: dict[str, Any], load_at_start: list[float]) -> Path:
    """Write bench/results/faults-<time>.json and the table into docs/faults.md; the JSON's path."""
    finished = datetime.now(UTC)
    about = {**machine(), "load_at_start": load_at_start}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"faults-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    document = {
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "machine": about,
        "settings": settings,
        "rows": [row.to_dict() for row in rows],
    }
    path.write_text(json.dumps(document, indent=1, default=str))
    ran = len(rows)
    rows = with_earlier_rows(rows, started.strftime("%Y-%m-%d %H:%M"))
    passed = sum(row.outcome == "pass" for row in rows)
    earlier = "" if ran == len(rows) else f" This run measured {ran} of the rows; the others are from earlier runs."
    block = "\n".join(
        [
            BEGIN,
            f"Measured {started.strftime('%Y-%m-%d %H:%M')} to {finished.strftime('%H:%M')} UTC on {about['host']} "
            f"({about['cores']} cores, {about['memory_gib']} GiB), load average (1, 5, 15 min) "
            f"{load_at_start} at the start and {about['load']} at the end; {passed} of {len(rows)} rows pass. "
            f"Raw results: `bench/results/{path.name}`.{earlier}",
            "",
            markdown_table(rows),
            "",
            f"Detection goal where the fault is the container's: {DETECTION_GOAL:g} s. What each row did and measured:",
            "",
            explanations(rows),
            END,
        ]
    )
    if DOC.exists():
        text = DOC.read_text()
        if BEGIN in text and END in text:
            DOC.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S))
    return path
