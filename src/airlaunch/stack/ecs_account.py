"""The ECS mode's emulated AWS account: what ``make deploy`` does, done by the deploy code into moto.

The split between the two emulators, and why:

* **LocalStack** keeps what Airflow and the tasks use and what its free build has, exactly as in
  the Docker mode: the results bucket, whose status.json writes S3 announces on the SQS queue
  the triggerer listens to, and the catalog's secrets (Secrets Manager, SSM), which the
  deploy code looks up (a secret's full ARN for its task definition), the launcher checks and
  the Fargate stand-in reads as ECS's agent would. Airflow's connection, the tasks' S3 endpoint
  and ``airlaunch secret set`` do not change between the modes.
* **moto** (served by the ECS emulator, airlaunch.stack.ecs_emulator) holds what LocalStack's
  free build lacks, ECS, and what the template ties to it: the template ``make deploy`` renders
  is deployed into moto's CloudFormation by the deploy code's own change-set flow, after the
  deploy code's own network check and service-linked-role step ran against moto's EC2 and IAM.
  So the cluster, the task definitions (ECR image URIs with the tags a push would give them),
  the roles, the launcher function's configuration (its environment) and the EventBridge rule
  that sends ECS task state changes to the launcher are the template's. The template's own
  bucket and queue in moto stay unused (named after LocalStack's, so the function's
  environment names the bucket the tasks really use).

Images are "pushed" into the local Docker engine: tagged under their ECR URI (which the
emulator's Fargate stand-in runs without pulling) and recorded in moto's ECR with a manifest
made from the local image, so the deploy code reads back and judges a single-image manifest
as it does on AWS; its digest is the manifest's SHA-256, as a registry computes it, so an image
rebuilt with anything changed (its config too, not only its layers) has another.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import boto3

from airlaunch.aws_names import function_name
from airlaunch.catalog import Catalog
from airlaunch.deploy import account, cloudformation, ecr_images, images, secrets
from airlaunch.deploy.template import body, render
from airlaunch.stack.config import StackConfig
from airlaunch.stack.ecs_emulator import EcsEmulator, Settings
from airlaunch.stack.ecs_emulator.limits import LimitSettings

log = logging.getLogger(__name__)

STACK_NAME = "airlaunch"
ACCOUNT_ID = "000000000000"  # LocalStack's: the two emulators' ARNs name one account
_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass(frozen=True)
class Deployment:
    """What the launcher of the ECS mode needs from the emulated account."""

    function_env: dict[str, str]  # the launcher function's environment, as the template set it
    timeout_seconds: int  # the function's timeout, as the template set it
    parameters: dict[str, str]


def ensure_network(ec2: Any) -> tuple[str, str]:
    """A public subnet (default route to an internet gateway) and a security group, as in a new account's
    default VPC; the same ones on a second call."""
    tagged = ec2.describe_subnets(Filters=[{"Name": "tag:airlaunch", "Values": ["ecs-mode"]}])["Subnets"]
    if tagged:
        subnet = tagged[0]
        groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [subnet["VpcId"]]},
                                                       {"Name": "group-name", "Values": ["default"]}])  # fmt: skip
        return subnet["SubnetId"], groups["SecurityGroups"][0]["GroupId"]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": True})
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
    subnet_id = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    ec2.create_tags(Resources=[subnet_id], Tags=[{"Key": "airlaunch", "Value": "ecs-mode"}])
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=gateway)
    ec2.associate_route_table(RouteTableId=table, SubnetId=subnet_id)
    group = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                                  {"Name": "group-name", "Values": ["default"]}])  # fmt: skip
    return subnet_id, group["SecurityGroups"][0]["GroupId"]


def local_registry(ecr: Any, runner: images.Runner = images.run) -> images.Runner:
    """A runner for the deploy code's Docker commands in which ``docker push`` records the image in moto's
    ECR (a single-image manifest made from the local image) instead of sending it anywhere: the local
    engine, where the image is tagged under its ECR URI, is the registry the Fargate stand-in pulls from."""

    def run(command: Sequence[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
        if list(command[:2]) != ["docker", "push"]:
            return runner(command, input=input)
        uri = command[2]
        repository, tag = uri.split("/", 1)[1].rsplit(":", 1)
        inspected = runner(["docker", "image", "inspect", uri])
        if inspected.returncode != 0:
            return inspected
        image = json.loads(inspected.stdout)[0]
        manifest = {
            "schemaVersion": 2,
            "mediaType": _MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 0, "digest": image["Id"]},
            "layers": [
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 0, "digest": layer}
                for layer in image["RootFS"]["Layers"]
            ],
        }
        text = json.dumps(manifest)
        ecr.put_image(repositoryName=repository, imageManifest=text, imageTag=tag, imageManifestMediaType=_MANIFEST,
                      imageDigest="sha256:" + hashlib.sha256(text.encode()).hexdigest())  # fmt: skip
        return subprocess.CompletedProcess(list(command), 0, f"pushed {uri} to the local engine\n", "")

    return run


def deploy(
    endpoint: str,
    catalog: Catalog,
    bucket: str,
    region: str,
    concurrency: int,
    say: Callable[[str], None] = print,
    stack_name: str = STACK_NAME,
    secrets_endpoint: str | None = None,
) -> Deployment:
    """Deploy the rendered template into the emulated account at ``endpoint`` as ``make deploy`` would.

    The images must exist in the local engine (``make images``): they are used as built, not rebuilt. The
    catalog's secrets are looked up at ``secrets_endpoint`` (LocalStack; default: the account itself).
    """
    session = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name=region)

    def client(name: str) -> Any:
        return session.client(name, endpoint_url=endpoint)

    ec2, ecr, cfn = client("ec2"), client("ecr"), client("cloudformation")
    subnet, group = ensure_network(ec2)
    plan = account.NetworkPlan(subnets=(subnet,), security_groups=(group,), assign_public_ip=True,
                               create_endpoints=False)  # fmt: skip
    for line in account.check_network(ec2, plan):
        say(f"==> Network: {line}")
    account.ensure_ecs_service_linked_role(client("iam"))
    registry = f"{client('sts').get_caller_identity()['Account']}.dkr.ecr.{region}.amazonaws.com"
    pusher = images.Images(ecr, registry, "legacy", runner=local_registry(ecr), say=say)
    pushed: dict[str, str] = {}
    for image in images.plan(catalog, stack_name, images.host_architecture(), None):
        local_tag = pusher.build(replace(image, dockerfile=None))  # as `make images` built it
        pusher.ensure_repository(image.repository, stack_name)
        pushed[image.local] = pusher.push(local_tag, image.repository)
    parameters = {
        "Subnets": subnet,
        "SecurityGroups": group,
        "AssignPublicIp": "true",
        "BucketName": bucket,
        "LauncherImageUri": pushed.pop("airlaunch/launcher"),
        "LauncherConcurrency": str(concurrency),
    }
    arns = secrets.resolve_arns(session.client("secretsmanager", endpoint_url=secrets_endpoint or endpoint), catalog)
    template = body(render(catalog, ecr_images.tags_of(pushed), secret_arns=arns))
    cloudformation.deploy(cfn, stack_name, parameters, lambda _question: True, template, 1)
    configuration = client("lambda").get_function_configuration(FunctionName=function_name(stack_name))
    environment = {k: str(v) for k, v in configuration["Environment"]["Variables"].items()}
    return Deployment(environment, int(configuration["Timeout"]), parameters)


def main() -> int:
    """``python -m airlaunch.stack.ecs_account`` (the stack's ``ecs-account`` component): serve the emulated
    account, deploy into it, record the deployment for the launcher, and serve until SIGTERM, when the
    emulator stops every task container it started."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    cfg = StackConfig()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    limits = LimitSettings(vcpu_quota=cfg.ecs_vcpu_quota)
    settings = Settings(
        port=cfg.ecs_port,
        account_id=ACCOUNT_ID,
        s3_endpoint=cfg.localstack_url,
        secrets_endpoint=cfg.localstack_url,
        lambda_endpoints={"": f"{cfg.lambda_url}/2015-03-31/functions/function/invocations"},
        stop_timeout=30.0,
        schedule_speedup=cfg.ecs_schedule_speedup,
        limits=limits,
    )
    with EcsEmulator(settings) as emulator:
        started = time.monotonic()
        deployment = deploy(
            emulator.url, Catalog.load(cfg.catalog), cfg.bucket, cfg.region, cfg.lambda_concurrency,
            secrets_endpoint=cfg.localstack_url,
        )  # fmt: skip
        record = {"pid": os.getpid(), "url": emulator.url, **asdict(deployment)}
        tmp = cfg.ecs_account_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(cfg.ecs_account_file)
        log.info("the emulated account is deployed (%.1f s): %s", time.monotonic() - started, emulator.url)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
