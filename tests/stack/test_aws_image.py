"""The launcher image built exactly as `make deploy` builds it, pushed to a registry, is one image manifest.

Lambda refuses an image index. `make deploy` builds with the command of
airlaunch.deploy.images.build_command for whichever builder this Docker has (the legacy
builder here: Debian's docker.io has no buildx), pushes, and reads the manifest back. Here
the push goes to a registry of our own (Debian's docker-registry, the CNCF distribution
registry ECR also speaks to Docker as), started on a free loopback port; the manifest it
serves must be a single-platform image manifest for linux/amd64 and pass the deploy tool's
own check. Needs Docker and the docker-registry package (`make registry`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlaunch.deploy import ecr_images, images
from tests.moto_server import free_port, local_server

pytestmark = pytest.mark.stack  # docker build and push to a registry of its own

ROOT = Path(__file__).resolve().parents[2]
ACCEPT = ", ".join(sorted(ecr_images.SINGLE_IMAGE_TYPES | ecr_images.INDEX_TYPES))
TAG = "airlaunch-awstest/launcher"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("docker-registry")
    assert binary, "the docker-registry package is missing: run `make registry`"
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: " + str(root / "data") + "\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    address = f"127.0.0.1:{port}"
    with local_server([binary, "serve", str(config)], root / "registry.log", f"http://{address}/v2/", 20):
        yield address


def _docker(*args: str) -> str:
    out = subprocess.run(["docker", *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture(scope="module")
def pushed(registry: str) -> Iterator[tuple[str, list[str]]]:
    """Build the launcher image with the deploy tool's exact command, push it; yield (reference, command)."""
    base = subprocess.run([str(ROOT / "scripts" / "base-image.sh")], capture_output=True, text=True, check=True)
    builder = images.detect_builder()
    local = f"{TAG}:build"
    command = images.build_command(builder, dockerfile="lambda/Dockerfile", context=str(ROOT), tag=local,
                                   architecture="x86_64", build_args={"BASE_IMAGE": base.stdout.strip()})  # fmt: skip
    built = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert built.returncode == 0, built.stderr[-3000:]
    reference = f"{registry}/{TAG}:1"
    try:
        _docker("tag", local, reference)
        _docker("push", reference)
        yield reference, command
    finally:
        subprocess.run(["docker", "rmi", reference, local], capture_output=True)


def _get(url: str, accept: str = ACCEPT) -> tuple[str, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Content-Type"], response.read()


def test_the_build_names_one_platform(pushed: tuple[str, list[str]]) -> None:
    _, command = pushed
    assert command[command.index("--platform") + 1] == "linux/amd64"
    if command[:3] == ["docker", "buildx", "build"]:
        assert "--provenance=false" in command and "--sbom=false" in command


def test_the_pushed_launcher_is_a_single_platform_image_manifest(registry: str, pushed: tuple[str, list[str]]) -> None:
    media_type, body = _get(f"http://{registry}/v2/{TAG}/manifests/1")
    manifest = json.loads(body)
    assert media_type in ecr_images.SINGLE_IMAGE_TYPES and "manifests" not in manifest
    assert ecr_images.judge_manifest(f"{TAG}:1", media_type, body.decode()) == media_type
    _, config = _get(f"http://{registry}/v2/{TAG}/blobs/{manifest['config']['digest']}", "*/*")
    image = json.loads(config)
    assert (image["os"], image["architecture"]) == ("linux", "amd64")
    assert manifest["layers"], "an image with layers"
