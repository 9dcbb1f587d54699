"""The emulator's HTTP server: moto's every AWS API on one port, with ECS's limits in front of it.

A request is, in order:

1. under ``/_airlaunch/ecs/``: the control API (airlaunch.stack.ecs_emulator.control);
2. an ECS API call (``X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Action>``): throttled
   per its category's token bucket (ECS's error shape, JSON 1.1: HTTP 400
   ``{"__type": "ThrottlingException", "message": "Rate exceeded"}``, the wording of "Request
   throttling for the Amazon ECS API"). A RunTask launching Fargate tasks further passes
   Fargate's RunTask and task-launch rates and the concurrent vCPU quota (a ``failures[]``
   answer starting nothing), and a RunTask repeating a ``clientToken`` answers with that
   token's tasks. RunTask calls are served one at a time, so that the quota holds under
   concurrent calls;
3. everything else, and every call that passed: moto, unchanged.

The account is ``--account-id`` (moto reads ``MOTO_ACCOUNT_ID``, set by :meth:`EcsEmulator.start`);
the Region is the one the request was signed for.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import boto3
from botocore.config import Config
from moto.ecs.models import ecs_backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from airlaunch.stack.ecs_emulator import moto_hooks
from airlaunch.stack.ecs_emulator.calls import CallCounter
from airlaunch.stack.ecs_emulator.clock import Scheduler
from airlaunch.stack.ecs_emulator.containers import SecretStore, task_vcpus
from airlaunch.stack.ecs_emulator.control import PREFIX, ControlApi, StartResponse
from airlaunch.stack.ecs_emulator.events import EventDelivery
from airlaunch.stack.ecs_emulator.fleet import Fleet
from airlaunch.stack.ecs_emulator.limits import POOLS, Limits
from airlaunch.stack.ecs_emulator.runner import LABEL
from airlaunch.stack.ecs_emulator.schedules import Schedules
from airlaunch.stack.ecs_emulator.settings import Settings

log = logging.getLogger(__name__)

ECS_TARGET = "AmazonEC2ContainerServiceV20141113."
_REGION = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")
_TOKENS_KEPT = 10_000  # clientTokens remembered (ECS keeps them for a while; the oldest are forgotten)


class _QuietHandler(MotoRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug('"%s" %s %s', self.requestline, code, size)


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("Content-Length", str(len(data))),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        ],
    )
    return [data]


def throttled(start_response: StartResponse) -> list[bytes]:
    return _json(start_response, "400 Bad Request", {"__type": "ThrottlingException", "message": "Rate exceeded"})


class Gateway:
    """The WSGI application: control API, ECS's limits, then moto; every ECS call counted as answered."""

    def __init__(
        self, settings: Settings, limits: Limits, fleet: Fleet, control: ControlApi, calls: CallCounter
    ) -> None:
        self._settings = settings
        self._limits = limits
        self._fleet = fleet
        self._control = control
        self._calls = calls
        self._moto = DomainDispatcherApplication(create_backend_app)
        self._run_task_lock = threading.Lock()
        self._tokens: OrderedDict[str, list[str]] = OrderedDict()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith(PREFIX):
            return self._control(environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(ECS_TARGET):
            return self._moto(environ, start_response)
        action = target[len(ECS_TARGET) :]
        match = _REGION.search(environ.get("HTTP_AUTHORIZATION", ""))
        region = match.group(1) if match else "us-east-1"
        if not self._limits.admit_call(region, action):
            self._calls.record(action, "throttled")
            return throttled(start_response)
        if action != "RunTask":
            return self._moto(environ, self._counting(action, start_response))
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        with self._run_task_lock:
            return self._run_task(environ, start_response, region, body)

    def _run_task(
        self, environ: dict[str, Any], start_response: StartResponse, region: str, body: bytes
    ) -> Iterable[bytes]:
        try:
            request = json.loads(body or b"{}")
            backend = ecs_backends[self._settings.account_id][region]
            definition = backend.describe_task_definition(request["taskDefinition"])
        except Exception:  # a malformed call or an unknown task definition: moto answers it as ECS would
            return self._moto(environ, self._counting("RunTask", start_response))
        token = request.get("clientToken")
        if token and token in self._tokens:
            with moto_hooks.reusing(self._tokens[token]):
                return self._moto(environ, self._counting("RunTask", start_response))
        pool = _fargate_pool(request, backend)
        if pool is not None:
            count = int(request.get("count") or 1)
            if not self._limits.admit_fargate_launch(region, pool, count):
                self._calls.record("RunTask", "throttled")
                return throttled(start_response)
            wanted = count * task_vcpus(request.get("overrides"), definition)
            in_use = self._fleet.vcpus_in_use(region, pool)
            failure = self._limits.placement_failure(pool, wanted, in_use)
            self._calls.vcpus(in_use if failure else in_use + wanted)
            if failure:
                self._calls.record("RunTask", "failures")
                return _json(
                    start_response, "200 OK", {"tasks": [], "failures": [{"arn": definition.arn, "reason": failure}]}
                )
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"] = status
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        with moto_hooks.deferring_starts():
            answer = b"".join(self._moto(environ, capture))
        self._calls.record("RunTask", "ok" if str(captured.get("status", "")).startswith("2") else "error")
        if token and str(captured.get("status", "")).startswith("200"):
            arns = [t["taskArn"] for t in json.loads(answer).get("tasks", [])]
            self._tokens[token] = arns
            while len(self._tokens) > _TOKENS_KEPT:
                self._tokens.popitem(last=False)
        return [answer]

    def _counting(self, action: str, start_response: StartResponse) -> StartResponse:
        """``start_response`` that first counts the call by the status moto answers it with."""

        def counted(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            self._calls.record(action, "ok" if status.startswith("2") else "error")
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        return counted


def _fargate_pool(request: dict[str, Any], backend: Any) -> str | None:
    """FARGATE or FARGATE_SPOT for a RunTask that launches Fargate tasks (moto's choice: the strategy's first
    provider, else the launch type, else the cluster's default strategy); None for EC2 or EXTERNAL."""
    launch_type = request.get("launchType")
    strategy = request.get("capacityProviderStrategy")
    if not launch_type and not strategy:
        try:
            strategy = backend._get_cluster(request.get("cluster", "default")).default_capacity_provider_strategy
        except Exception:  # an unknown cluster: moto will say so
            return None
    if strategy:
        provider = strategy[0].get("capacityProvider")
        return provider if provider in POOLS else None
    return "FARGATE" if launch_type == "FARGATE" else None


class EcsEmulator:
    """moto on ``host:port`` with its Fargate tasks run on Docker. ``start()`` returns once it serves."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._parts: dict[str, Any] = {}

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://{self.settings.host}:{self._server.server_port}"

    def start(self) -> EcsEmulator:
        s = self.settings
        os.environ["MOTO_ACCOUNT_ID"] = s.account_id
        self._server = make_server(s.host, s.port, app=None, threaded=True, request_handler=_QuietHandler)  # type: ignore[arg-type]
        s3 = boto3.client(
            "s3",
            endpoint_url=s.s3_endpoint or self.url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 5}),
        )
        scheduler = Scheduler()
        events = EventDelivery(
            scheduler,
            s.lambda_endpoints,
            s.lambda_retries,
            s.lambda_retry_delays,
            s.lambda_max_event_age,
            s.lambda_concurrency,
        )
        fleet = Fleet(
            scheduler, events, s3, s.task_env, s.stop_timeout, s.phase_seconds, s.start_workers, s.shutdown_grace,
            SecretStore(s.secrets_endpoint or self.url),
        )  # fmt: skip
        limits = Limits(s.limits)
        schedules = Schedules(scheduler, events, s.account_id, s.schedule_speedup)
        self._parts = {"scheduler": scheduler, "events": events, "fleet": fleet, "schedules": schedules}
        fleet.start()
        moto_hooks.install(fleet)
        calls = CallCounter()
        control = ControlApi(fleet, limits, self._info, calls)
        self._server.app = Gateway(s, limits, fleet, control, calls)
        self._thread = threading.Thread(target=self._server.serve_forever, name="ecs-emulator-http", daemon=True)
        self._thread.start()
        log.info("ECS emulator serving on %s (account %s)", self.url, s.account_id)
        return self

    def _info(self) -> dict[str, Any]:
        events: EventDelivery = self._parts["events"]
        return {
            "account": self.settings.account_id,
            "url": self.url,
            "delivered": events.delivered,
            "dropped": events.dropped,
            "scheduled_fired": self._parts["schedules"].fired,
            "container_label": f"{LABEL}={self._parts['fleet'].runner.owner}",  # on every task container
        }

    def stop(self) -> None:
        """Stop serving, then stop and remove every container this emulator started."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        moto_hooks.uninstall()
        if "fleet" in self._parts:
            self._parts["fleet"].close()
            self._parts["events"].close()
            self._parts["scheduler"].close()
        self._parts = {}
        self._server = None

    def __enter__(self) -> EcsEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
