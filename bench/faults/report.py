"""The fault suite's table: printed, written into docs/faults.md (between markers) and kept as JSON.

One line per scenario, one group of columns per backend (the launcher's Docker backend, and the stack's
ECS mode): outcome, seconds to detection, the message Airflow shows, containers left, results lost,
duplicates. A scenario that does not run on a backend has "n/a" there and the reason in its message
cell; one not measured there yet has dashes.
"""

from __future__ import annotations

import json
import os
import platform
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.faults.catalogue import BY_NAME
from bench.faults.suite import BACKENDS, DETECTION_GOAL, Row

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "faults.md"
RESULTS = REPO / "bench" / "results"
# The rows of the table in docs/faults.md, as data (committed with it; bench/results/ is not): what a partial
# run keeps of the rows it did not measure, in any checkout.
TABLE = REPO / "bench" / "faults" / "table.json"
BEGIN, END = "<!-- faults:begin -->", "<!-- faults:end -->"
LABEL = {"docker": "Docker", "ecs": "ECS"}
GROUP = ["{b}", "{b} s", "{b}: message Airflow shows", "{b} left", "{b} lost", "{b} dups"]
HEADERS = ["Scenario", *[cell.format(b=LABEL[backend]) for backend in BACKENDS for cell in GROUP]]


def _cell(value: Any, width: int = 0) -> str:
    text = "—" if value is None else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if not width or len(text) <= width else text[: width - 1] + "…"


def cells(row: Row, message_width: int = 150) -> list[str]:
    """One backend's cells of a scenario: outcome, detection, message, left, lost, duplicates."""
    outcome = row.outcome.upper() if row.outcome in ("pass", "fail") else row.outcome
    detection = f"{row.detection:.2f}" if row.detection is not None else None
    return [
        outcome,
        _cell(detection),
        _cell(row.message, message_width),
        _cell(row.containers_left),
        _cell(row.results_lost),
        _cell(row.duplicates),
    ]


def lines(rows: list[Row], message_width: int) -> list[list[str]]:
    """One line per scenario (the catalogue's order): its title, then each backend's cells."""
    by_key = {(row.name, row.backend): row for row in rows}
    names = [name for name in BY_NAME if any((name, b) in by_key for b in BACKENDS)]
    names += [row.name for row in rows if row.name not in BY_NAME and row.name not in names]
    table = []
    for name in names:
        measured = [by_key[(name, b)] for b in BACKENDS if (name, b) in by_key]
        line = [measured[0].title]
        for backend in BACKENDS:
            row = by_key.get((name, backend))
            why = BY_NAME[name].not_on().get(backend) if name in BY_NAME else None
            if row is not None:
                line += cells(row, message_width)
            elif why is not None:
                line += ["n/a", "", _cell(why, message_width), "", "", ""]
            else:
                line += ["—", "", "(not measured yet)", "", "", ""]
        table.append(line)
    return table


def markdown_table(rows: list[Row]) -> str:
    out = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(line) + " |" for line in lines(rows, 110)]
    return "\n".join(out)


def text_table(rows: list[Row]) -> str:
    """The table for a terminal: fixed-width columns, the messages cut to fit."""
    table = [HEADERS, *lines(rows, 40)]
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
    """This run's rows, and for each scenario and backend it did not run, the row from the latest earlier
    run (marked with when it was measured), in the suite's order: a partial run updates its rows only.
    Rows of runs before the ECS column are the Docker backend's."""
    for row in rows:
        row.details["measured"] = measured
    earlier: dict[tuple[str, str], Row] = {}

    def keep(row: Row) -> None:  # the later measurement of a scenario and backend wins
        key = (row.name, row.backend)
        if key not in earlier or earlier[key].details["measured"] <= row.details["measured"]:
            earlier[key] = row

    for data in json.loads(TABLE.read_text()) if TABLE.exists() else []:
        keep(Row(**data))
    for path in sorted(RESULTS.glob("faults-*.json")):
        document = json.loads(path.read_text())
        for data in document["rows"]:
            row = Row(**data)
            row.details.setdefault("measured", document["started"][:16].replace("T", " "))
            keep(row)
    ran = {(row.name, row.backend) for row in rows}
    merged = rows + [
        row for key, row in earlier.items() if key not in ran and key[0] in BY_NAME and BY_NAME[key[0]].runs_on(key[1])
    ]
    order = list(BY_NAME)
    return sorted(
        merged,
        key=lambda row: (order.index(row.name) if row.name in order else len(order), BACKENDS.index(row.backend)),
    )


def explanations(rows: list[Row]) -> str:
    """Per scenario, what each backend's run did and measured."""
    parts: dict[str, list[str]] = {}
    for row in rows:
        when = f", measured {row.details['measured']}" if row.details.get("measured") else ""
        head = parts.setdefault(row.name, [f"- **{row.title}**. Goal: {row.goal or '—'}."])
        title = "" if head[0].startswith(f"- **{row.title}**") else f" ({row.title})"
        notes = [f"{note[0].upper() + note[1:]}." for note in row.notes]
        if row.missed:
            notes.append("Goals missed: " + "; ".join(row.missed) + ".")
        if row.late:
            notes.append("Goals of time missed: " + "; ".join(row.late) + ".")
        head.append(f"  - {LABEL[row.backend]}{title}: {row.outcome}, {row.seconds:.0f} s{when}. " + " ".join(notes))
    return "\n".join("\n".join(part) for part in parts.values())


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
    counts = ", ".join(
        f"{LABEL[b]} {sum(r.outcome == 'pass' for r in rows if r.backend == b)} of {sum(r.backend == b for r in rows)}"
        for b in BACKENDS
    )
    earlier = "" if ran == len(rows) else f" This run measured {ran} of them; the others are from earlier runs."
    block = "\n".join(
        [
            BEGIN,
            f"Measured {started.strftime('%Y-%m-%d %H:%M')} to {finished.strftime('%H:%M')} UTC on {about['host']} "
            f"({about['cores']} cores, {about['memory_gib']} GiB), load average (1, 5, 15 min) "
            f"{load_at_start} at the start and {about['load']} at the end; rows that pass: {counts}. "
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
    table = [{**row.to_dict(), "details": {"measured": row.details["measured"]}} for row in rows]
    TABLE.write_text(json.dumps(table, indent=1, default=str) + "\n")
    if DOC.exists():
        text = DOC.read_text()
        if BEGIN in text and END in text:
            DOC.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S))
    return path
