"""Deploy failures in words: what failed, why, and what to do; never a traceback for an expected error."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError


class DeployError(RuntimeError):
    """The deployment cannot go on; the message names the resource, the cause and the fix."""


def aws_reason(exc: ClientError | BotoCoreError) -> str:
    """`Code: message` of an AWS error, or botocore's own sentence."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', exc)}"
    return str(exc)


def access_hint(exc: ClientError | BotoCoreError) -> str:
    """A fix for the errors every step can meet: missing permissions, expired credentials."""
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException"):
        return "; deploy with an identity allowed to manage IAM, ECS, ECR, Lambda, S3, SQS and CloudFormation"
    if code in ("ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId"):
        return "; refresh your credentials (e.g. `aws sso login`) and run the command again"
    return ""


def failed(what: str, exc: ClientError | BotoCoreError, fix: str = "") -> DeployError:
    """A DeployError: ``<what> failed: <AWS's reason>; <fix>``."""
    return DeployError(f"{what} failed: {aws_reason(exc)}{('; ' + fix) if fix else access_hint(exc)}")
