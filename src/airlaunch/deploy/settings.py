"""The deploy tool's settings (``python -m airlaunch.deploy``); each has a flag that overrides it."""

from __future__ import annotations

from dataclasses import dataclass, field

from airlaunch.config import env


@dataclass(frozen=True)
class DeploySettings:
    stack_name: str = field(default_factory=lambda: env("AIRLAUNCH_STACK_NAME", "airlaunch"))
    """AIRLAUNCH_STACK_NAME (``--stack-name``): the CloudFormation stack to deploy, check or destroy; its
    resources are named after it (airlaunch.aws_names)."""
