"""``python -m bench.faults [--only a,b] [--skip c] [--list] [--keep] [--no-docs]`` (``make faults``).

Brings up the embedded stack of AIRLAUNCH_STATE_DIR with the suite's DAGs, runs every scenario
one after another, prints the table, writes docs/faults.md and bench/results/faults-*.json, and
stops the stack again if it started it (``--keep`` leaves it up).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime

from bench.faults import compose, report  # noqa: F401  (compose registers the Celery worker's scenario)
from bench.faults.scenarios import SCENARIOS, Suite, run_one
from bench.faults.stack import FaultStack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=os.environ.get("FAULTS", ""), help="comma-separated scenario names")
    parser.add_argument("--skip", default=os.environ.get("FAULTS_SKIP", ""), help="scenarios not to run")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--keep", action="store_true", default=bool(os.environ.get("FAULTS_KEEP")))
    parser.add_argument("--no-docs", action="store_true", default=os.environ.get("FAULTS_DOCS") == "0")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(SCENARIOS))
        return 0
    names = [n for n in (args.only.split(",") if args.only else SCENARIOS) if n]
    names = [n for n in names if n not in args.skip.split(",")]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"error: unknown scenario(s) {', '.join(unknown)}; --list shows them", file=sys.stderr)
        return 2

    image = os.environ.get("FAULTS_TASK_IMAGE", "airlaunch/reference-tasks:latest")
    stack = FaultStack(image)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    started_at = datetime.now(UTC)
    print(f"==> Fault suite on the embedded stack in {stack.cfg.state_dir} (Airflow {stack.cfg.airflow_url})")
    started = stack.up()
    suite = Suite(stack, float(os.environ.get("FAULTS_SETTLE_SECONDS", "75")))
    rows = []
    try:
        for name in names:
            print(f"==> {name}", flush=True)
            begin = time.monotonic()
            row = run_one(suite, name)
            rows.append(row)
            print(f"    {row.outcome}: {row.message[:160]} ({time.monotonic() - begin:.0f} s)", flush=True)
            for note in row.notes:
                print(f"    {note[:200]}", flush=True)
            for missed in row.missed:
                print(f"    missed: {missed[:200]}", flush=True)
    finally:
        suite.events.close()
        if started and not args.keep:
            print("==> Stopping the suite's stack")
            stack.down()
    print()
    print(report.text_table(rows))
    settings = {"scenarios": names, "task_image": image, "state_dir": str(stack.cfg.state_dir)}
    if not args.no_docs:
        path = report.save(rows, started_at, settings, load_at_start)
        print(f"\n==> {report.DOC.relative_to(report.REPO)} and {path.relative_to(report.REPO)} written")
    return 0 if all(row.outcome in ("pass", "not run") for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
