"""Where the deploy tool sends its requests: real AWS (checked before anything else), or the local LocalStack."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from airlaunch.deploy.errors import DeployError

REPO = Path(__file__).resolve().parents[3]
LOCALSTACK_PARAMS = {"CreateEcsResources": "false", "LauncherImageUri": "airlaunch/launcher:latest"}


def aws_session(region: str | None) -> boto3.Session:
    """A session for real AWS, or a DeployError naming what to set up."""
    redirected = sorted(k for k in os.environ if k.startswith("AWS_ENDPOINT_URL"))
    if redirected:
        raise DeployError(
            f"{', '.join(redirected)} is set, which sends boto3 somewhere other than AWS; "
            "unset it to deploy to AWS, or run `make deploy-localstack`"
        )
    session = boto3.Session(region_name=region)
    if session.get_credentials() is None:
        raise DeployError(
            "no AWS credentials found: run `aws configure` (or `aws sso login --profile NAME` and export "
            "AWS_PROFILE=NAME), or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; then run `make deploy` again"
        )
    if not session.region_name:
        raise DeployError("no AWS region: export AWS_REGION (e.g. AWS_REGION=eu-west-1) and run `make deploy` again")
    try:
        who = session.client("sts").get_caller_identity()
    except (ClientError, BotoCoreError) as exc:
        raise DeployError(
            f"AWS refused the credentials ({exc}); refresh them (e.g. `aws sso login`) and run the command again"
        ) from exc
    print(f"==> AWS account {who['Account']} as {who['Arn']}, region {session.region_name}", flush=True)
    return session


def localstack_session(region: str) -> tuple[boto3.Session, str]:
    """LocalStack's test credentials and the local stack's LocalStack URL."""
    session = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name=region)
    from airlaunch.stack import StackConfig

    return session, StackConfig().localstack_url


def seed_localstack_lambda_init(repo: Path | None = None) -> Path | None:
    """Let LocalStack's Lambda create functions offline; returns the file written, if any.

    LocalStack (2026.3, free build) downloads its ``lambda-runtime-init`` binary from GitHub
    before a new function may leave state Pending; offline the function goes to Failed and
    CloudFormation rolls the stack back. An image function needs nothing else at creation, so
    we put a stub at the place LocalStack caches the binary. The stub only makes creation
    succeed: invoking a function inside LocalStack fails with the stub's message (invocations
    here go to the launcher under AWS's emulator instead). Delete the stub to get the real
    binary where GitHub is reachable.
    """
    from airlaunch.stack import StackConfig  # where `make localstack-up` keeps LocalStack's files

    cfg = StackConfig(repo=(repo or Path(os.environ.get("AIRLAUNCH_REPO") or REPO)).resolve())
    python = cfg.localstack_python
    if not python.exists():
        return None
    script = (
        "from localstack.packages import InstallTarget\n"
        "from localstack.services.lambda_.packages import lambda_runtime_package as p\n"
        "i = p.get_installer(); d = i._get_install_dir(InstallTarget.VAR_LIBS)\n"
        "print(i._get_install_marker_path(d))\n"
    )
    env = {**os.environ, "FILESYSTEM_ROOT": str(cfg.state_dir / "localstack"), "OVERRIDE_IN_DOCKER": "0"}
    out = subprocess.run([str(python), "-c", script], env=env, capture_output=True, text=True, check=True)
    init = Path(out.stdout.strip().splitlines()[-1])
    if init.exists():
        return None
    init.parent.mkdir(parents=True, exist_ok=True)
    init.write_text(
        "#!/bin/sh\n# Stub written by airlaunch.deploy: LocalStack's lambda-runtime-init could not be downloaded.\n"
        'echo "LocalStack lambda-runtime-init is a stub (offline); this function cannot run in LocalStack" >&2\n'
        "exit 1\n"
    )
    init.chmod(0o755)
    return init
