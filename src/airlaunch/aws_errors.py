"""What an AWS error means, decided in one place for every side: a key that is not there, or a
failure that passes by itself.

* :func:`is_missing`: S3 has no such key (GetObject's ``NoSuchKey``, HeadObject's bare ``404``).
  Every "read it if it is there" in airlaunch (status.json, stop.json, params.yaml, a session
  file, the results) takes only this for absence; any other error is raised. :func:`body_if_present`
  is that read for a whole object.
* :func:`is_transient`: the same call may succeed a moment later: throttling, the service's own
  5xx or 429, no connection or no answer (LocalStack restarting, Lambda throttled, S3 slowing
  down), or an error that says so itself (``retryable``, e.g. a launch the platform may accept a
  moment later). Everything else (access denied, a missing bucket, a refused request, a request
  botocore refused to send) is not, and callers raise it at once.

Base-level like airlaunch.config: the launcher, the runtime and the Airflow side each import it,
never each other. botocore is imported only where an error is classified, so the task runtime
loads nothing more before its signal handler is set.
"""

from __future__ import annotations

from typing import Any

MISSING_KEY_CODES = frozenset({"NoSuchKey", "404"})
_TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceException",
        "ServerException",  # ECS's own 5xx
        "InternalError",
        "InternalFailure",
        "RequestTimeout",
        "RequestTimeoutException",
        "EC2ThrottledException",
    }
)


def _response(exc: BaseException) -> dict[str, Any]:
    response = getattr(exc, "response", None)  # botocore's ClientError (and aiobotocore's)
    return response if isinstance(response, dict) else {}


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError (``NoSuchKey``, ``ThrottlingException``); "" for anything else."""
    return str(_response(exc).get("Error", {}).get("Code") or "")


def is_missing(exc: BaseException) -> bool:
    """S3 says the key does not exist (yet)."""
    return error_code(exc) in MISSING_KEY_CODES


def is_transient(exc: BaseException) -> bool:
    """The same call may succeed a moment later (see the module's docstring)."""
    from botocore.exceptions import ConnectionError as NoConnection
    from botocore.exceptions import HTTPClientError

    if isinstance(exc, NoConnection | HTTPClientError | ConnectionError | TimeoutError):
        return True  # botocore's connect/read timeouts and closed connections; asyncio's timeouts are TimeoutError
    if _response(exc):
        status = _response(exc).get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return error_code(exc) in _TRANSIENT_CODES or status >= 500 or status == 429
    return bool(getattr(exc, "retryable", False))


def body_if_present(s3: Any, bucket: str, key: str) -> bytes | None:
    """The object's bytes, None if S3 has no such key (:func:`is_missing`); any other error is raised."""
    try:
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        if is_missing(exc):
            return None
        raise
    return body
