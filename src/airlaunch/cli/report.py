"""``airlaunch report``: where a run's seconds and cents went, try by try.

Each try's phases are :mod:`airlaunch.cli.phases`' (its moments from every clock that recorded
them, as spans); this module adds what each try costs and prints the run. The cost is the Fargate
estimate of :mod:`airlaunch.cost`: for a local run, what it would cost on Fargate.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, TextIO

from airlaunch.cli.phases import CONTAINER, Span, at, phases_of
from airlaunch.cli.render import human_bytes, human_duration, json_out, table
from airlaunch.cli.store import EXIT_OK, ResultStore
from airlaunch.cli.tries import TaskTry
from airlaunch.cost import (
    CostError,
    Platform,
    PriceTable,
    TryCost,
    money,
    run_cost,
    s3_requests,
    served_cost,
    try_cost,
)
from airlaunch.protocol import ECS_TIMES_FILE, TIMINGS_FILE, EcsTimes, InvalidRequest, Timeline, Usage

# Columns of the table: the phases before the runtime runs count as "launch", those after the
# results are uploaded until Airflow ended the task as "end".
LAUNCH_PHASES = ("airflow", "invoke", "launch", "create", "provision", "pull", "start", "boot", "cache")
END_PHASES = ("notify", "finish")
DEFAULT_CPU, DEFAULT_MEMORY_MIB = 0.5, 512  # the catalog's defaults, when a try says nothing of its size


@dataclass(frozen=True)
class TryReport:
    task_try: TaskTry
    spans: list[Span]
    cost: TryCost | None
    cost_note: str  # what the estimate rests on, or why there is none

    @property
    def usage(self) -> Usage | None:
        return self.task_try.status.usage if self.task_try.status else None

    def seconds(self, phases: tuple[str, ...] | str) -> float | None:
        names = (phases,) if isinstance(phases, str) else phases
        found = [s.seconds for s in self.spans if s.phase in names]
        return sum(found) if found else None

    @property
    def total_seconds(self) -> float:
        return sum(s.seconds for s in self.spans)

    @property
    def dominant(self) -> str | None:
        return max(self.spans, key=lambda s: s.seconds).phase if self.spans else None

    def to_dict(self) -> dict[str, Any]:
        measured = self.usage.resources if self.usage else None
        identity = self.task_try.identity
        return {
            "task_id": identity.task_id,
            "map_index": identity.map_index,
            "try_number": identity.try_number,
            "state": self.task_try.state,
            "phases": [s.to_dict() for s in self.spans],
            "total_seconds": round(self.total_seconds, 3),
            "dominant_phase": self.dominant,
            "resources": asdict(measured) if measured else None,
            "cost": self.cost.to_dict() if self.cost else None,
            "cost_note": self.cost_note,
        }


def cost_of(
    task_try: TaskTry, spans: list[Span], table: PriceTable, base: Platform, args: Any
) -> tuple[TryCost | None, str]:
    """The Fargate estimate of one try, and what it rests on."""
    if task_try.status is not None and task_try.status.cached_from:
        platform = Platform(region=args.region or base.region)
        # puts: params, the copies, log, status; gets: entry, the source's status and files, the trigger's reads
        copies = len(task_try.result_keys) - 2
        cost = served_cost(table, platform, puts=3 + copies, gets=2 + copies + 3)
        return cost, f"served from the result cache ({task_try.status.cached_from}): no container, no Fargate"
    usage = task_try.status.usage if task_try.status else None
    requested = usage.requested if usage else None
    measured = usage.resources if usage else None
    if requested and requested.cpu and requested.memory_mib:
        cpu, memory, size = requested.cpu, requested.memory_mib, "requested size"
    elif measured and measured.cpu_limit and measured.memory_limit_bytes:
        cpu, memory, size = measured.cpu_limit, measured.memory_limit_bytes // (1024 * 1024), "container limits"
    else:
        cpu, memory, size = args.cpu or DEFAULT_CPU, args.memory_mib or DEFAULT_MEMORY_MIB, "assumed size"
    seconds, basis = _billed_span(task_try, spans)
    if seconds is None:
        return None, "still running: no duration yet"
    platform = Platform(
        region=args.region or (requested.region if requested and requested.region else base.region),
        architecture=args.arch or (measured.architecture if measured and measured.architecture else "x86_64"),
        spot=args.spot or bool(requested and requested.capacity_provider == "FARGATE_SPOT"),
    )
    code = next((s.seconds for s in spans if s.phase == "code"), None)
    puts, gets = s3_requests(len(task_try.result_keys), code)
    try:
        cost = try_cost(table, platform, cpu=cpu, memory_mib=memory, seconds=seconds, puts=puts, gets=gets)
    except CostError as exc:
        return None, str(exc)
    return cost, f"{size} {cpu:g} vCPU/{memory} MiB, {basis}"


def _billed_span(task_try: TaskTry, spans: list[Span]) -> tuple[float | None, str]:
    """What Fargate bills: image pull to task stop on ECS; locally the container's own run."""
    usage = task_try.status.usage if task_try.status else None
    ecs = usage.ecs if usage else None
    if ecs and (ecs.pull_started_at or ecs.created_at) and ecs.stopped_at:
        start = at(ecs.pull_started_at or ecs.created_at)
        end = at(ecs.stopped_at)
        if start and end:
            return (end - start).total_seconds(), "ECS pull to stop"
    run = [s for s in spans if s.clock == CONTAINER]
    if run:
        return (run[-1].end - run[0].start).total_seconds(), "container run (Fargate adds image pull and start)"
    return None, ""


