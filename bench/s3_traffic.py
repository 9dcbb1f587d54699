"""S3 requests a try, by file and by caller: what LocalStack's log cannot say (it names the operation only).

``S3Traffic`` listens on the loopback interface (a raw ``AF_PACKET`` socket: root or CAP_NET_RAW) for the
HTTP requests sent to LocalStack's port and the status lines it answers with, pairing them per connection.
Every process of the embedded stack that talks to S3 does it over plain HTTP on 127.0.0.1 (the task
containers share the host's network), so nothing has to be reconfigured to be counted. Each request is
classed by the file of the try it names (``params.yaml``, ``status.json``, ``log/NNNNNN`` as ``log part``...),
its method (a ranged GET is ``GET range``), the answer's final status, and who sent it, from its User-Agent:
``aiobotocore`` is the triggerer, ``Boto3`` the launcher, any other client the task runtime. The
benchmark counts only the requests for its own run's keys (``breakdown``'s ``under``), so that a test or a
CLI using the same LocalStack meanwhile is not counted. SQS calls (a
POST to ``/`` with an ``X-Amz-Target``) are counted apart, and LocalStack's own checks (``/_localstack/``)
not at all.

``breakdown(requests, tries)`` turns what was captured into requests a try per (caller, method, file,
status). Without the right to open the socket, ``S3Traffic.start`` raises ``PermissionError``; the benchmark
then leaves the breakdown out.
"""

from __future__ import annotations

import re
import select
import socket
import struct
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from typing import Any

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # on loopback each packet is seen twice, as sent and as received: keep one
_REQUEST_LINE = re.compile(rb"^(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP/1\.[01]\r\n")
_STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3})")
_PART = re.compile(r"/log/\d+$")


@dataclass(frozen=True)
class Request:
    """One HTTP request to LocalStack and its answer's status (0: none seen)."""

    method: str
    path: str
    agent: str
    ranged: bool
    target: str  # X-Amz-Target (SQS's JSON protocol), "" for S3
    status: int = 0

    @property
    def caller(self) -> str:
        if "aiobotocore" in self.agent:
            return "triggerer"
        if self.agent.startswith("Boto3/"):
            return "launcher"  # or another boto3 client: ``breakdown(under=...)`` keeps the run's own keys
        return "runtime"

    @property
    def file(self) -> str:
        """The try's file the request names (``log part`` for the running log's parts), or what else it is."""
        path = self.path.split("?", 1)[0]
        if self.target or (self.method == "POST" and path == "/"):
            return "sqs"
        if path.startswith("/_localstack/"):
            return "localstack"  # its health and init checks, not S3
        if "?" in self.path and self.path.split("/", 3)[-1].startswith("?"):
            return "bucket listing"
        if _PART.search(path):
            return "log part"
        return path.rsplit("/", 1)[-1] or "/"

    @property
    def kind(self) -> str:
        return f"{self.method} range" if self.ranged else self.method


def _header(head: bytes, name: bytes) -> str:
    match = re.search(rb"\r\n" + name + rb":\s*([^\r\n]*)", head, re.IGNORECASE)
    return match.group(1).decode(errors="replace") if match else ""


class S3Traffic:
    """Captures the requests to ``port`` on the loopback interface from ``start`` to ``stop``."""

    def __init__(self, port: int, interface: str = "lo") -> None:
        self.port = port
        self.interface = interface
        self.requests: list[Request] = []
        self._pending: dict[int, deque[Request]] = defaultdict(deque)  # client port -> requests awaiting answers
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def start(self) -> S3Traffic:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(ETH_P_ALL))  # PermissionError if not root
        sock.bind((self.interface, 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
        self._socket = sock
        self._thread = threading.Thread(target=self._capture, name="s3-traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Request]:
        """Stop capturing; every request seen, answered or not."""
        time.sleep(0.2)  # the last answers are on their way
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._socket is not None:
            self._socket.close()
        for waiting in self._pending.values():
            self.requests.extend(waiting)
        self._pending.clear()
        return self.requests

    def __enter__(self) -> S3Traffic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _capture(self) -> None:
        assert self._socket is not None
        while not self._stopping.is_set():
            ready, _, _ = select.select([self._socket], [], [], 0.2)
            if not ready:
                continue
            frame, address = self._socket.recvfrom(1 << 16)
            if address[2] == PACKET_OUTGOING:
                self.segment(frame[14:])  # past the (loopback's zeroed) Ethernet header

    def segment(self, packet: bytes) -> None:
        """One IPv4 packet: a request line to the port, or a status line from it."""
        if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != socket.IPPROTO_TCP:
            return
        ip_header = (packet[0] & 0x0F) * 4
        tcp = packet[ip_header:]
        if len(tcp) < 20:
            return
        source, destination = struct.unpack("!HH", tcp[:4])
        payload = tcp[(tcp[12] >> 4) * 4 :]
        if not payload:
            return
        if destination == self.port:
            self._request(source, payload)
        elif source == self.port:
            self._answer(destination, payload)

    def _request(self, client: int, payload: bytes) -> None:
        match = _REQUEST_LINE.match(payload)
        if not match:
            return  # a body, or the rest of a header
        head = payload.split(b"\r\n\r\n", 1)[0]
        request = Request(
            method=match.group(1).decode(),
            path=match.group(2).decode(errors="replace"),
            agent=_header(head, b"User-Agent"),
            ranged=bool(_header(head, b"Range")),
            target=_header(head, b"X-Amz-Target"),
        )
        self._pending[client].append(request)

    def _answer(self, client: int, payload: bytes) -> None:
        match = _STATUS_LINE.match(payload)
        waiting = self._pending.get(client)
        if not match or not waiting or match.group(1).startswith(b"1"):
            return  # not a status line, nothing asked, or an interim answer (100 Continue): the final one follows
        request = waiting.popleft()
        self.requests.append(
            Request(request.method, request.path, request.agent, request.ranged, request.target, int(match.group(1)))
        )


def breakdown(requests: list[Request], tries: int, under: str = "") -> dict[str, Any]:
    """S3 requests a try: in all, by caller, and by (caller, method, file, status), most first; SQS apart.
    With ``under`` (e.g. ``/<dag_id>/``), only the requests for keys whose path holds it count: another
    session's requests to the same LocalStack are left out (counted as ``elsewhere``)."""
    s3 = [r for r in requests if r.file not in ("sqs", "localstack")]
    ours = [r for r in s3 if under in r.path]
    elsewhere = len(s3) - len(ours)
    s3 = ours
    rows = Counter(f"{r.caller} {r.kind} {r.file} {r.status or '?'}" for r in s3)
    return {
        "tries": tries,
        "under": under,
        "elsewhere": elsewhere,
        "per_try": len(s3) / tries,
        "by_caller": {k: n / tries for k, n in Counter(r.caller for r in s3).most_common()},
        "by_request": {k: n / tries for k, n in rows.most_common()},
        "sqs_calls": sum(r.file == "sqs" for r in requests),
    }


def text(result: dict[str, Any]) -> str:
    lines = [
        f"S3 requests a try, by who and what ({result['tries']} tries, keys under {result.get('under') or '/'}): "
        f"{result['per_try']:.2f} a try; {result.get('elsewhere', 0)} requests for other keys left out"
    ]
    lines += [f"  {caller:<10} {n:6.2f}" for caller, n in result["by_caller"].items()]
    lines += [f"    {row:<48} {n:6.2f}" for row, n in result["by_request"].items()]
    return "\n".join(lines)
