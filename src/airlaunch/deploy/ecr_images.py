"""What ECR holds for a stack: one image per tag (never an index), the tags the stack uses, and which
images each repository keeps.

Lambda refuses an image whose tag points to an image index (a manifest list), so after a push the
manifest is read back and an index is refused (:func:`check_single_image`).

Every push has a tag of its own, so a rule for untagged images would expire nothing: each
repository instead keeps the images its stack uses and the ten pushed last
(:func:`lifecycle_policy`), rewritten by every deploy. An image the stack references is named
by an exact-tag rule of higher priority than the count rule, and ECR never lets a lower-priority
rule expire an image that matches a higher one's tagging requirements; the exact-tag rule itself
(``imageCountMoreThan 1`` over one tag, which names one image) never expires it. So the
launcher image Lambda runs and the task images ECS pulls cannot be expired while in use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from airlaunch.deploy.errors import DeployError, failed

# What Lambda accepts (one image), and what it refuses (an index of several, or of one image plus attestations).
SINGLE_IMAGE_TYPES = {
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
}
INDEX_TYPES = {"application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.image.index.v1+json"}
KEEP_RECENT_IMAGES = 10  # per repository, besides the ones the stack uses: what a rollback by hand can go back to
# A task definition image in the rendered template: <registry>/${AWS::StackName}/<name>:<tag>
_STACK_IMAGE = re.compile(
    r"\.dkr\.ecr\.[^/\"]+/\$\{AWS::StackName\}/(?P<name>[a-z0-9][a-z0-9._/-]*):(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]*)"
)


def check_single_image(ecr: Any, repository: str, tag: str) -> str:
    """The media type of the manifest ECR holds for the tag; DeployError when it is an index Lambda would refuse."""
    try:
        response = ecr.batch_get_image(
            repositoryName=repository,
            imageIds=[{"imageTag": tag}],
            acceptedMediaTypes=sorted(SINGLE_IMAGE_TYPES | INDEX_TYPES),
        )
    except (ClientError, BotoCoreError) as exc:
        raise failed(f"reading back image {repository}:{tag}", exc) from exc
    if not response.get("images"):
        raise DeployError(f"image {repository}:{tag} is not in ECR after the push: push it again")
    image = response["images"][0]
    return judge_manifest(
        f"{repository}:{tag}", image.get("imageManifestMediaType"), image.get("imageManifest") or "{}"
    )


def judge_manifest(name: str, media_type: str | None, manifest_text: str) -> str:
    """A registry's answer for an image: its media type when it is one image, DeployError for an index."""
    manifest = json.loads(manifest_text)
    kind = media_type or manifest.get("mediaType") or ""
    if kind in INDEX_TYPES or "manifests" in manifest:
        raise DeployError(
            f"image {name} is an image index ({kind or 'manifests list'}), which Lambda and a "
            "single-architecture task refuse: it was built for several platforms or with attestations; rebuild "
            "with one --platform and --provenance=false --sbom=false (make deploy does), then deploy again"
        )
    if kind not in SINGLE_IMAGE_TYPES and "config" not in manifest:
        raise DeployError(f"image {name} has an unexpected manifest type {kind!r}")
    return kind or "application/vnd.oci.image.manifest.v1+json"


def lifecycle_policy(in_use: Iterable[str], keep_recent: int = KEEP_RECENT_IMAGES) -> dict[str, Any]:
    """An ECR lifecycle policy that never expires the images tagged ``in_use`` and keeps the last ``keep_recent``.

    Following ECR's lifecycle policy properties and evaluation rules
    (https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_parameters.html,
    https://docs.aws.amazon.com/AmazonECR/latest/userguide/LifecyclePolicies.html):

    * one rule per tag in use, priorities 1..n: ``tagStatus: tagged`` with ``tagPatternList`` holding
      just that tag (a list of several would select only images carrying all of them) and
      ``imageCountMoreThan 1``. A tag names one image in a repository, so the count is never
      exceeded and the rule itself expires nothing; its point is that "an image that matches the
      tagging requirements of a higher priority rule cannot be expired by a rule with a lower
      priority";
    * last, with the highest priority value as ECR requires of a ``tagStatus: any`` rule:
      ``imageCountMoreThan keep_recent`` over all images, tagged or not. Expiry goes by push
      time, oldest first, so the ``keep_recent`` images pushed last stay, plus the ones in use.
    """
    rules: list[dict[str, Any]] = [
        {
            "rulePriority": priority,
            "description": f"keep {tag}: the stack uses it",
            "selection": {
                "tagStatus": "tagged",
                "tagPatternList": [tag],
                "countType": "imageCountMoreThan",
                "countNumber": 1,
            },
            "action": {"type": "expire"},
        }
        for priority, tag in enumerate(sorted(set(in_use)), start=1)
    ]
    rules.append(
        {
            "rulePriority": len(rules) + 1,
            "description": f"keep the {keep_recent} images pushed last",
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep_recent},
            "action": {"type": "expire"},
        }
    )
    return {"rules": rules}


def stack_image_tags(cfn: Any, stack: dict[str, Any] | None) -> dict[str, set[str]]:
    """ECR repository -> the tags the stack uses now: its task definitions' images and its launcher image.

    Read from the template and parameters the stack was last deployed with (an empty answer
    without a stack); these must survive until a deploy that no longer uses them has succeeded.
    """
    if not stack or stack.get("StackStatus") == "REVIEW_IN_PROGRESS":
        return {}
    try:
        template = cfn.get_template(StackName=stack["StackName"], TemplateStage="Original")["TemplateBody"]
    except (ClientError, BotoCoreError) as exc:
        raise failed(f"reading the template of stack {stack['StackName']}", exc) from exc
    text = template if isinstance(template, str) else json.dumps(template)
    used: dict[str, set[str]] = {}
    for match in _STACK_IMAGE.finditer(text):
        used.setdefault(f"{stack['StackName']}/{match['name']}", set()).add(match["tag"])
    for parameter in stack.get("Parameters", []):
        if parameter["ParameterKey"] == "LauncherImageUri" and parameter.get("ParameterValue"):
            repository, _, tag = parameter["ParameterValue"].split("/", 1)[-1].rpartition(":")
            used.setdefault(repository, set()).add(tag)
    return used


def repository_of(uri: str) -> tuple[str, str]:
    """``<registry>/<repository>:<tag>`` -> (repository, tag)."""
    repository, _, tag = uri.split("/", 1)[1].rpartition(":")
    return repository, tag


def tags_of(uris: dict[str, str]) -> dict[str, str]:
    """catalog image -> pushed tag, for the template generator."""
    return {local: uri.rsplit(":", 1)[1] for local, uri in uris.items()}
