"""The results CLI's settings (``airlaunch``): each has a flag that overrides it."""

from __future__ import annotations

from dataclasses import dataclass, field

from airlaunch.config import env


@dataclass(frozen=True)
class CliSettings:
    """Settings of the ``airlaunch`` results CLI; each has a flag that overrides it.

    The endpoint (AWS_ENDPOINT_URL or ``--endpoint-url``), region and credentials are boto3's own.
    """

    bucket: str = field(default_factory=lambda: env("AIRLAUNCH_BUCKET", "airlaunch-results"))
    """AIRLAUNCH_BUCKET (``--bucket``): the S3 bucket the launcher writes results to."""
    key_prefix: str = field(default_factory=lambda: env("AIRLAUNCH_KEY_PREFIX", "runs"))
    """AIRLAUNCH_KEY_PREFIX (``--prefix``): the key prefix under which every run's files live."""
    poll_seconds: float = field(default_factory=lambda: float(env("AIRLAUNCH_CLI_POLL_SECONDS", "2")))
    """AIRLAUNCH_CLI_POLL_SECONDS (``--interval``): how often ``wait`` and ``log --follow`` look at S3."""
