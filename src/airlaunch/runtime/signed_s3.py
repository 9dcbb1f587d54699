"""The runtime's S3 without botocore: GET and PUT of one object, signed with Signature Version 4, over http.client.

Why: botocore's import and one S3 client (its service model, endpoint rules, retry and config
machinery) cost a task container about 0.19 CPU-s, six times a bare Python start, for the five or so
requests a try makes (docs/benchmarks.md, "The runtime's start in the task image"). This client does
only what those requests need, with the standard library: ``hmac``/``hashlib`` for the signature
(AWS General Reference, "Signature Version 4 signing process"; checked against botocore's own signer
in tests/unit/test_signed_s3.py) and ``http.client`` for HTTP, one kept-alive connection.

What it guarantees, as botocore's client did for the runtime:

* ``get_object``/``put_object`` take and return what botocore's do for these calls (``Body`` a stream),
  and an error is raised as ``S3Error`` with botocore's ``response`` shape, so airlaunch.aws_errors
  reads it as it reads a ClientError (``NoSuchKey``, a bare ``404``, ``AccessDenied``...).
* A bucket in another region than the one signed for is followed there once (S3 names it in
  ``x-amz-bucket-region``), as botocore's S3 region redirector does.
* Every request is retried as botocore's standard mode does: up to ``max_attempts`` in all on a
  connection error, a timeout, a 5xx, a 429 or a throttling code, with exponential backoff and jitter
  (at most 20 s between tries); a connection the server closed is opened again.
* The payload is signed (``x-amz-content-sha256``), so S3 refuses a body changed on the way.
* Credentials come from ``credentials()`` before each request, so a session renewed meanwhile
  (airlaunch.runtime.credentials.RunSessionKeys) is used from the next request on.

It is used only where everything it needs is given in the environment (``endpoint_for``); anything
else (another partition, FIPS or dual-stack endpoints, credentials from a profile or the instance)
keeps botocore's client (airlaunch.runtime.run_files).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import io
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

MAX_BACKOFF_SECONDS = 20.0  # botocore's standard retry mode
_RETRIED_CODES = frozenset({"Throttling", "ThrottlingException", "SlowDown", "RequestTimeout", "InternalError"})
_DNS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")  # no dots: the wildcard certificate covers one label
# Environment settings only botocore implements: with any of them set, botocore's client is used.
BOTOCORE_ONLY = (
    "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "AWS_CONFIG_FILE",
)  # fmt: skip


@dataclass(frozen=True)
class Keys:
    """One set of credentials: access key, secret key and, for a session, its token."""

    access_key: str
    secret_key: str
    token: str = ""


class S3Error(Exception):
    """S3's error answer, with botocore's ClientError ``response`` shape (airlaunch.aws_errors reads it)."""

    def __init__(self, status: int, code: str, message: str, operation: str) -> None:
        super().__init__(f"An error occurred ({code}) when calling the {operation} operation: {message}")
        self.response: dict[str, Any] = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }


@dataclass(frozen=True)
class Endpoint:
    """Where S3 answers and how it is addressed: ``url``, the signing ``region``, path or virtual-hosted style."""

    url: str
    region: str
    path_style: bool


def endpoint_for(environ: Mapping[str, str]) -> Endpoint | None:
    """The S3 endpoint the environment gives, or None where botocore must decide.

    ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (LocalStack, moto) as given, path style; else AWS's
    regional endpoint of ``AWS_REGION``/``AWS_DEFAULT_REGION`` in the aws or aws-cn partition. None with
    a setting only botocore implements (``BOTOCORE_ONLY``: FIPS or dual-stack endpoints, a proxy) or a
    config file (``~/.aws/config`` may name endpoints, addressing styles, credentials)."""
    if any(environ.get(name) for name in BOTOCORE_ONLY) or os.path.exists(os.path.expanduser("~/.aws/config")):
        return None
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or ""
    url = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    if url:
        return Endpoint(url.rstrip("/"), region or "us-east-1", path_style=True)
    if not re.fullmatch(r"(us|eu|ap|sa|ca|me|af|il|mx)(-gov)?-[a-z]+-\d|cn-[a-z]+-\d", region):
        return None  # no region, or a partition of its own (ISO regions): botocore's endpoint rules know it
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return Endpoint(f"https://s3.{region}.{suffix}", region, path_style=False)


class SignedS3:
    """An S3 client for GetObject and PutObject, signed with SigV4; safe to share between threads."""

    def __init__(
        self,
        endpoint: Endpoint,
        credentials: Callable[[], Keys],
        *,
        max_attempts: int = 8,
        connect_timeout: float = 5,
        read_timeout: float = 60,
        ca_bundle: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        parts = urlsplit(endpoint.url)
        self.scheme, self.host, self.base_path = parts.scheme, parts.netloc, parts.path.rstrip("/")
        self.path_style = endpoint.path_style
        self.region = endpoint.region
        self.credentials = credentials
        self.max_attempts = max_attempts
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.ca_bundle = ca_bundle
        self.clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()  # one request at a time on the one connection
        self._connection: Any = None
        self._followed = False  # a region redirect was followed (once at most)

    # -- the two calls -----------------------------------------------------------------------
    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # botocore's parameter names
        _, headers, body = self._call("GetObject", "GET", Bucket, Key, b"", {})
        return {"Body": io.BytesIO(body), "ContentType": headers.get("content-type", ""), "ContentLength": len(body)}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str = "") -> dict[str, Any]:
        extra = {"content-type": ContentType} if ContentType else {}
        _, headers, _ = self._call("PutObject", "PUT", Bucket, Key, bytes(Body), extra)
        return {"ETag": headers.get("etag", "")}

    # -- requests ----------------------------------------------------------------------------
    def _call(
        self, operation: str, method: str, bucket: str, key: str, body: bytes, extra: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        """One call, retried as botocore's standard mode retries; S3Error for an error answer."""
        attempt = 0
        while True:
            attempt += 1
            try:
                status, headers, data = self._send(method, bucket, key, body, extra)
            except (OSError, http.client.HTTPException) as exc:  # no connection, a reset, a timeout, a torn answer
                self._close()
                if attempt >= self.max_attempts:
                    raise
                error: BaseException = exc
            else:
                if status < 300:
                    return status, headers, data
                error = error_of(status, data, operation)
                if self._redirected(status, headers.get("x-amz-bucket-region", "")):
                    continue  # at once, to the bucket's own region
                if not _retried(status, error) or attempt >= self.max_attempts:
                    raise error
            time.sleep(random.random() * min(MAX_BACKOFF_SECONDS, 2.0 ** (attempt - 1)))

    def _send(
        self, method: str, bucket: str, key: str, body: bytes, extra: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        host, path = self._address(bucket, key)
        headers = sign(method, host, path, body, {**extra, "content-length": str(len(body))} if method == "PUT"
                       else extra, self.credentials(), self.region, self.clock())  # fmt: skip
        with self._lock:
            connection = self._open()
            connection.request(method, path, body=body if method == "PUT" else None, headers=headers)
            response = connection.getresponse()
            data = response.read()
            if response.will_close:
                self._connection.close()
                self._connection = None
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def _redirected(self, status: int, region: str) -> bool:
        """Follow S3's answer that the bucket is in another region (301, 307 or 400 naming it in
        ``x-amz-bucket-region``), as botocore's S3 region redirector does: sign for that region, and on
        AWS's endpoints send to it. Once: a second answer of the kind is an error."""
        if status not in (301, 307, 400) or not region or region == self.region or self._followed:
            return False
        if self.host.startswith(f"s3.{self.region}."):  # AWS's regional endpoint
            self.host = self.host.replace(f"s3.{self.region}.", f"s3.{region}.", 1)
        self.region, self._followed = region, True
        self._close()
        return True

    def _address(self, bucket: str, key: str) -> tuple[str, str]:
        """The Host and the path: path style on a custom endpoint or for a bucket name with dots, else
        virtual-hosted (``<bucket>.s3.<region>.amazonaws.com``), as botocore addresses them."""
        quoted = quote(key, safe="/~")
        if self.path_style or not _DNS_BUCKET.match(bucket):
            return self.host, f"{self.base_path}/{bucket}/{quoted}"
        return f"{bucket}.{self.host}", f"/{quoted}"

    def _open(self) -> Any:
        """The kept-alive connection, opened when there is none (connect timeout, then the read timeout)."""
        if self._connection is None:
            host = self.host
            if self.scheme == "https":
                import ssl

                context = ssl.create_default_context(cafile=self.ca_bundle or default_ca_bundle())
                connection: Any = http.client.HTTPSConnection(host, timeout=self.connect_timeout, context=context)
            else:
                connection = http.client.HTTPConnection(host, timeout=self.connect_timeout)
            connection.connect()
            connection.sock.settimeout(self.read_timeout)
            self._connection = connection
        return self._connection

    def _close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


def default_ca_bundle() -> str | None:
    """The CA bundle botocore verifies S3's certificate with: certifi's where it is installed, else the one
    botocore ships (found without importing botocore); None, the system's, where neither is."""
    try:
        import certifi

        return str(certifi.where())
    except ImportError:
        pass
    import importlib.util

    spec = importlib.util.find_spec("botocore")
    shipped = os.path.join(os.path.dirname(spec.origin), "cacert.pem") if spec and spec.origin else ""
    return shipped if shipped and os.path.exists(shipped) else None


def _retried(status: int, error: S3Error) -> bool:
    code = error.response["Error"]["Code"]
    return status >= 500 or status == 429 or code in _RETRIED_CODES


def error_of(status: int, data: bytes, operation: str) -> S3Error:
    """S3's XML error (``<Error><Code>...``), or the bare status where there is no body (a HEAD, some 404s)."""
    text = data.decode("utf-8", "replace")
    code = re.search(r"<Code>([^<]*)</Code>", text)
    message = re.search(r"<Message>([^<]*)</Message>", text)
    return S3Error(status, code.group(1) if code else str(status), message.group(1) if message else "", operation)


def sign(
    method: str, host: str, path: str, body: bytes, headers: Mapping[str, str], keys: Keys, region: str, now: datetime
) -> dict[str, str]:
    """The request's headers with its SigV4 signature (service s3, signed payload, no query string).

    ``path`` is sent as given and must already be URI-encoded (S3 encodes each key once)."""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    signed = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
    signed.update({"host": host, "x-amz-date": amz_date, "x-amz-content-sha256": hashlib.sha256(body).hexdigest()})
    if keys.token:
        signed["x-amz-security-token"] = keys.token
    names = sorted(signed)
    canonical = "\n".join(
        [method, path, "", *(f"{name}:{signed[name]}" for name in names), "", ";".join(names),
         signed["x-amz-content-sha256"]]
    )  # fmt: skip
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = f"AWS4{keys.secret_key}".encode()
    for part in (amz_date[:8], region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    authorization = f"AWS4-HMAC-SHA256 Credential={keys.access_key}/{scope}, SignedHeaders={';'.join(names)}, "
    return {**signed, "authorization": authorization + f"Signature={signature}"}
