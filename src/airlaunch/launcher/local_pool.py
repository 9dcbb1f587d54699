"""Local stand-in for Lambda's concurrency, used only off AWS (see lambda/entrypoint.sh).

AWS's Runtime Interface Emulator serves one invocation at a time and crashes on a second
concurrent one (``ReserveFailed: AlreadyReserved``, then a nil-pointer panic), while Airflow
invokes the launcher from many tasks at once. So, like Lambda, run several execution
environments: N emulators, each with its own awslambdaric runtime, behind one endpoint that
hands every invocation to an idle one (and queues when all are busy, as a Lambda with
reserved concurrency N would throttle). Standard library, airlaunch.protocol and the launcher's
settings only.

``GET /health`` tells a busy pool from a hung one: with invocations in flight or waiting it is
healthy while they make progress (one ended within HANG_SECONDS); idle, it pings an execution
environment. A supervisor that pinged through the queue instead restarted a launcher that was
only busy (200 launches queued), failing the launches in flight.

Its settings (the address, how many emulators, their ports): ``LocalPoolSettings`` in
airlaunch.launcher.settings.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from airlaunch.launcher.settings import LocalPoolSettings
from airlaunch.protocol import CallFailed, InvalidRequest, PingCall, read_reply

log = logging.getLogger("airlaunch.local_pool")

HANG_SECONDS = 60.0  # invocations in flight and none ended for this long: the pool is hung
PING = PingCall().to_payload()
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
_FORWARDED_HEADERS = ("X-Amz-Function-Error", "X-Amz-Log-Result", "X-Amz-Executed-Version", "Content-Type")


class Environment:
    """One emulator plus runtime; restarted when it dies."""

    def __init__(self, index: int, port_base: int, handler: str) -> None:
        self.port = port_base + index
        self.command = [
            "aws-lambda-rie",
            "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}",
            "--runtime-api-address", f"127.0.0.1:{port_base + 100 + index}",
            sys.executable, "-m", "awslambdaric", handler,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def ensure_running(self) -> None:
        if self.process is None or self.process.poll() is not None:
            if self.process is not None:
                log.warning(
                    "execution environment on port %d exited (%s); restarting", self.port, self.process.returncode
                )
            self.process = subprocess.Popen(self.command)

    def invoke(self, path: str, body: bytes, timeout: float) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            headers = {h: v for h in _FORWARDED_HEADERS if (v := response.getheader(h)) is not None}
            return response.status, headers, response.read()
        finally:
            connection.close()


class Pool:
    def __init__(self, environments: list[Environment], timeout: float) -> None:
        self.environments = environments
        self.idle: queue.Queue[Environment] = queue.Queue()
        self.timeout = timeout
        self.lock = threading.Lock()
        self.pending = 0  # invocations in flight or waiting for an environment
        self.last_progress = time.monotonic()  # when one last ended, or the pool went from idle to busy
        for environment in environments:
            environment.ensure_running()
            self.idle.put(environment)

    def invoke(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            if self.pending == 0:
                self.last_progress = time.monotonic()
            self.pending += 1
        try:
            return self._invoke(path, body)
        finally:
            with self.lock:
                self.pending -= 1
                self.last_progress = time.monotonic()

    def health(self) -> tuple[bool, dict[str, object]]:
        """Busy and progressing, or idle and answering a ping: see the module's docstring."""
        with self.lock:
            pending, stalled = self.pending, time.monotonic() - self.last_progress
        state: dict[str, object] = {"pending": pending, "environments": len(self.environments)}
        if pending:
            state["seconds_since_progress"] = round(stalled, 1)
            return stalled < HANG_SECONDS, state
        status, headers, payload = self.invoke(INVOKE_PATH, PING)
        try:
            state["ping"] = read_reply(PingCall(), payload, headers.get("X-Amz-Function-Error")).to_dict()
        except (CallFailed, InvalidRequest) as exc:
            state["ping_failed"] = str(exc)[:300]
            return False, state
        return status == 200, state

    def _invoke(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        environment = self.idle.get()
        try:
            for attempt in range(50):  # an emulator that is still starting refuses connections
                try:
                    return environment.invoke(path, body, self.timeout)
                except ConnectionRefusedError:
                    environment.ensure_running()
                    time.sleep(0.1 * (attempt + 1) if attempt < 10 else 1)
            error = b'{"errorMessage": "execution environment did not start", "errorType": "PoolError"}'
            return 502, {"X-Amz-Function-Error": "Unhandled", "Content-Type": "application/json"}, error
        finally:
            self.idle.put(environment)


def serve(address: str, pool: Pool) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = -1  # one write per response: unbuffered headers + body meet delayed ACKs (+40 ms)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.answer(*pool.invoke(self.path, body))

        def do_GET(self) -> None:
            if self.path != "/health":
                self.answer(404, {"Content-Type": "application/json"}, b'{"errorMessage": "not found"}')
                return
            ok, state = pool.health()
            self.answer(200 if ok else 503, {"Content-Type": "application/json"}, json.dumps(state).encode())

        def answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            log.debug(format, *args)

    host, port = address.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    log.info("local Lambda endpoint on %s with %d execution environments", address, len(pool.environments))
    server.serve_forever()


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = argv[0] if argv else "airlaunch.launcher.handler.handler"
    settings = LocalPoolSettings()
    environments = [Environment(i, settings.port_base, handler) for i in range(settings.concurrency)]
    pool = Pool(environments, settings.function_timeout)
    threading.excepthook = lambda args: log.error("handler thread failed: %s", args.exc_value)
    if settings.backend == "docker":
        from airlaunch.launcher.docker_events import start_watching

        start_watching()
    serve(settings.address, pool)


if __name__ == "__main__":
    main(sys.argv[1:])
