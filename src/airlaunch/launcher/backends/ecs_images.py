"""The image an ECS task of a catalog entry runs, by content: what the result cache's key holds.

A task definition names its image by ECR URI and tag (``make deploy`` tags each image by its id), and
Fargate resolves the tag when it pulls. The digest is read the same way: DescribeTaskDefinition of the
entry's family (its latest ACTIVE revision, the one RunTask by family starts), then ECR DescribeImages of
that tag (``ecr:DescribeImages`` on the stack's repositories); an image named by digest needs neither
call. A digest is never taken from a tag alone, and an image outside ECR has none here (its task is
not cached). The task's own ``imageDigest``, which ECS reports once it ran, is what the cache checks this
against before it records a result (airlaunch.launcher.cache).
"""

from __future__ import annotations

import re
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from airlaunch.aws_errors import is_transient
from airlaunch.aws_names import CONTAINER_NAME, task_family
from airlaunch.catalog import TaskSpec
from airlaunch.launcher.backends.base import LaunchError

# <registry>.dkr.ecr.<region>.amazonaws.com[.cn]/<repository>:<tag>
_ECR_IMAGE = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([^:@]+):([\w][\w.-]{0,127})$")
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=20)


class EcsImages:
    def __init__(self, ecs: Any, family_prefix: str, ecr: Any = None) -> None:
        self.ecs = ecs
        self.family_prefix = family_prefix
        self._ecr: dict[str, Any] = {"": ecr} if ecr is not None else {}

    def ecr(self, region: str) -> Any:
        """An ECR client of the registry's region (one given to the constructor: for every region)."""
        if "" in self._ecr:
            return self._ecr[""]
        if region not in self._ecr:
            self._ecr[region] = boto3.client("ecr", region_name=region, config=_CONFIG)
        return self._ecr[region]

    def digest(self, spec: TaskSpec) -> str | None:
        """``sha256:...`` of the image the entry's task definition names now; None for an image outside ECR."""
        family = task_family(self.family_prefix, spec.name)
        try:
            definition = self.ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
            containers = definition.get("containerDefinitions") or []
            named = [c for c in containers if c.get("name") == CONTAINER_NAME]
            chosen = (named or containers or [{}])[0]
            image = str(chosen.get("image") or "")
            if "@sha256:" in image:
                return image.split("@", 1)[1]
            match = _ECR_IMAGE.match(image)
            if match is None:
                return None
            registry, region, repository, tag = match.groups()
            found = self.ecr(region).describe_images(
                registryId=registry, repositoryName=repository, imageIds=[{"imageTag": tag}]
            )["imageDetails"]
        except (ClientError, BotoCoreError) as exc:
            why = f"cannot resolve the image of task definition {family}: {exc}"
            raise LaunchError(why, is_transient(exc)) from exc
        digest = str(found[0].get("imageDigest") or "") if found else ""
        return digest or None
