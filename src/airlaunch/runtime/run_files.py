"""The try's files in S3, as the runtime reads and writes them: params.yaml in; the log, the results and
status.json out; stop.json, which says who asked for a stop.

What it guarantees:

* One client for everything, made with the run's own session on ECS, else the environment's keys,
  with standard retries on every call: the runtime's own SigV4 client (``signed_s3``) where the
  environment gives the credentials and the endpoint (ECS, Docker), which spares a container
  botocore's import and client (most of its start-up CPU); botocore's client with its default chain
  elsewhere (``s3_client``).
* params.yaml in one GET (boto3's download_file sends a HEAD first and starts a thread pool).
* A write that must not be lost (result.json, the output notebook, log.txt, status.json) is retried
  on top of that for up to ``s3_retry_seconds`` (``persist``): a result or a status.json lost to a
  passing S3 outage would cost a rerun.
* stop.json read as absent when S3 answers 404, and also 403: a run session may read its stop.json
  but not list the bucket, so S3 answers it AccessDenied for a key that is not there.

The entrypoint imports this module only after its SIGTERM handler is set (http.client, and botocore
where it is used, are imported here).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from airlaunch.aws_errors import error_code, is_missing
from airlaunch.protocol import ResultLayout, StopRequest
from airlaunch.runtime.credentials import explicit_keys, run_session
from airlaunch.runtime.signed_s3 import SignedS3, endpoint_for

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
# standard retries (throttling, 5xx, connection errors) on every call; ``persist`` retries on top of that
MAX_ATTEMPTS, CONNECT_TIMEOUT, READ_TIMEOUT = 8, 5, 60


def s3_client(environ: Mapping[str, str]) -> Any:
    """The runtime's S3 client: ``SignedS3`` when the environment gives its credentials and endpoint, else
    botocore's (its default chain: a profile, container or instance credentials...), both retrying alike."""
    endpoint = endpoint_for(environ)
    keys = explicit_keys(environ, endpoint) if endpoint is not None else None
    if endpoint is not None and keys is not None:
        return SignedS3(
            endpoint, keys, max_attempts=MAX_ATTEMPTS, connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
            ca_bundle=environ.get("AWS_CA_BUNDLE") or None,
        )  # fmt: skip
    from botocore.config import Config

    retries = Config(
        retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
        connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
    )  # fmt: skip
    return run_session(environ).create_client("s3", config=retries)


class RunFiles:
    """The files of one try, under its ``layout``."""

    def __init__(self, environ: Mapping[str, str], layout: ResultLayout, retry_seconds: float) -> None:
        self.layout = layout
        self.retry_seconds = retry_seconds
        self.s3 = s3_client(environ)

    def fetch_params(self, path: Path) -> None:
        path.write_bytes(self.s3.get_object(Bucket=self.layout.bucket, Key=self.layout.params_key)["Body"].read())

    def put_file(self, path: Path, key: str, content_type: str) -> None:
        self.s3.put_object(Bucket=self.layout.bucket, Key=key, Body=path.read_bytes(), ContentType=content_type)

    def put_log(self, path: Path) -> None:
        self.put_file(path, self.layout.log_key, TEXT)

    def put_log_part(self, number: int, data: bytes) -> None:
        self.s3.put_object(Bucket=self.layout.bucket, Key=self.layout.log_part_key(number), Body=data, ContentType=TEXT)

    def put_status(self, body: bytes) -> None:
        self.s3.put_object(Bucket=self.layout.bucket, Key=self.layout.status_key, Body=body, ContentType=JSON)

    def read_stop(self) -> StopRequest | None:
        """The try's stop.json, None when there is none (404, or 403 for a session that may not list)."""
        try:
            body = self.s3.get_object(Bucket=self.layout.bucket, Key=self.layout.stop_key)["Body"].read()
        except Exception as exc:  # botocore's ClientError or signed_s3's S3Error: the same response shape
            if is_missing(exc) or error_code(exc) in ("AccessDenied", "403"):
                return None
            raise
        return StopRequest.from_json(body)

    def persist(self, what: str, action: Callable[[], Any]) -> None:
        """Run an S3 write until it succeeds, backing off, for up to ``retry_seconds``."""
        deadline = time.monotonic() + self.retry_seconds
        pause = 0.5
        while True:
            try:
                action()
                return
            except Exception as exc:
                if time.monotonic() + pause > deadline:
                    raise
                sys.stderr.write(f"airlaunch: writing {what} failed ({exc}); retrying in {pause:.1f} s\n")
                time.sleep(pause)
                pause = min(pause * 2, 10.0)
