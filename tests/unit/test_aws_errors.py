"""One meaning of an AWS error for every side: a missing key, or a failure that passes by itself;
and one reading of status.json."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
    SSLError,
)

from airlaunch.aws_errors import error_code, is_missing, is_transient
from airlaunch.launcher.backends.base import LaunchError
from airlaunch.protocol import InvalidRequest, ResultLayout, Status, StopReason, TaskState, status_of


def _error(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize(
    ("code", "status", "missing"),
    [("NoSuchKey", 404, True), ("404", 404, True), ("AccessDenied", 403, False), ("NoSuchBucket", 404, False)],
)
def test_only_a_missing_key_is_missing(code: str, status: int, missing: bool) -> None:
    assert is_missing(_error(code, status)) is missing
    assert error_code(_error(code, status)) == code and error_code(ValueError("x")) == ""


@pytest.mark.parametrize(
    "error",
    [
        _error("ThrottlingException"),  # ECS, Lambda
        _error("ServerException", 500),  # ECS's own 5xx
        _error("TooManyRequestsException", 429),  # Lambda throttled
        _error("RequestLimitExceeded"),
        _error("SlowDown", 503),  # S3
        _error("Whatever", 502),
        _error("Whatever", 429),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:9"),
        SSLError(endpoint_url="https://x", error="reset"),
        ConnectionRefusedError(),
        TimeoutError(),
        LaunchError("no capacity just now", retryable=True),
    ],
    ids=repr,
)
def test_errors_that_pass_by_themselves_are_transient(error: BaseException) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        _error("AccessDeniedException", 403),
        _error("ClusterNotFoundException"),
        _error("NoSuchKey", 404),
        ParamValidationError(report="bad"),  # botocore refused to send it
        NoCredentialsError(),
        LaunchError("no such image"),
        ValueError("access denied"),
    ],
    ids=repr,
)
def test_other_errors_are_not(error: BaseException) -> None:
    assert not is_transient(error)


def test_status_json_reads_as_none_until_written_and_a_broken_one_names_its_file() -> None:
    layout = ResultLayout("bucket", "runs/d/r/t/-1/1/")
    assert status_of(None, layout) is None
    status = Status(TaskState.SUCCEEDED, 0, StopReason.EXIT, "t0", "t1", "d/r/t/-1/1")
    assert status_of(status.to_json().encode(), layout) == status
    with pytest.raises(InvalidRequest) as refused:
        status_of(b'{"state": "succeeded"}', layout)
    assert refused.value.field == "status" and refused.value.message.startswith(
        "s3://bucket/runs/d/r/t/-1/1/status.json: malformed status.json"
    )
