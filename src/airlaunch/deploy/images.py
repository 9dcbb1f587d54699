"""Build the launcher and catalog images for AWS, push them to ECR, and check what was pushed.

Lambda refuses an image whose tag points to an image index (a manifest list): what a
multi-platform build pushes, and what BuildKit pushes by default even for one platform,
because it attaches provenance (and SBOM) attestations. So a build for AWS names exactly one
platform, matched to the Lambda's or the task's architecture (an ARM laptop otherwise builds
arm64 for an x86_64 function), and asks buildx for no attestations. Docker's legacy builder
(Debian's docker.io has no buildx) adds none and only builds for its host's platform without
emulation. After the push the manifest is read back from ECR and an index is refused
(deploy.ecr_images, which also says which images each repository keeps).

Tags are the local image id, so an unchanged image keeps its tag (no new task definition
revision, no Lambda update) and a changed one gets a new tag (Lambda resolves a tag only when
the function is updated).
"""

from __future__ import annotations

import base64
import json
import platform
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from airlaunch.aws_names import image_repository, launcher_repository
from airlaunch.catalog import Catalog
from airlaunch.deploy.ecr_images import KEEP_RECENT_IMAGES, check_single_image, lifecycle_policy
from airlaunch.deploy.errors import DeployError, failed

Runner = Callable[..., subprocess.CompletedProcess[str]]  # (command, input=None)
PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}
RUNTIME_TAG = "airlaunch-deploy/task-runtime"
REPO = Path(__file__).resolve().parents[3]