def build(store: ResultStore, dag_id: str, run_id: str, args: Any) -> tuple[list[TryReport], PriceTable]:
    """Every try of the run with its phases and cost, the most expensive (then longest) first."""
    prices = PriceTable.load()
    base = Platform(region=getattr(store.s3.meta, "region_name", None) or "us-east-1")  # boto3's region
    reports = []
    for task_try in store.run_tries(dag_id, run_id):
        spans = phases_of(task_try, _timeline(store, task_try), _ecs_times(store, task_try))
        cost, note = cost_of(task_try, spans, prices, base, args)
        reports.append(TryReport(task_try, spans, cost, note))
    reports.sort(key=_dominance, reverse=True)
    return reports, prices


def _timeline(store: ResultStore, task_try: TaskTry) -> Timeline | None:
    if TIMINGS_FILE not in task_try.files:
        return None
    body = store.read(task_try.layout.timings_key)
    try:
        return Timeline.from_json(body) if body else None
    except InvalidRequest:
        return None  # unreadable timings: the phases S3 alone allows


def _ecs_times(store: ResultStore, task_try: TaskTry) -> EcsTimes | None:
    if ECS_TIMES_FILE not in task_try.files:
        return None
    body = store.read(task_try.layout.ecs_times_key)
    try:
        return EcsTimes.from_dict(json.loads(body)) if body else None
    except (ValueError, InvalidRequest):
        return None


def _dominance(report: TryReport) -> tuple[Decimal, float]:
    return (report.cost.total if report.cost else Decimal(-1), report.total_seconds)


def phase_totals(reports: list[TryReport]) -> dict[str, float]:
    """Seconds per phase over every try, largest first: what dominates the run."""
    totals: dict[str, float] = {}
    for report in reports:
        for span in report.spans:
            totals[span.phase] = totals.get(span.phase, 0.0) + span.seconds
    return dict(sorted(totals.items(), key=lambda item: item[1], reverse=True))


def on_aws(reports: list[TryReport]) -> bool:
    return any(r.usage and r.usage.ecs for r in reports)


