"""The runtime's own S3 client (airlaunch.runtime.signed_s3): signed as botocore signs, reading and writing
objects on a real HTTP S3 (moto's server), its errors read as botocore's, retried as botocore's standard
mode retries; and a whole runtime on it that never imports botocore."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from airlaunch.aws_errors import error_code, is_missing
from airlaunch.protocol import ENV_BUCKET, ENV_PREFIX, STATUS_FILE, Status
from airlaunch.runtime import signed_s3
from airlaunch.runtime.entrypoint import TaskRun, parse_args
from airlaunch.runtime.settings import RuntimeSettings
from airlaunch.runtime.signed_s3 import Endpoint, Keys, S3Error, SignedS3, endpoint_for, sign
from tests.moto_server import moto_in_process

NOW = datetime(2026, 12, 6, 1, 2, 3, tzinfo=UTC)
KEYS = Keys("ASIAEXAMPLE", "secret/with+chars", "a-session-token")
BUCKET = "signed-s3"


@pytest.mark.parametrize(
    ("method", "key", "body", "headers"),
    [
        ("GET", "runs/d/r/t/-1/1/params.yaml", b"", {}),
        ("PUT", "runs/d/manual__2026-01-01T00:00:00+00:00/t/3/1/log/000001", b"line\n",
         {"content-type": "text/plain; charset=utf-8", "content-length": "5"}),
        ("PUT", "runs/a key with spaces/ünï/~x=y&z.json", b"{}", {"content-type": "application/json"}),
    ],
)  # fmt: skip
def test_the_signature_is_botocores(
    method: str, key: str, body: bytes, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same request, same time, same keys: the Authorization header botocore's S3 signer computes."""
    endpoint = Endpoint("https://s3.eu-west-1.amazonaws.com", "eu-west-1", path_style=False)
    client = SignedS3(endpoint, lambda: KEYS)
    host, path = client._address("my-bucket", key)
    ours = sign(method, host, path, body, headers, KEYS, "eu-west-1", NOW)

    request = AWSRequest(method=method, url=f"https://{host}{path}", data=body, headers=dict(headers))
    signer = S3SigV4Auth(Credentials(KEYS.access_key, KEYS.secret_key, KEYS.token), "s3", "eu-west-1")
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))
    signer.add_auth(request)
    assert ours["authorization"] == request.headers["Authorization"]
    assert ours["x-amz-content-sha256"] == request.headers["X-Amz-Content-SHA256"]


def test_endpoints_from_the_environment_and_where_botocore_decides() -> None:
    assert endpoint_for({"AWS_ENDPOINT_URL": "http://127.0.0.1:4566/"}) == Endpoint(
        "http://127.0.0.1:4566", "us-east-1", path_style=True
    )
    assert endpoint_for({"AWS_REGION": "eu-central-1"}) == Endpoint(
        "https://s3.eu-central-1.amazonaws.com", "eu-central-1", path_style=False
    )
    assert endpoint_for({"AWS_DEFAULT_REGION": "cn-north-1"}) == Endpoint(
        "https://s3.cn-north-1.amazonaws.com.cn", "cn-north-1", path_style=False
    )
    assert endpoint_for({}) is None, "no region: botocore's resolution"
    assert endpoint_for({"AWS_REGION": "us-iso-east-1"}) is None, "a partition of its own"
    assert endpoint_for({"AWS_REGION": "us-east-1", "AWS_USE_FIPS_ENDPOINT": "true"}) is None
    assert endpoint_for({"AWS_REGION": "us-east-1", "HTTPS_PROXY": "http://proxy:3128"}) is None


def test_a_bucket_with_dots_is_addressed_by_path_on_aws() -> None:
    client = SignedS3(Endpoint("https://s3.us-east-1.amazonaws.com", "us-east-1", path_style=False), lambda: KEYS)
    assert client._address("plain-bucket", "a b") == ("plain-bucket.s3.us-east-1.amazonaws.com", "/a%20b")
    assert client._address("my.bucket", "k") == ("s3.us-east-1.amazonaws.com", "/my.bucket/k")


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_in_process() as url:
        boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        ).create_bucket(Bucket=BUCKET)
        yield url


