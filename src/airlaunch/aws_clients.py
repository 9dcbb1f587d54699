"""The botocore client configuration that the Airflow side's and the deploy tool's AWS clients start from.

Throttling (ECS RunTask, Lambda Invoke at a large fan-out, CloudFormation while a stack changes) is
retried with client-side rate limiting instead of failing the call. Not for the task runtime, which
loads botocore only after its SIGTERM handler is set and configures its own retries.
"""

from __future__ import annotations

from typing import Any

from botocore.config import Config

ADAPTIVE_RETRIES = Config(retries={"mode": "adaptive", "max_attempts": 10})


def ask_keep_alive(request: Any, **_: Any) -> None:
    """A ``before-send`` handler: the request asks the server to keep its connection (``Connection: keep-alive``).

    LocalStack's gateway (hypercorn, as the embedded stack runs it) answers ``Connection: close`` to every
    request that does not ask for keep-alive explicitly (``set_close_connection_header``, its workaround for
    localstack/localstack#6557), so a client that does not ask opens a TCP connection for each request: in the
    triggerer that was about 6 % of its busy samples (connect, close, the event loop's socket bookkeeping) for
    the status reads, log parts, timings.json and the status queue's receives and deletes (docs/benchmarks.md).
    HTTP/1.1 keeps connections by default, so AWS's endpoints answer the same with or without the header. Added
    after signing (``before-send``), so the header is never part of a signature a proxy could break."""
    if "Connection" not in request.headers:
        request.headers["Connection"] = "keep-alive"


def keep_connections(client: Any) -> Any:
    """``client`` (botocore or aiobotocore) with ``ask_keep_alive`` on every request it sends; returned for chaining.
    Registered once per client (botocore ignores a second registration under the same unique id)."""
    client.meta.events.register("before-send", ask_keep_alive, unique_id="airlaunch-keep-alive")
    return client
