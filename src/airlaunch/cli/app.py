"""``airlaunch``: what task runs left in S3, for a terminal or a script.

The CLI reads S3 only, in the layout of :class:`airlaunch.protocol.ResultLayout`
(``<prefix>/<dag_id>/<run_id>/<task_id>/<map_index>/<try>/``); it never calls the launcher, so
it works the same against LocalStack and AWS with nothing but read access to the bucket.
This module is the command line; the store (store.py), the commands (commands.py, report.py)
and the rendering (render.py, chart.py) have a module each.

Exit codes: 0 done; 1 an AWS problem (bucket missing, no credentials, endpoint down, access
denied) or, for ``wait``, a failed task; 2 a usage error or something that does not exist;
124 ``wait`` or ``log --follow`` ran out of time; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from airlaunch.cli.cache import add_cache_commands
from airlaunch.cli.commands import cmd_log, cmd_notebook, cmd_runs, cmd_show, cmd_tasks, cmd_wait
from airlaunch.cli.report import cmd_report
from airlaunch.cli.secret import add_secret_commands
from airlaunch.cli.settings import CliSettings
from airlaunch.cli.store import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CliError, ResultStore
from airlaunch.cost import ARCHITECTURES
from airlaunch.protocol import InvalidRequest, validate_id


def add_common_args(parser: argparse.ArgumentParser, settings: CliSettings, *, with_defaults: bool) -> None:
    """The flags every command takes. Subcommands get them without defaults, so they go before or after it."""

    def default(value: Any) -> Any:
        return value if with_defaults else argparse.SUPPRESS

    parser.add_argument("--bucket", default=default(settings.bucket), help="S3 bucket [AIRLAUNCH_BUCKET]")
    parser.add_argument("--prefix", default=default(settings.key_prefix), help="key prefix [AIRLAUNCH_KEY_PREFIX]")
    parser.add_argument("--endpoint-url", default=default(None), help="S3 endpoint [AWS_ENDPOINT_URL]")
    parser.add_argument("--json", action="store_true", default=default(False), help="print JSON, for scripts")


def _positive_of(what: str) -> Callable[[str], float]:
    """An argparse type: a number above 0, refused as "not a positive ``what``" otherwise."""

    def positive(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = 0
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not a positive {what}")
        return value

    return positive


_positive = _positive_of("number of seconds")
_positive_number = _positive_of("number")


def build_parser(settings: CliSettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airlaunch", description="Read what airlaunch task runs left in S3.")

    add_common_args(parser, settings, with_defaults=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def task_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("dag_id", metavar="DAG")
        p.add_argument("run_id", metavar="RUN")
        p.add_argument("task_id", metavar="TASK")
        p.add_argument("--map-index", type=int, default=-1, help="map index of a mapped task (default: -1)")
        p.add_argument("--try", dest="try_number", type=int, help="try number (default: the latest)")

    def polling_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--timeout", type=_positive, help="give up after this many seconds (exit 124)")
        p.add_argument(
            "--interval",
            type=_positive,
            default=settings.poll_seconds,
            help="seconds between looks at S3 [AIRLAUNCH_CLI_POLL_SECONDS; %(default)s]",
        )

    p = sub.add_parser("runs", help="list DAG runs with counts of task tries by state")
    add_common_args(p, settings, with_defaults=False)
    p.add_argument("--dag", help="only the runs of this DAG")
    p.set_defaults(handler=cmd_runs)
    p = sub.add_parser("tasks", help="every task try of one run")
    add_common_args(p, settings, with_defaults=False)
    p.add_argument("dag_id", metavar="DAG")
    p.add_argument("run_id", metavar="RUN")
    p.set_defaults(handler=cmd_tasks)
    p = sub.add_parser("show", help="status and result.json of one task try")
    add_common_args(p, settings, with_defaults=False)
    task_args(p)
    p.set_defaults(handler=cmd_show)
    p = sub.add_parser("log", help="print log.txt of one task try")
    add_common_args(p, settings, with_defaults=False)
    task_args(p)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the task ends")
    polling_args(p)
    p.set_defaults(handler=cmd_log)
    p = sub.add_parser("notebook", help="download output.ipynb of one task try")
    add_common_args(p, settings, with_defaults=False)
    task_args(p)
    p.add_argument("-o", "--output", help="file to write, '-' for stdout (default: TASK.ipynb)")
    p.set_defaults(handler=cmd_notebook)
    p = sub.add_parser("wait", help="wait until every task of a run has finished")
    add_common_args(p, settings, with_defaults=False)
    p.add_argument("dag_id", metavar="DAG")
    p.add_argument("run_id", metavar="RUN")
    polling_args(p)
    p.set_defaults(handler=cmd_wait)
    p = sub.add_parser("report", help="phases, CPU, memory and cost of every try of a run, with a timeline chart")
    add_common_args(p, settings, with_defaults=False)
    p.add_argument("dag_id", metavar="DAG")
    p.add_argument("run_id", metavar="RUN")
    p.add_argument("--chart", metavar="FILE", help="also write the run's timeline to FILE.html or FILE.svg")
    p.add_argument("--region", help="price as this AWS region (default: the try's, else boto3's, else us-east-1)")
    p.add_argument("--arch", choices=ARCHITECTURES, help="price as this architecture (default: the container's)")
    p.add_argument("--spot", action="store_true", help="price as Fargate Spot")
    p.add_argument("--cpu", type=_positive_number, help="vCPU of tries that recorded no size (default 0.5)")
    p.add_argument("--memory-mib", type=int, help="memory of tries that recorded no size (default 512)")
    p.set_defaults(handler=cmd_report)
    add_cache_commands(sub, lambda p: add_common_args(p, settings, with_defaults=False))
    add_secret_commands(sub, lambda p: add_common_args(p, settings, with_defaults=False))
    return parser


def explain(exc: Exception, store: ResultStore) -> CliError:
    """An AWS error as a sentence naming the problem and the fix."""
    if isinstance(exc, NoCredentialsError):
        return CliError("no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", 1)
    if isinstance(exc, EndpointConnectionError):
        return CliError(f"cannot reach S3: {exc} (check --endpoint-url / AWS_ENDPOINT_URL)", 1)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        if code == "NoSuchBucket":
            return CliError(f"bucket {store.bucket!r} does not exist (set --bucket or AIRLAUNCH_BUCKET)", 1)
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
            return CliError(f"access to {store.uri()} refused: {code}: {error.get('Message', '')}".rstrip(": "), 1)
        return CliError(f"S3 error on {store.uri()}: {code}: {error.get('Message', '')}", 1)
    return CliError(f"AWS error: {exc}", 1)


def run(argv: Sequence[str] | None = None) -> int:
    settings = CliSettings()
    args = build_parser(settings).parse_args(argv)
    s3 = boto3.session.Session().client(  # a session of its own: every call reads the environment afresh
        "s3",
        endpoint_url=args.endpoint_url or None,
        config=Config(max_pool_connections=32, retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5),
    )
    store = ResultStore(s3, args.bucket, args.prefix)
    out = sys.stdout
    try:
        for name in ("dag_id", "run_id", "task_id", "dag"):
            if getattr(args, name, None) is not None:
                validate_id(getattr(args, name), name)
        if getattr(args, "try_number", None) is not None and args.try_number < 0:
            raise CliError("--try must be >= 0")
        try:
            return int(args.handler(store, args, out))
        except (BotoCoreError, ClientError) as exc:
            raise explain(exc, store) from exc
    except InvalidRequest as exc:
        return _fail(str(exc), EXIT_USAGE)
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:  # `airlaunch runs | head`
        with contextlib.suppress(OSError, ValueError):  # no second error when Python flushes stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"airlaunch: error: {message}\n")
    return code
