"""Deploy infra/template.yaml with a CloudFormation change set (``make deploy``, ``make deploy-localstack``).

``python -m airlaunch.deploy [--localstack] [--stack-name NAME] [--param Key=Value ...]``

The change set is created, its preview printed, and it is executed only after a "y" on the
terminal or with AUTO_APPROVE=1. On an update, parameters not given keep their previous
values. ``--localstack`` deploys the same template into LocalStack on 127.0.0.1:4566 with
CreateEcsResources=false (no ECS or ECR in LocalStack's free build).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, WaiterError

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "infra" / "template.yaml"
LOCALSTACK_PARAMS = {"CreateEcsResources": "false", "LauncherImageUri": "airlaunch/launcher:latest"}


class DeployError(RuntimeError):
    """The deployment cannot go on; the message says what to do."""


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
        raise DeployError(f"AWS refused the credentials ({exc}); refresh them (e.g. `aws sso login`)") from exc
    print(f"==> AWS account {who['Account']} as {who['Arn']}, region {session.region_name}", flush=True)
    return session


def localstack_session(region: str) -> tuple[boto3.Session, str]:
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


def _stack(cfn: Any, name: str) -> dict[str, Any] | None:
    try:
        stacks: list[dict[str, Any]] = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return stacks[0] if stacks else None


def preview(changes: list[dict[str, Any]]) -> str:
    """The change set as a table: action, logical id, type, replacement."""
    rows = [("ACTION", "RESOURCE", "TYPE", "REPLACEMENT")]
    for change in changes:
        rc = change.get("ResourceChange", {})
        rows.append(
            (
                rc.get("Action", ""),
                rc.get("LogicalResourceId", ""),
                rc.get("ResourceType", ""),
                rc.get("Replacement", "-"),
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def deploy(
    cfn: Any,
    stack_name: str,
    parameters: dict[str, str],
    approve: Callable[[str], bool],
    template: Path = TEMPLATE,
    poll_seconds: int = 5,
) -> dict[str, str]:
    """Create a change set, show it, execute it once approved; returns the stack's outputs."""
    body = template.read_text()
    stack = _stack(cfn, stack_name)
    status = stack["StackStatus"] if stack else ""
    if status in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED"):
        raise DeployError(
            f"stack {stack_name} is {status} and cannot be updated; delete it "
            f"(aws cloudformation delete-stack --stack-name {stack_name}) and deploy again"
        )
    kind = "CREATE" if status in ("", "REVIEW_IN_PROGRESS") else "UPDATE"
    declared = _param_keys(cfn, body)
    unknown = sorted(set(parameters) - declared)
    if unknown:
        raise DeployError(f"unknown template parameter(s) {unknown}; the template declares {sorted(declared)}")
    params: list[dict[str, Any]] = [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()]
    if kind == "UPDATE" and stack:
        previous = {p["ParameterKey"] for p in stack.get("Parameters", [])}
        params += [{"ParameterKey": k, "UsePreviousValue": True} for k in sorted(previous & declared - set(parameters))]
    change_set = f"airlaunch-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"==> Creating change set {change_set} ({kind}) for stack {stack_name}", flush=True)
    cfn.create_change_set(
        StackName=stack_name,
        ChangeSetName=change_set,
        ChangeSetType=kind,
        TemplateBody=body,
        Parameters=params,
        Capabilities=["CAPABILITY_IAM"],
    )
    waiter = {"Delay": poll_seconds, "MaxAttempts": 720 // poll_seconds}
    try:
        cfn.get_waiter("change_set_create_complete").wait(
            StackName=stack_name, ChangeSetName=change_set, WaiterConfig=waiter
        )
    except WaiterError as exc:
        described = cfn.describe_change_set(StackName=stack_name, ChangeSetName=change_set)
        reason = described.get("StatusReason", str(exc))
        if "didn't contain changes" in reason or "No updates" in reason:
            print("==> No changes: the stack is up to date", flush=True)
            cfn.delete_change_set(StackName=stack_name, ChangeSetName=change_set)
            return _outputs(cfn, stack_name)
        raise DeployError(f"change set {change_set} failed: {reason}") from exc
    changes: list[dict[str, Any]] = []
    for page in cfn.get_paginator("describe_change_set").paginate(StackName=stack_name, ChangeSetName=change_set):
        changes += page.get("Changes", [])
    print(preview(changes), flush=True)
    approved = False
    try:
        approved = approve(f"Execute change set {change_set} on stack {stack_name}?")
    finally:
        if not approved:
            cfn.delete_change_set(StackName=stack_name, ChangeSetName=change_set)
            if kind == "CREATE":
                cfn.delete_stack(StackName=stack_name)  # leaves no empty REVIEW_IN_PROGRESS stack behind
    if not approved:
        raise DeployError("not confirmed; nothing was changed (answer y, or set AUTO_APPROVE=1)")
    started = time.monotonic()
    cfn.execute_change_set(StackName=stack_name, ChangeSetName=change_set)
    try:
        cfn.get_waiter(f"stack_{kind.lower()}_complete").wait(StackName=stack_name, WaiterConfig=waiter)
    except WaiterError as exc:
        raise DeployError(f"stack {stack_name} failed:\n{_failures(cfn, stack_name)}") from exc
    print(f"==> Stack {stack_name} {kind.lower()}d in {time.monotonic() - started:.1f} s", flush=True)
    return _outputs(cfn, stack_name)


def _param_keys(cfn: Any, body: str) -> set[str]:
    return {p["ParameterKey"] for p in cfn.validate_template(TemplateBody=body).get("Parameters", [])}


def _outputs(cfn: Any, stack_name: str) -> dict[str, str]:
    stack = _stack(cfn, stack_name) or {}
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def _failures(cfn: Any, stack_name: str) -> str:
    events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
    failed = [e for e in events if e.get("ResourceStatus", "").endswith("FAILED")]
    return "\n".join(f"  {e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}" for e in reversed(failed))


def terminal_approval(question: str) -> bool:
    if os.environ.get("AUTO_APPROVE") == "1":
        return True
    if not sys.stdin.isatty():
        raise DeployError("no terminal to confirm on: set AUTO_APPROVE=1 to execute the change set")
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airlaunch.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack-name", default=os.environ.get("AIRLAUNCH_STACK_NAME", "airlaunch"))
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a template parameter")
    parser.add_argument("--localstack", action="store_true", help="deploy into the local stack's LocalStack")
    parser.add_argument("--region", default=None)
    args = parser.parse_args(argv)
    try:
        parameters = {}
        for item in args.param:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise DeployError(f"--param {item!r}: expected KEY=VALUE")
            parameters[key] = value
        config = Config(retries={"max_attempts": 5, "mode": "standard"})
        if args.localstack:
            session, endpoint = localstack_session(args.region or "us-east-1")
            seeded = seed_localstack_lambda_init()
            if seeded:
                print(f"==> Seeded a stub lambda-runtime-init for LocalStack at {seeded}", flush=True)
            cfn = session.client("cloudformation", endpoint_url=endpoint, config=config)
            parameters = {**LOCALSTACK_PARAMS, **parameters}
        else:
            cfn = aws_session(args.region).client("cloudformation", config=config)
        outputs = deploy(cfn, args.stack_name, parameters, terminal_approval, poll_seconds=1 if args.localstack else 5)
    except DeployError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 2
    for key, value in sorted(outputs.items()):
        print(f"  {key:24} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