def test_objects_written_and_read_back_through_a_real_http_s3(moto_url: str) -> None:
    client = SignedS3(Endpoint(moto_url, "us-east-1", path_style=True), lambda: KEYS)
    client.put_object(Bucket=BUCKET, Key="runs/x/status.json", Body=b'{"ok": 1}', ContentType="application/json")
    client.put_object(Bucket=BUCKET, Key="runs/x/log/000000", Body=b"")
    got = client.get_object(Bucket=BUCKET, Key="runs/x/status.json")
    assert got["Body"].read() == b'{"ok": 1}' and got["ContentType"] == "application/json"
    assert client.get_object(Bucket=BUCKET, Key="runs/x/log/000000")["Body"].read() == b""
    with pytest.raises(S3Error) as missing:
        client.get_object(Bucket=BUCKET, Key="runs/x/stop.json")
    assert is_missing(missing.value) and error_code(missing.value) == "NoSuchKey"


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Answers each request with the next of ``answers`` (status, S3 error code); records the paths."""

    answers: list[tuple[int, str]] = []
    seen: list[str] = []
    scopes: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.scopes.append(self.headers["Authorization"].split("/")[2])  # Credential=<key>/<date>/<region>/s3/...
        status, code = self.answers.pop(0)
        body = f"<Error><Code>{code}</Code><Message>m</Message></Error>".encode() if code else b"fine"
        self.send_response(status)
        if code == "PermanentRedirect":
            self.send_header("x-amz-bucket-region", "eu-west-1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> Iterator[SignedS3]:
    monkeypatch.setattr(signed_s3.time, "sleep", lambda seconds: None)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Flaky.seen.clear()
    _Flaky.scopes.clear()
    try:
        yield SignedS3(Endpoint(f"http://127.0.0.1:{server.server_port}", "us-east-1", True), lambda: KEYS)
    finally:
        server.shutdown()


def test_throttling_and_5xx_are_retried_until_an_answer(flaky: SignedS3) -> None:
    _Flaky.answers[:] = [(503, "SlowDown"), (500, "InternalError"), (429, ""), (200, "")]
    assert flaky.get_object(Bucket="b", Key="k")["Body"].read() == b"fine"
    assert len(_Flaky.seen) == 4


def test_a_denial_is_not_retried_and_reads_as_botocores(flaky: SignedS3) -> None:
    _Flaky.answers[:] = [(403, "AccessDenied")]
    with pytest.raises(S3Error) as denied:
        flaky.get_object(Bucket="b", Key="k")
    assert error_code(denied.value) == "AccessDenied" and len(_Flaky.seen) == 1
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_retries_end_after_max_attempts(flaky: SignedS3) -> None:
    _Flaky.answers[:] = [(503, "SlowDown")] * 8
    with pytest.raises(S3Error):
        flaky.get_object(Bucket="b", Key="k")
    assert len(_Flaky.seen) == 8


def test_the_runtime_uses_it_when_the_environment_gives_keys_and_endpoint(moto_url: str, tmp_path: Path) -> None:
    prefix = "runs/d/r/inproc/-1/1/"
    boto3.client(
        "s3", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    ).put_object(Bucket=BUCKET, Key=prefix + "params.yaml", Body=b"params: {}\nrun: {}\n")
    environ = {ENV_BUCKET: BUCKET, ENV_PREFIX: prefix, "AWS_ENDPOINT_URL": moto_url, "AWS_REGION": "us-east-1",
               "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}  # fmt: skip
    run = TaskRun(parse_args(["--", "true"]), RuntimeSettings(work_dir=str(tmp_path)), environ)
    assert isinstance(run.s3, SignedS3)
    assert run.run() == 0
    status = run.s3.get_object(Bucket=BUCKET, Key=prefix + STATUS_FILE)["Body"].read()
    assert Status.from_json(status).exit_code == 0


def test_a_whole_runtime_run_never_imports_botocore(moto_url: str, tmp_path: Path) -> None:
    """``python -X importtime`` names every module the runtime imported, to its exit."""
    prefix = "runs/d/r/whole/-1/1/"
    s3 = boto3.client(
        "s3", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    s3.put_object(Bucket=BUCKET, Key=prefix + "params.yaml", Body=b"params: {}\nrun: {}\n")
    env = {**os.environ, ENV_BUCKET: BUCKET, ENV_PREFIX: prefix, "AWS_ENDPOINT_URL": moto_url,
           "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
           "AIRLAUNCH_WORK_DIR": str(tmp_path)}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "airlaunch.runtime", "--", "true"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert "airlaunch" in imported and not imported & {"botocore", "boto3", "urllib3", "yaml"}
    assert Status.from_json(s3.get_object(Bucket=BUCKET, Key=prefix + STATUS_FILE)["Body"].read()).exit_code == 0


def test_s3s_certificate_is_verified_with_the_bundle_botocore_uses() -> None:
    import botocore.httpsession

    assert signed_s3.default_ca_bundle() == botocore.httpsession.get_cert_path(True)


def test_a_bucket_in_another_region_is_followed_there_once(flaky: SignedS3) -> None:
    """S3 names the bucket's region (x-amz-bucket-region): signed for it from then on, as botocore's redirector does."""
    _Flaky.answers[:] = [(301, "PermanentRedirect"), (200, "")]
    assert flaky.get_object(Bucket="b", Key="k")["Body"].read() == b"fine"
    assert _Flaky.scopes == ["us-east-1", "eu-west-1"] and flaky.region == "eu-west-1"
    _Flaky.answers[:] = [(301, "PermanentRedirect")]
    with pytest.raises(S3Error):
        flaky.get_object(Bucket="b", Key="k")
    assert len(_Flaky.seen) == 3, "followed once, not again"


def test_on_aws_a_redirect_sends_to_the_buckets_regional_endpoint() -> None:
    client = SignedS3(Endpoint("https://s3.us-east-1.amazonaws.com", "us-east-1", path_style=False), lambda: KEYS)
    assert client._redirected(301, "eu-west-1")
    assert client._address("bkt", "k") == ("bkt.s3.eu-west-1.amazonaws.com", "/k") and client.region == "eu-west-1"