def run(command: Sequence[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, input=input)


def detect_builder(runner: Runner | None = None) -> str:
    """``buildx`` when the Docker CLI has it, else ``legacy`` (docker build without BuildKit's extras)."""
    runner = runner or run
    if runner(["docker", "version", "--format", "{{.Server.Version}}"]).returncode != 0:
        raise DeployError("no Docker engine answers: start Docker (or `make engine`) and run `make deploy` again")
    return "buildx" if runner(["docker", "buildx", "version"]).returncode == 0 else "legacy"


def build_command(
    builder: str, *, dockerfile: str, context: str, tag: str, architecture: str, build_args: dict[str, str]
) -> list[str]:
    """The exact build command for one AWS image: one platform, no attestations, loaded into Docker."""
    platform_ = PLATFORMS[architecture]
    if builder == "buildx":
        command = ["docker", "buildx", "build", "--platform", platform_, "--provenance=false", "--sbom=false", "--load"]
    elif builder == "legacy":
        command = ["docker", "build", "--platform", platform_]
    else:
        raise ValueError(f"unknown builder {builder!r}")
    command += ["--network", "host", "-f", dockerfile, "-t", tag]
    for key, value in sorted(build_args.items()):
        command += ["--build-arg", f"{key}={value}"]
    return [*command, context]


def host_architecture() -> str:
    machine = platform.machine().lower()
    return "arm64" if machine in ("aarch64", "arm64") else "x86_64"


@dataclass
class ImagePlan:
    """One image to build and push: where it comes from, for which architecture, to which repository."""

    local: str  # the catalog's image name (or airlaunch/launcher)
    repository: str  # <stack>/<name> in ECR
    architecture: str
    dockerfile: str | None = None  # None: the image exists locally already
    context: str = "."
    build_args: dict[str, str] = field(default_factory=dict)
    users: list[str] = field(default_factory=list)  # catalog tasks that run it


def plan(catalog: Catalog, stack: str, launcher_architecture: str, base_image: str | None) -> list[ImagePlan]:
    """What ``make deploy`` builds and pushes: the launcher, then each distinct catalog image."""
    base = {"BASE_IMAGE": base_image} if base_image else {}
    plans: dict[str, ImagePlan] = {
        "airlaunch/launcher": ImagePlan(
            "airlaunch/launcher", launcher_repository(stack), launcher_architecture, "lambda/Dockerfile", ".", base
        )
    }
    for name, spec in sorted(catalog.tasks.items()):
        current = plans.get(spec.image)
        if current is None:
            build = spec.build
            args = {**base, "RUNTIME_IMAGE": f"{RUNTIME_TAG}:{spec.architecture}", **(build.args if build else {})}
            current = plans[spec.image] = ImagePlan(
                spec.image,
                image_repository(stack, spec.image),
                spec.architecture,
                build.dockerfile if build else None,
                build.context if build else ".",
                args if build else {},
            )
        elif current.architecture != spec.architecture:
            raise DeployError(
                f"catalog tasks {current.users} and {name!r} share image {spec.image} but not its architecture "
                f"({current.architecture} against {spec.architecture}): one image has one architecture; "
                "give the arm64 tasks an image of their own"
            )
        current.users.append(name)
    return list(plans.values())


class Images:
    """Builds with the detected builder, tags by image id, pushes to ECR and checks the manifests."""

    def __init__(
        self, ecr: Any, registry: str, builder: str, runner: Runner | None = None, say: Callable[[str], None] = print
    ) -> None:
        self.ecr = ecr
        self.registry = registry
        self.builder = builder
        self.runner = runner or run
        self.say = say
        self._built_runtimes: set[str] = set()

    def _docker(self, command: Sequence[str], what: str, fix: str = "") -> str:
        out = self.runner(command)
        if out.returncode != 0:
            tail = "\n".join((out.stderr or out.stdout).strip().splitlines()[-15:])
            raise DeployError(f"{what} failed (`{' '.join(command)}`):\n{tail}" + (f"\n{fix}" if fix else ""))
        return out.stdout.strip()

    def build(self, image: ImagePlan) -> str:
        """Build (or find) the image for its architecture; returns the local tag to push."""
        if self.builder == "legacy" and image.architecture != host_architecture() and image.dockerfile:
            raise DeployError(
                f"{image.local} must be built for {PLATFORMS[image.architecture]}, but this Docker has no buildx "
                f"and its legacy builder builds only for {PLATFORMS[host_architecture()]}: install buildx with QEMU "
                "(Docker Desktop has both), or choose the host's architecture in the catalog / LauncherArchitecture"
            )
        if image.dockerfile is None:
            arch = self._docker(["docker", "image", "inspect", "-f", "{{.Architecture}}", image.local],
                                f"finding image {image.local}",
                                "it has no `build` entry in the catalog, so it must exist on this Docker host: "
                                "build it, or add build: {dockerfile: ...} to its catalog entry")  # fmt: skip
            if PLATFORMS[image.architecture].split("/")[1] != arch:
                raise DeployError(
                    f"image {image.local} is linux/{arch} but its catalog tasks {image.users} say "
                    f"{image.architecture}: rebuild it with --platform {PLATFORMS[image.architecture]} "
                    "or fix `architecture` in the catalog"
                )
            return image.local
        tag = f"airlaunch-deploy/{image.repository}:build"
        if "RUNTIME_IMAGE" in image.build_args:  # catalog images start FROM the task runtime of their platform
            self.build_runtime(image.architecture, image.build_args.get("BASE_IMAGE"))
        command = build_command(self.builder, dockerfile=image.dockerfile, context=str(REPO / image.context),
                                tag=tag, architecture=image.architecture, build_args=image.build_args)  # fmt: skip
        self.say(f"==> Building {image.local} for {PLATFORMS[image.architecture]} ({self.builder})")
        self._docker(command, f"building {image.local}")
        return tag

    def build_runtime(self, arch: str, base_image: str | None) -> None:
        """The task runtime base of the catalog images, once per architecture."""
        if arch in self._built_runtimes:
            return
        args = {"BASE_IMAGE": base_image} if base_image else {}
        command = build_command(self.builder, dockerfile="tasks/runtime/Dockerfile", context=str(REPO),
                                tag=f"{RUNTIME_TAG}:{arch}", architecture=arch, build_args=args)  # fmt: skip
        self.say(f"==> Building the task runtime for {PLATFORMS[arch]}")
        self._docker(command, "building the task runtime (tasks/runtime/Dockerfile)")
        self._built_runtimes.add(arch)

    def ensure_repository(self, name: str, stack: str) -> None:
        """Create <stack>/<name> if missing, scanning on push (make destroy deletes it; :meth:`keep`, its expiry)."""
        try:
            self.ecr.describe_repositories(repositoryNames=[name])
            return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "RepositoryNotFoundException":
                raise failed(f"looking up ECR repository {name}", exc) from exc
        try:
            self.ecr.create_repository(
                repositoryName=name,
                imageScanningConfiguration={"scanOnPush": True},
                tags=[{"Key": "airlaunch:stack", "Value": stack}],
            )
        except (ClientError, BotoCoreError) as exc:
            raise failed(f"creating ECR repository {name}", exc) from exc
        self.say(f"==> Created ECR repository {name}")

    def keep(self, repository: str, in_use: Iterable[str]) -> None:
        """Expire all but the images tagged ``in_use`` and the ten pushed last (:func:`lifecycle_policy`)."""
        tags = sorted(set(in_use))
        try:
            self.ecr.put_lifecycle_policy(
                repositoryName=repository, lifecyclePolicyText=json.dumps(lifecycle_policy(tags))
            )
        except (ClientError, BotoCoreError) as exc:
            raise failed(f"setting the image expiry of ECR repository {repository}", exc) from exc
        self.say(
            f"==> ECR {repository}: keeps {', '.join(tags)} (used by the stack) and the {KEEP_RECENT_IMAGES} images "
            "pushed last; older images expire"
        )

    def login(self) -> None:
        try:
            data = self.ecr.get_authorization_token()["authorizationData"][0]
        except (ClientError, BotoCoreError) as exc:
            raise failed("getting an ECR login token (ecr:GetAuthorizationToken)", exc) from exc
        user, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
        out = self.runner(["docker", "login", "--username", user, "--password-stdin", self.registry], input=password)
        if out.returncode != 0:
            raise DeployError(f"docker login to {self.registry} failed: {out.stderr.strip()}")

    def push(self, local_tag: str, repository: str) -> str:
        """Push under the image id's tag (unless ECR has that tag already); returns the image URI."""
        image_id = self._docker(["docker", "image", "inspect", "-f", "{{.Id}}", local_tag], f"inspecting {local_tag}")
        tag = image_id.removeprefix("sha256:")[:16]
        uri = f"{self.registry}/{repository}:{tag}"
        if self._in_ecr(repository, tag):
            self.say(f"==> {uri} is in ECR already")
        else:
            self._docker(["docker", "tag", local_tag, uri], f"tagging {local_tag}")
            self.say(f"==> Pushing {uri}")
            self._docker(
                ["docker", "push", uri], f"pushing {uri}", "check `docker login` to the registry and ECR quotas"
            )
        check_single_image(self.ecr, repository, tag)
        return uri

    def _in_ecr(self, repository: str, tag: str) -> bool:
        try:
            self.ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ImageNotFoundException":
                return False
            raise failed(f"looking up image {repository}:{tag}", exc) from exc
        return True
