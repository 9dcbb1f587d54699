"""``python -m airlaunch.deploy [deploy|destroy|smoke|template]``: the commands behind make deploy/destroy/smoke.

deploy (the default): check credentials, stack state, catalog (and the Secrets Manager secrets
it names: their full ARNs), network and the ECS service-linked role; build the images for their
platform, push them to ECR; render the template from the catalog and deploy it with a change
set; print the Airflow connection.
``--localstack`` deploys the same template into the local LocalStack (no ECS, no images).
destroy (deploy.destroy): throttle the launcher and stop the tasks running in the stack's cluster, then delete
the stack and, whatever happens to it, the ECR repositories it used (images included); the
results bucket stays unless ``--delete-results``. smoke: run the diagnostic task through the deployed
launcher (``--localstack``: through the local stack). template: print the rendered template.
Expected failures end with ``deploy: <what failed, why, what to do>`` and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from airlaunch.aws_clients import ADAPTIVE_RETRIES
from airlaunch.aws_names import check_stack_name, function_name
from airlaunch.catalog import Catalog, CatalogError
from airlaunch.deploy import (
    account,
    checklist,
    cloudformation,
    ecr_images,
    images,
    secrets,
    sessions,
    smoke,
    template,
)
from airlaunch.deploy.connection import airflow_setup
from airlaunch.deploy.destroy import destroy
from airlaunch.deploy.errors import DeployError
from airlaunch.deploy.settings import DeploySettings

REPO = Path(__file__).resolve().parents[3]
CATALOG = REPO / "tasks" / "catalog.yaml"
COMMANDS = ("deploy", "destroy", "smoke", "template")


def say(message: str) -> None:
    print(message, flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    if not argv or argv[0] not in COMMANDS:
        argv = ["deploy", *argv]
    parser = argparse.ArgumentParser(prog="python -m airlaunch.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--stack-name", default=DeploySettings().stack_name)
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a template parameter")
    parser.add_argument("--localstack", action="store_true", help="the local stack's LocalStack instead of AWS")
    parser.add_argument("--region", default=None)
    parser.add_argument("--catalog", default=str(CATALOG))
    parser.add_argument("--delete-results", action="store_true", help="destroy: also empty and delete the bucket")
    parser.add_argument("--timeout", type=float, default=600, help="smoke: seconds to wait for the task")
    return parser.parse_args(argv)


def parameters(items: list[str]) -> dict[str, str]:
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DeployError(f"--param {item!r}: expected KEY=VALUE")
        result[key] = value
    return result


def load_catalog(path: str) -> Catalog:
    try:
        return Catalog.load(path)
    except CatalogError as exc:
        raise DeployError(f"{exc}; fix the catalog and run the command again") from exc


def render(catalog: Catalog, tags: dict[str, str] | None = None, arns: dict[str, str] | None = None) -> str:
    try:
        return template.body(template.render(catalog, tags, secret_arns=arns))
    except template.TemplateError as exc:
        raise DeployError(str(exc)) from exc


def secret_arns(secretsmanager: Any, catalog: Catalog) -> dict[str, str]:
    """The full ARN of each Secrets Manager secret the catalog names by name (DescribeSecret); none to look up,
    no call. A missing secret stops the deploy naming it: its task definition could not name it."""
    if not secrets.names_to_resolve(catalog):
        return {}
    try:
        arns = secrets.resolve_arns(secretsmanager, catalog)
    except secrets.SecretLookupError as exc:
        raise DeployError(str(exc)) from exc
    say(f"==> Secrets: {len(arns)} Secrets Manager secret(s) of the catalog found: {', '.join(sorted(arns))}")
    return arns


def effective(stack: dict[str, Any] | None, given: dict[str, str], key: str, default: str) -> str:
    """A parameter's value after this deploy: given now, else the stack's previous one, else the default."""
    if key in given:
        return given[key]
    previous = {p["ParameterKey"]: p.get("ParameterValue", "") for p in (stack or {}).get("Parameters", [])}
    return previous.get(key, default)


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def deploy_aws(args: argparse.Namespace, given: dict[str, str]) -> int:
    stack_name = args.stack_name
    session = sessions.aws_session(args.region)
    region = session.region_name
    client = lambda name: session.client(name, config=ADAPTIVE_RETRIES)  # noqa: E731
    cfn, iam, ec2, ecr = client("cloudformation"), client("iam"), client("ec2"), client("ecr")
    catalog = load_catalog(args.catalog)
    arns = secret_arns(client("secretsmanager"), catalog)
    render(catalog, arns=arns)  # the catalog renders (before anything is built)
    stack = cloudformation.stack_of(cfn, stack_name)
    cloudformation.change_kind(stack_name, stack["StackStatus"] if stack else "")
    spot = effective(stack, given, "CapacityProvider", "") == "FARGATE_SPOT"
    arm = sorted(n for n, s in catalog.tasks.items() if s.architecture == "arm64")
    if spot and arm:
        raise DeployError(
            f"CapacityProvider=FARGATE_SPOT, but Fargate Spot runs no ARM64 tasks and catalog tasks {arm} are "
            "arm64: use CapacityProvider=FARGATE (or empty), or build those tasks for x86_64"
        )
    network = account.NetworkPlan(
        subnets=_split(effective(stack, given, "Subnets", "")),
        security_groups=_split(effective(stack, given, "SecurityGroups", "")),
        assign_public_ip=effective(stack, given, "AssignPublicIp", "false") == "true",
        create_endpoints=effective(stack, given, "VpcEndpoints", "false") == "true",
    )
    for line in account.check_network(ec2, network):
        say(f"==> Network: {line}")
    if network.create_endpoints:  # an interface endpoint takes at most one subnet per Availability Zone
        zones = account.one_subnet_per_zone(ec2, network.subnets)
        given = {**given, "EndpointSubnets": ",".join(zones)}
        say(f"==> Network: the interface endpoints go into {', '.join(zones)} (one subnet per Availability Zone)")
    if account.ensure_ecs_service_linked_role(iam):
        say("==> Created the ECS service-linked role AWSServiceRoleForECS")
    concurrency = account.launcher_concurrency(
        client("lambda"), function_name(stack_name), int(given.get("LauncherConcurrency") or 10)
    )
    given = {**given, "LauncherConcurrency": str(concurrency.concurrency),
             "ReserveLauncherConcurrency": "true" if concurrency.reserve else "false"}  # fmt: skip
    say(f"==> Lambda: {concurrency.note}")
    account_id = session.client("sts").get_caller_identity()["Account"]
    registry = f"{account_id}.dkr.ecr.{region}.amazonaws.com"
    launcher_arch = effective(stack, given, "LauncherArchitecture", "x86_64")
    builder = images.detect_builder()
    pusher = images.Images(ecr, registry, builder, say=say)
    pusher.login()
    pushed: dict[str, str] = {}
    for image in images.plan(catalog, stack_name, launcher_arch, os.environ.get("BASE_IMAGE") or None):
        local_tag = pusher.build(image)
        pusher.ensure_repository(image.repository, stack_name)
        pushed[image.local] = pusher.push(local_tag, image.repository)
    # Image expiry: until the stack has changed over, both the images it uses now and the new ones
    # are kept; once it has, only the new ones (and the ten pushed last) are. A failed deploy leaves
    # both kept, and the next deploy reads again what the stack uses.
    new_tags = dict(ecr_images.repository_of(uri) for uri in pushed.values())
    in_use = ecr_images.stack_image_tags(cfn, stack)
    for repository, tag in new_tags.items():
        pusher.keep(repository, in_use.get(repository, set()) | {tag})
    given = {**given, "LauncherImageUri": pushed.pop("airlaunch/launcher")}
    body = render(catalog, ecr_images.tags_of(pushed), arns)
    outputs = cloudformation.deploy(cfn, stack_name, given, cloudformation.terminal_approval, body)
    for repository, tag in new_tags.items():
        if in_use.get(repository, set()) - {tag}:
            pusher.keep(repository, {tag})
    print_outputs(outputs)
    say(airflow_setup(outputs, region))
    say(f"==> Next: make smoke DEPLOY_STACK={stack_name}")
    return 0


def deploy_localstack(args: argparse.Namespace, given: dict[str, str]) -> int:
    session, endpoint = sessions.localstack_session(args.region or "us-east-1")
    seeded = sessions.seed_localstack_lambda_init()
    if seeded:
        say(f"==> Seeded a stub lambda-runtime-init for LocalStack at {seeded}")
    cfn = session.client("cloudformation", endpoint_url=endpoint, config=ADAPTIVE_RETRIES)
    catalog = load_catalog(args.catalog)
    body = render(catalog, arns=secret_arns(session.client("secretsmanager", endpoint_url=endpoint), catalog))
    approve = cloudformation.terminal_approval
    outputs = cloudformation.deploy(cfn, args.stack_name, {**sessions.LOCALSTACK_PARAMS, **given}, approve, body, 1)
    print_outputs(outputs)
    return 0


def print_outputs(outputs: dict[str, str]) -> None:
    for key, value in sorted(outputs.items()):
        say(f"  {key:24} {value}")


def run_smoke(args: argparse.Namespace) -> int:
    if args.localstack:
        from airlaunch.stack import StackConfig

        cfg = StackConfig()
        creds = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": cfg.region}
        lam = boto3.client("lambda", endpoint_url=cfg.lambda_url, **creds)
        s3 = boto3.client("s3", endpoint_url=cfg.localstack_url, **creds)
        name = "function"
        say(f"==> Smoke test against the local stack (launcher {cfg.lambda_url}, LocalStack {cfg.localstack_url})")
    else:
        session = sessions.aws_session(args.region)
        outputs = cloudformation.outputs_of(session.client("cloudformation"), args.stack_name)
        if "LauncherFunctionName" not in outputs:
            raise DeployError(f"stack {args.stack_name} has no launcher function: run `make deploy` first")
        session = airflow_session(session, outputs.get("AirflowRoleArn", ""))
        lam = session.client("lambda", config=ADAPTIVE_RETRIES)
        s3 = session.client("s3")
        name = outputs["LauncherFunctionName"] or function_name(args.stack_name)
    run = smoke.smoke(lam, s3, name, timeout=args.timeout)
    assert run.handle is not None and run.status is not None
    say(f"==> The diagnostic task succeeded: result {run.result}, files at {run.handle.layout.uri()}")
    say(run.report())
    say("==> log.txt:\n" + "\n".join(f"  | {line}" for line in run.log.splitlines()[-10:]))
    say(f"==> What the task's command could see of its run session: {run.peek}")
    if not args.localstack:
        bucket, region = run.handle.bucket, lam.meta.region_name
        checks = checklist.checklist(args.stack_name, region, run.handle.task_ref, bucket)
        say("==> What only your account shows, and how to see it (docs/deploy-aws.md):\n" + checklist.render(checks))
    return 0


def airflow_session(session: boto3.Session, role_arn: str) -> boto3.Session:
    """The stack's Airflow role when this identity may assume it, so the smoke test proves its rights."""
    try:
        credentials = session.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="airlaunch-smoke")
    except (ClientError, BotoCoreError) as exc:
        say(f"==> Running as yourself: cannot assume the Airflow role {role_arn} ({exc})")
        return session
    say(f"==> Running as the Airflow role {role_arn}")
    c = credentials["Credentials"]
    return boto3.Session(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"], region_name=session.region_name)


def main(argv: list[str] | None = None) -> int:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    try:
        given = parameters(args.param)
        if not args.localstack:
            check_stack_name(args.stack_name)
        if args.command == "template":
            catalog = load_catalog(args.catalog)
            lookup = secrets.names_to_resolve(catalog)  # only then are credentials needed
            arns = secret_arns(sessions.aws_session(args.region).client("secretsmanager"), catalog) if lookup else {}
            sys.stdout.write(render(catalog, arns=arns) + "\n")
            return 0
        if args.command == "destroy":
            return destroy(args, say)
        if args.command == "smoke":
            return run_smoke(args)
        return deploy_localstack(args, given) if args.localstack else deploy_aws(args, given)
    except (DeployError, ValueError) as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deploy: interrupted", file=sys.stderr)
        return 130