def cmd_report(store: ResultStore, args: argparse.Namespace, out: TextIO) -> int:
    reports, prices = build(store, args.dag_id, args.run_id, args)
    total = run_cost(r.cost for r in reports if r.cost)
    if args.chart:
        from airlaunch.cli.chart import write_chart

        write_chart(args.chart, f"{args.dag_id}/{args.run_id}", reports)
    if args.json:
        json_out(_document(args, reports, prices, total), out)
        return EXIT_OK
    rows = [_row(r) for r in reports]
    headers = ["TASK", "MAP", "TRY", "STATE", "LAUNCH", "STARTUP", "CODE", "UPLOAD", "END", "TOTAL"]
    headers += ["CPU-S", "PEAK MEM", "MEM LIMIT", "COST", "DOMINANT"]
    table(headers, rows, out, right=headers[4:14])
    for line in _summary(args, reports, prices, total):
        out.write(line + "\n")
    if args.chart:
        out.write(f"chart: {args.chart}\n")
    return EXIT_OK


def _row(report: TryReport) -> list[Any]:
    identity = report.task_try.identity
    measured = report.usage.resources if report.usage else None

    def seconds(phases: tuple[str, ...] | str) -> str | None:
        value = report.seconds(phases)
        return None if value is None else f"{value:.2f}"

    return [
        identity.task_id,
        identity.map_index if identity.map_index >= 0 else None,
        identity.try_number,
        f"{report.task_try.state} (cached)"
        if report.task_try.status and report.task_try.status.cached_from
        else report.task_try.state,
        seconds(LAUNCH_PHASES),
        seconds("startup"),
        seconds(("code", "run")),
        seconds("upload"),
        seconds(END_PHASES),
        f"{report.total_seconds:.2f}" if report.spans else None,
        f"{measured.cpu_seconds:.2f}" if measured and measured.cpu_seconds is not None else None,
        human_bytes(measured.memory_peak_bytes) if measured else None,
        _limit(report),
        money(report.cost.total) if report.cost else None,
        report.dominant,
    ]


def _limit(report: TryReport) -> str | None:
    measured = report.usage.resources if report.usage else None
    if measured is None or measured.memory_limit_hit is None:
        return None
    if measured.oom_kills:
        return "OOM-KILLED"
    return "HIT" if measured.memory_limit_hit else "ok"


def _summary(args: Any, reports: list[TryReport], prices: PriceTable, total: Decimal) -> list[str]:
    totals = phase_totals(reports)
    overall = sum(totals.values()) or 1.0
    shares = ", ".join(
        f"{phase} {seconds / overall:.0%} ({human_duration(seconds)})" for phase, seconds in totals.items()
    )
    lines = [f"{len(reports)} tries; time by phase, largest first: {shares or 'none recorded'}"]
    platforms = {r.cost.platform for r in reports if r.cost}
    if platforms:
        kinds = (f"{p.region}, {p.architecture}, {'Fargate Spot' if p.spot else 'on demand'}" for p in platforms)
        where = " / ".join(sorted(kinds))
        verb = "costs about" if on_aws(reports) else "would cost about"
        lines.append(
            f"this run {verb} {money(total)} on Fargate ({where}; an estimate from prices of {prices.date}, "
            f"{prices.sources['fargate']})"
        )
    unpriced = sorted({r.cost_note for r in reports if r.cost is None})
    lines += [f"no cost for some tries: {note}" for note in unpriced]
    lines.append(
        "clocks: airflow, finish on Airflow's; invoke from Airflow's to the launcher's; launch from the launcher's to "
        "the platform's; create on the platform's; startup, code and upload on the container's; notify from the "
        "container's to Airflow's; ECS phases on ECS's (without timings.json, launch runs from S3's LastModified of "
        "params.yaml, whole seconds). Locally every clock is this machine's."
    )
    return lines


def _document(args: Any, reports: list[TryReport], prices: PriceTable, total: Decimal) -> dict[str, Any]:
    return {
        "dag_id": args.dag_id,
        "run_id": args.run_id,
        "estimate": {
            "total_cost": float(total),
            "currency": prices.currency,
            "on_aws": on_aws(reports),
            "prices_date": prices.date,
            "prices_source": prices.sources["fargate"],
        },
        "phase_totals": {phase: round(seconds, 3) for phase, seconds in phase_totals(reports).items()},
        "tries": [r.to_dict() for r in reports],
    }
