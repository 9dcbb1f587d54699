"""The timeline of a run as one self-contained SVG (or an HTML page around it): a bar per try, a colour per phase.

No script, stylesheet or font is fetched from anywhere, so the file opens offline and can be
attached to a ticket. Hovering a segment shows its phase, seconds and clock.
"""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path

from airlaunch.cli.report import TryReport
from airlaunch.cli.store import EXIT_FAILED, CliError

COLOURS = {
    "airflow": "#5c6bc0",
    "invoke": "#78909c",
    "launch": "#9e9e9e",
    "create": "#bcaaa4",
    "provision": "#8d6e63",
    "pull": "#fb8c00",
    "start": "#fdd835",
    "boot": "#c0ca33",
    "cache": "#00acc1",  # a try served from the result cache: the launcher's lookup and copies
    "startup": "#1e88e5",
    "run": "#26a69a",
    "code": "#43a047",
    "upload": "#8e24aa",
    "exit": "#f48fb1",
    "stop": "#e53935",
    "notify": "#ffb300",
    "finish": "#3949ab",
}
LABEL_WIDTH, PLOT_WIDTH, ROW, BAR, TOP = 260, 760, 22, 14, 56


def svg(title: str, reports: list[TryReport]) -> str:
    """Bars in the order the tries began (those without a recorded phase last)."""
    timed = sorted((r for r in reports if r.spans), key=lambda r: min(s.start for s in r.spans))
    reports = timed + [r for r in reports if not r.spans]
    spans = [s for r in reports for s in r.spans]
    origin = min((s.start for s in spans), default=None)
    end = max((s.end for s in spans), default=None)
    width = (end - origin).total_seconds() if origin and end else 0.0
    scale = PLOT_WIDTH / width if width > 0 else 0.0
    height = TOP + ROW * len(reports) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{LABEL_WIDTH + PLOT_WIDTH + 20}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f"<title>{html.escape(title)}</title>",
        f'<text x="4" y="16" font-size="14" font-weight="bold">{html.escape(title)}</text>',
    ]
    parts += _legend(sorted({s.phase for s in spans}, key=list(COLOURS).index))
    for row, report in enumerate(reports):
        y = TOP + row * ROW
        parts.append(f'<text x="4" y="{y + BAR - 2}">{html.escape(_label(report))}</text>')
        if not report.spans:
            parts.append(f'<text x="{LABEL_WIDTH}" y="{y + BAR - 2}" fill="#757575">no phases recorded</text>')
        for span in report.spans:
            x = LABEL_WIDTH + (span.start - origin).total_seconds() * scale if origin else LABEL_WIDTH
            tip = f"{_label(report)}: {span.phase} {span.seconds:.3f} s ({span.clock})"
            parts.append(
                f'<rect class="phase-{span.phase}" x="{x:.1f}" y="{y}" width="{max(span.seconds * scale, 1):.1f}" '
                f'height="{BAR}" fill="{COLOURS.get(span.phase, "#000")}"><title>{html.escape(tip)}</title></rect>'
            )
    parts += _axis(TOP + ROW * len(reports) + 4, width, scale)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _label(report: TryReport) -> str:
    identity = report.task_try.identity
    mapped = f"[{identity.map_index}]" if identity.map_index >= 0 else ""
    return f"{identity.task_id}{mapped} try {identity.try_number}"


def _legend(phases: list[str]) -> list[str]:
    parts = []
    for index, phase in enumerate(phases):
        x = 4 + index * 88
        parts.append(f'<rect x="{x}" y="28" width="12" height="12" fill="{COLOURS[phase]}"/>')
        parts.append(f'<text x="{x + 16}" y="38">{phase}</text>')
    return parts


def _axis(y: int, width: float, scale: float) -> list[str]:
    parts = [f'<line x1="{LABEL_WIDTH}" y1="{y}" x2="{LABEL_WIDTH + PLOT_WIDTH}" y2="{y}" stroke="#424242"/>']
    if width <= 0:
        return parts
    step = _tick_step(width)
    tick = 0.0
    while tick <= width + 1e-9:
        x = LABEL_WIDTH + tick * scale
        parts.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" stroke="#424242"/>')
        parts.append(f'<text x="{x:.1f}" y="{y + 16}" text-anchor="middle">{tick:g}s</text>')
        tick += step
    return parts


def _tick_step(width: float) -> float:
    """A round step giving at most ten ticks."""
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if width / step <= 10:
            return step
    return 7200.0


def page(title: str, reports: list[TryReport]) -> str:
    started = min((s.start for r in reports for s in r.spans), default=None)
    when = f"first moment {started.isoformat()}" if isinstance(started, datetime) else "no phases recorded"
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f'<title>{html.escape(title)}</title></head>\n<body style="font-family: sans-serif">\n'
        f"<h1>{html.escape(title)}</h1>\n<p>One bar per try, {when}. Launch spans S3's clock (params.yaml, whole "
        "seconds) to the container's; ECS phases are on ECS's clock.</p>\n"
        f"{svg(title, reports)}</body></html>\n"
    )


def write_chart(path: str, title: str, reports: list[TryReport]) -> None:
    target = Path(path)
    if target.suffix.lower() not in (".svg", ".html", ".htm"):
        raise CliError(f"--chart {path}: name an .html or .svg file")
    text = svg(title, reports) if target.suffix.lower() == ".svg" else page(title, reports)
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}", EXIT_FAILED) from exc
