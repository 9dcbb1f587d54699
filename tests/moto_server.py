"""Servers of a test's own on free loopback ports (never the lead's LocalStack ports): moto, or any local
server that answers HTTP (``local_server``)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def local_server(command: list[str], log: Path, probe: str, seconds: float) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` (its output in ``log``) until ``probe``, a URL of it, answers, within ``seconds``;
    yield the process, and stop it afterwards (SIGTERM, then SIGKILL after 10 s)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + seconds
        while True:
            try:
                urllib.request.urlopen(probe, timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{command[0]} did not start; see {log}:\n{log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a busy machine: it had its chance to stop cleanly
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def moto_server(log: Path) -> Iterator[str]:
    """Start ``moto_server`` on 127.0.0.1 and yield its URL; stop it afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)]
    with local_server(command, log, f"{url}/moto-api/", 30):
        yield url


@contextlib.contextmanager
def moto_in_process() -> Iterator[str]:
    """moto's server in this process (a thread) on a free loopback port: a test can then make a task end as
    Fargate would (``end_task_as_fargate``), which no ECS API call of a client can do."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def end_task_as_fargate(task_arn: str, account: str, region: str, **attrs: Any) -> None:
    """End a task of the in-process moto as Fargate would: STOPPED, with the stop code, reasons and times
    given as moto's attribute names (``stop_code``, ``stopped_reason``, ``started_at``...);
    ``container_reason`` is the essential container's reason, ``image_digest`` the image it ran."""
    from moto.ecs.models import ecs_backends

    cluster = task_arn.split(":task/")[1].split("/")[0]
    task = ecs_backends[account][region].tasks[cluster][task_arn]
    task.last_status, task.desired_status = "STOPPED", "STOPPED"
    container_reason = attrs.pop("container_reason", None)
    if container_reason:
        task.containers[0].reason = container_reason
    image_digest = attrs.pop("image_digest", None)
    if image_digest:
        task.containers[0].image_digest = image_digest
    for name, value in attrs.items():
        setattr(task, name, value)
