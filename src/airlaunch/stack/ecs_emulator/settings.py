"""The emulator's settings and the command-line flags that set them (docs/ecs-mode.md lists them)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from airlaunch.stack.ecs_emulator.limits import API_CATEGORIES, LimitSettings, parse_rate

LOCALSTACK_ACCOUNT = "000000000000"  # LocalStack's default account, so that ARNs agree across the two emulators


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port (EcsEmulator.url tells which)
    account_id: str = LOCALSTACK_ACCOUNT
    s3_endpoint: str | None = None  # where environmentFiles are read; None: this emulator's own (moto's) S3
    secrets_endpoint: str | None = None  # where definitions' secrets are read (Secrets Manager, SSM); None: moto's
    lambda_endpoints: dict[str, str] = field(default_factory=dict)  # function name -> URL; "" for any function
    task_env: dict[str, str] = field(default_factory=dict)  # environment every task container gets
    stop_timeout: float = 30.0  # a container's stopTimeout when its definition sets none (ECS: 30 s)
    phase_seconds: float = 0.2  # how long DEACTIVATING/STOPPING/DEPROVISIONING last after an exit
    start_workers: int = 4  # containers being started at once
    shutdown_grace: float = 2.0  # SIGTERM to SIGKILL when the emulator itself stops
    lambda_retries: int = 2  # retries of a function error (Lambda's asynchronous default)
    lambda_retry_delays: tuple[float, ...] = (1.0, 2.0)  # Lambda's: about 1 and 2 minutes
    lambda_max_event_age: float = 300.0  # retries of an unreachable endpoint stop at this age
    lambda_concurrency: int = 4  # invocations in flight at once
    schedule_speedup: float = 1.0  # scheduled rules fire this many times as often as their rate says
    limits: LimitSettings = field(default_factory=LimitSettings)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _endpoint(text: str) -> tuple[str, str]:
    if "=" in text and not text.split("=", 1)[0].startswith("http"):
        return _key_value(text)
    return "", text


def _api_limit(text: str) -> tuple[str, tuple[float, float]]:
    category, rate = _key_value(text)
    if category not in API_CATEGORIES:
        raise argparse.ArgumentTypeError(f"unknown API category {category!r}; known: {', '.join(API_CATEGORIES)}")
    return category, parse_rate(rate)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m airlaunch.stack.ecs_emulator",
        description="A Fargate stand-in for the local stack: moto's AWS APIs, whose ECS tasks run on Docker.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="port to serve on (0: a free one, printed at start)")
    p.add_argument("--account-id", default=LOCALSTACK_ACCOUNT, help="the emulated account (LocalStack's by default)")
    p.add_argument(
        "--s3-endpoint",
        help="S3 for environmentFiles, e.g. LocalStack's http://127.0.0.1:4566 (default: this emulator's own S3)",
    )
    p.add_argument(
        "--secrets-endpoint",
        help="Secrets Manager and SSM for task definitions' secrets, e.g. LocalStack's (default: this emulator's own)",
    )
    p.add_argument(
        "--lambda-endpoint",
        action="append",
        type=_endpoint,
        default=[],
        metavar="[FUNCTION=]URL",
        help="where a Lambda target is invoked (RIE: .../2015-03-31/functions/function/invocations); repeatable",
    )
    p.add_argument(
        "--task-env",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="environment every task container gets (under the task's own); repeatable",
    )
    p.add_argument(
        "--stop-timeout", type=float, default=30.0, help="stopTimeout of a container that sets none (ECS: 30)"
    )
    p.add_argument("--phase-seconds", type=float, default=0.2, help="length of each short state after an exit")
    p.add_argument("--start-workers", type=int, default=4, help="containers started at once")
    p.add_argument("--shutdown-grace", type=float, default=2.0, help="SIGTERM to SIGKILL when the emulator stops")
    p.add_argument("--lambda-retries", type=int, default=2, help="retries of a function error (Lambda: 2)")
    p.add_argument("--lambda-retry-delays", default="1,2", help="seconds before each retry (Lambda: about 60,120)")
    p.add_argument("--lambda-max-event-age", type=float, default=300.0, help="give up an unreachable endpoint after")
    p.add_argument("--lambda-concurrency", type=int, default=4, help="invocations in flight at once")
    p.add_argument(
        "--schedule-speedup", type=float, default=1.0, help="scheduled rules fire this many times as often (1: as AWS)"
    )
    p.add_argument("--no-throttling", action="store_true", help="no ECS API or Fargate rate throttling")
    p.add_argument(
        "--api-limit",
        action="append",
        type=_api_limit,
        default=[],
        metavar="CATEGORY=BURST/RATE",
        help=f"an ECS API category's bucket; categories: {', '.join(API_CATEGORIES)}",
    )
    p.add_argument(
        "--fargate-launch-rate",
        type=parse_rate,
        default=(100, 20),
        metavar="BURST/RATE",
        help="Fargate tasks launched (each of On-Demand and Spot); AWS: 100/20",
    )
    p.add_argument(
        "--fargate-run-task-rate",
        type=parse_rate,
        default=(20, 20),
        metavar="BURST/RATE",
        help="RunTask calls launching Fargate tasks; AWS: 20/20",
    )
    p.add_argument(
        "--fargate-vcpu-quota", type=float, default=6, help="concurrent On-Demand vCPUs (AWS default 6; 0: none)"
    )
    p.add_argument(
        "--fargate-spot-vcpu-quota", type=float, default=6, help="concurrent Spot vCPUs (AWS default 6; 0: none)"
    )
    p.add_argument("--log-level", default="INFO")
    return p


def from_args(args: argparse.Namespace) -> Settings:
    return Settings(
        host=args.host,
        port=args.port,
        account_id=args.account_id,
        s3_endpoint=args.s3_endpoint,
        secrets_endpoint=args.secrets_endpoint,
        lambda_endpoints=dict(args.lambda_endpoint),
        task_env=dict(args.task_env),
        stop_timeout=args.stop_timeout,
        phase_seconds=args.phase_seconds,
        start_workers=args.start_workers,
        shutdown_grace=args.shutdown_grace,
        lambda_retries=args.lambda_retries,
        lambda_retry_delays=tuple(float(x) for x in args.lambda_retry_delays.split(",") if x.strip()),
        lambda_max_event_age=args.lambda_max_event_age,
        lambda_concurrency=args.lambda_concurrency,
        schedule_speedup=args.schedule_speedup,
        limits=LimitSettings(
            throttling=not args.no_throttling,
            api=dict(args.api_limit),
            fargate_launch=args.fargate_launch_rate,
            fargate_run_task=args.fargate_run_task_rate,
            vcpu_quota=args.fargate_vcpu_quota,
            spot_vcpu_quota=args.fargate_spot_vcpu_quota,
        ),
    )
