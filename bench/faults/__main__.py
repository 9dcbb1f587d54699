"""``python -m bench.faults [--backends docker,ecs] [--only a,b] [--skip c] [--list] [--keep] [--no-docs]``
(``make faults [BACKEND=docker|ecs]``).

Brings up the embedded stack of AIRLAUNCH_STATE_DIR with the suite's DAGs and, for each backend in turn
(the launcher's Docker backend, then the stack's ECS mode), runs every scenario that applies to it, one
after another; then prints the table (a column group per backend), writes docs/faults.md and
bench/results/faults-*.json, and stops the stack again if it started it (``--keep`` leaves it up; a stack
that was running gets its launcher's backend back).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime

from bench.faults import report
from bench.faults.catalogue import BACKENDS, BY_NAME, FAULTS
from bench.faults.stack import FaultStack
from bench.faults.suite import Row, Suite


def run_one(suite: Suite, name: str) -> Row:
    """Run a scenario; a scenario that breaks is an 'error' row with what broke."""
    started = time.monotonic()
    try:
        return BY_NAME[name].run_on(suite)
    except Exception as exc:  # one broken scenario must not hide the others
        row = Row(name, name, "", outcome="error", message=f"{type(exc).__name__}: {exc}", backend=suite.backend)
        row.seconds = round(time.monotonic() - started, 1)
        return row


def _run(suite: Suite, names: list[str]) -> list[Row]:
    rows = []
    for name in names:
        print(f"==> [{suite.backend}] {name}", flush=True)
        begin = time.monotonic()
        row = run_one(suite, name)
        rows.append(row)
        print(f"    {row.outcome}: {row.message[:160]} ({time.monotonic() - begin:.0f} s)", flush=True)
        for note in row.notes:
            print(f"    {note[:200]}", flush=True)
        for missed in row.missed:
            print(f"    missed: {missed[:200]}", flush=True)
        for late in row.late:
            print(f"    late: {late[:200]}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=os.environ.get("FAULTS", ""), help="comma-separated scenario names")
    parser.add_argument("--skip", default=os.environ.get("FAULTS_SKIP", ""), help="scenarios not to run")
    parser.add_argument(
        "--backends", default=os.environ.get("FAULTS_BACKENDS") or ",".join(BACKENDS), help="docker, ecs or both"
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios (where they run, which are tests)")
    parser.add_argument("--keep", action="store_true", default=bool(os.environ.get("FAULTS_KEEP")))
    parser.add_argument("--no-docs", action="store_true", default=os.environ.get("FAULTS_DOCS") == "0")
    args = parser.parse_args(argv)
    if args.list:
        for fault in FAULTS:
            where = " ".join(b for b in BACKENDS if fault.runs_on(b))
            print(f"{fault.name:24} {where:11} {'test' if fault.test is True else ''}")
        return 0
    names = [n for n in (args.only.split(",") if args.only else BY_NAME) if n]
    names = [n for n in names if n not in args.skip.split(",")]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [n for n in names if n not in BY_NAME] + [b for b in backends if b not in BACKENDS]
    if unknown:
        print(f"error: unknown scenario(s) or backend(s) {', '.join(unknown)}; --list shows them", file=sys.stderr)
        return 2

    image = os.environ.get("FAULTS_TASK_IMAGE", "airlaunch/reference-tasks:latest")
    stack = FaultStack.for_make_faults(image)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    started_at = datetime.now(UTC)
    print(f"==> Fault suite on the embedded stack in {stack.cfg.state_dir} (Airflow {stack.cfg.airflow_url})")
    was_running = stack.running_backend()
    started: list[str] = []
    settle = float(os.environ.get("FAULTS_SETTLE_SECONDS", "75"))
    rows: list[Row] = []
    try:
        for backend in backends:
            applicable = [n for n in names if BY_NAME[n].runs_on(backend)]
            if not applicable:
                continue
            print(f"==> The launcher's {backend} backend: {len(applicable)} scenario(s)", flush=True)
            started += [name for name in stack.up(backend) if name not in started]
            suite = Suite(stack, settle, backend)
            try:
                rows += _run(suite, applicable)
            finally:
                suite.events.close()
    finally:
        if args.keep or not started or was_running:
            if was_running and stack.running_backend() != was_running:
                print(f"==> Giving the suite's stack its {was_running} backend back")
                stack.up(was_running)
        else:
            print("==> Stopping the suite's stack")
            stack.down()
    print()
    print(report.text_table(rows))
    settings = {"scenarios": names, "backends": backends, "task_image": image, "state_dir": str(stack.cfg.state_dir)}
    if not args.no_docs and rows:
        path = report.save(rows, started_at, settings, load_at_start)
        print(f"\n==> {report.DOC.relative_to(report.REPO)} and {path.relative_to(report.REPO)} written")
    return 0 if all(row.outcome in ("pass", "not run") for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
