"""The triggerer's and the launcher's AWS clients keep their connections to a server that closes the rest.

LocalStack's gateway (hypercorn) answers ``Connection: close`` unless the request says ``Connection: keep-alive``
(localstack/localstack#6557); the trigger's status reads, log parts, timings.json and the status queue's receives
then each opened a TCP connection of their own (docs/benchmarks.md, "The triggerer"). The server here does what
LocalStack does; the connections are counted by the client's port, no timing involved.
"""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest
from aiobotocore.session import get_session
from aiohttp import web
from botocore.exceptions import ClientError

from airlaunch.launcher import handler as launcher_handler
from airlaunch.providers.airflow.hooks.launcher import aread, shared_client
from airlaunch.providers.airflow.triggers import status_notifications

MISSING = b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>none</Message></Error>'


async def _localstack_like(ports: list[int]) -> web.AppRunner:
    """A server that, as LocalStack's gateway, closes the connection after each answer unless asked to keep it."""

    async def handle(request: web.Request) -> web.Response:
        ports.append(request.transport.get_extra_info("peername")[1] if request.transport else -1)
        response = web.Response(status=404, body=MISSING, content_type="application/xml")
        if request.headers.get("Connection", "").lower() != "keep-alive":
            response.force_close()
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


class S3Hook:
    """What the triggerer's loop asks of an Amazon provider hook, with a real aiobotocore client behind it."""

    client_type = "s3"
    aws_conn_id = "keep_alive_test"
    _region_name = "us-east-1"

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    async def get_async_conn(self) -> Any:
        return get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )


def test_the_trigger_s_s3_reads_share_one_connection() -> None:
    """Five status reads on the loop's shared client: one TCP connection (five before: one each)."""
    ports: list[int] = []

    async def main() -> list[bytes | None]:
        runner = await _localstack_like(ports)
        try:
            port = runner.addresses[0][1]
            s3 = await shared_client(S3Hook(f"http://127.0.0.1:{port}"))  # type: ignore[arg-type]
            return [await aread(s3, "bucket", f"runs/d/r/t/{i}/1/status.json") for i in range(5)]
        finally:
            await runner.cleanup()

    assert asyncio.run(main()) == [None] * 5
    assert len(ports) == 5 and len(set(ports)) == 1, ports


def test_the_status_listener_s_client_keeps_its_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """The status queue's long polls and deletes go out on a client that asks to keep its connection."""
    registered: list[tuple[str, Any]] = []

    class Sqs:
        meta = SimpleNamespace(
            events=SimpleNamespace(register=lambda event, handler, **_: registered.append((event, handler)))
        )

        async def __aenter__(self) -> Sqs:
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

        async def receive_message(self, **_: Any) -> Any:
            raise RuntimeError("the test ends here")

    class SqsHook:
        def __init__(self, **_: Any) -> None:
            pass

        async def get_async_conn(self) -> Sqs:
            return Sqs()

    monkeypatch.setattr(status_notifications, "SqsHook", SqsHook)

    async def main() -> None:
        source = status_notifications.receive_written_keys("http://sqs/queue", None, None, lambda _: True)
        with pytest.raises(RuntimeError, match="the test ends here"):
            await anext(source)

    asyncio.run(main())
    assert [event for event, _ in registered] == ["before-send"]
    request = SimpleNamespace(headers={})
    registered[0][1](request=request)
    assert request.headers == {"Connection": "keep-alive"}


def test_the_launcher_s_s3_client_keeps_its_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """The launcher's own S3 client (boto3, as the Lambda builds it) asks to keep its connection too: its reads
    and writes of a launch share one (three before: one each)."""
    ports: list[int] = []

    class LocalStackLike(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            ports.append(self.client_address[1])
            self.send_response(404)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(MISSING)))
            if self.headers.get("Connection", "").lower() != "keep-alive":
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(MISSING)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), LocalStackLike)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setattr(launcher_handler, "make_backend", lambda settings: SimpleNamespace(name="docker"))
    launcher_handler.get_launcher.cache_clear()
    try:
        s3 = launcher_handler.get_launcher().s3
        for i in range(3):
            with pytest.raises(ClientError, match="NoSuchKey"):
                s3.get_object(Bucket="bucket", Key=f"runs/d/r/t/{i}/1/status.json")
    finally:
        launcher_handler.get_launcher.cache_clear()
        server.shutdown()
    assert len(ports) == 3 and len(set(ports)) == 1, ports
