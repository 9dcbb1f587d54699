"""`make demo` and `make trigger`: run a DAG through Airflow's REST API as a user would.

``python -m airlaunch.demo`` starts the embedded stack (LocalStack, the launcher Lambda,
Airflow's four processes), triggers the reference pipeline, shows its progress, prints
where its results are in S3 and what they say, and leaves everything running
(``make down`` stops it). ``python -m airlaunch.demo trigger DAG [--conf JSON]`` does the
same for any DAG on an Airflow that is already running.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from airlaunch import cli
from airlaunch.airflow_rest import AirflowApiError, AirflowRest
from airlaunch.cli.settings import CliSettings
from airlaunch.protocol import run_prefix
from airlaunch.stack import Stack, StackConfig, say

REFERENCE_DAG = "airlaunch_reference"


class Progress:
    """Prints one line whenever a task instance changes state."""

    def __init__(self) -> None:
        self.seen: dict[str, str | None] = {}
        self.start = time.monotonic()

    def __call__(self, run: dict[str, Any], task_instances: list[dict[str, Any]]) -> None:
        for ti in task_instances:
            name = ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")
            if self.seen.get(name, "") != ti["state"]:
                self.seen[name] = ti["state"]
                print(f"  {time.monotonic() - self.start:6.1f}s  {name:<24} {ti['state'] or 'waiting'}", flush=True)


def trigger_and_watch(cfg: StackConfig, api: AirflowRest, dag_id: str, conf: dict[str, Any]) -> int:
    api.wait_for_dag(dag_id)
    api.unpause(dag_id)
    run_id = api.trigger(dag_id, conf)
    say(f"Triggered {dag_id} run {run_id}; progress:")
    run = api.wait_for_run(dag_id, run_id, timeout=1800, progress=Progress())
    prefix = run_prefix(CliSettings().key_prefix, dag_id, run_id)
    say(f"Run {run['state']}. Its files are under s3://{cfg.bucket}/{prefix} :")
    os.environ.update(cfg.client_env())
    cli.main(["tasks", dag_id, run_id])
    for ti in api.task_instances(dag_id, run_id):
        try:
            value = api.xcom(dag_id, run_id, ti["task_id"], map_index=ti["map_index"])
        except AirflowApiError:
            continue
        print(f"  {ti['task_id']:<16} returned {json.dumps(value)}")
    say("Where the seconds went, and what it would cost on Fargate (airlaunch report):")
    cli.main(["report", dag_id, run_id])
    print(
        f"\nOpen the Airflow UI at {cfg.airflow_url} (user admin, password in "
        f"{cfg.airflow_home / 'simple_auth_manager_passwords.json.generated'}).\n"
        f"Browse results:  eval $(.venv/bin/python -m airlaunch.stack env) && .venv/bin/airlaunch runs\n"
        f"Stop everything: make down"
    )
    return 0 if run["state"] == "success" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airlaunch.demo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    trigger = sub.add_parser("trigger", help="trigger a DAG on the running Airflow and watch it")
    trigger.add_argument("dag_id")
    trigger.add_argument("--conf", default="{}", help="the run's conf as JSON")
    args = parser.parse_args(argv)
    cfg = StackConfig()
    try:
        if args.command == "trigger":
            conf = json.loads(args.conf)
            if not cfg.airflow_home.joinpath("simple_auth_manager_passwords.json.generated").exists():
                raise AirflowApiError("no Airflow of the embedded stack found: run `make demo` first")
            return trigger_and_watch(cfg, AirflowRest.for_home(cfg.airflow_url, cfg.airflow_home), args.dag_id, conf)
        started = time.monotonic()
        Stack(cfg).up(with_airflow=True)
        say(f"The stack is up with the {cfg.backend} backend ({time.monotonic() - started:.0f} s)")
        api = AirflowRest.for_home(cfg.airflow_url, cfg.airflow_home)
        return trigger_and_watch(cfg, api, REFERENCE_DAG, {})
    except (AirflowApiError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
