"""The deploy tool's own logic: exact image builds, the manifest check, the account and network checks,
stack states, the printed Airflow set-up, the smoke test; each failure in words."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from airlaunch.catalog import Catalog
from airlaunch.deploy import account, ecr_images, images, smoke
from airlaunch.deploy.cloudformation import change_kind
from airlaunch.deploy.connection import airflow_setup
from airlaunch.deploy.errors import DeployError

REGION = "eu-west-1"

# -- images ---------------------------------------------------------------------------------------


def test_buildx_builds_one_platform_without_attestations() -> None:
    command = images.build_command("buildx", dockerfile="lambda/Dockerfile", context="/repo", tag="t:1",
                                   architecture="x86_64", build_args={"B": "2", "A": "1"})  # fmt: skip
    assert command == [
        "docker", "buildx", "build", "--platform", "linux/amd64", "--provenance=false", "--sbom=false", "--load",
        "--network", "host", "-f", "lambda/Dockerfile", "-t", "t:1", "--build-arg", "A=1", "--build-arg", "B=2",
        "/repo",
    ]  # fmt: skip


def test_the_legacy_builder_names_the_platform_and_adds_no_attestation_flags() -> None:
    command = images.build_command("legacy", dockerfile="d", context=".", tag="t", architecture="arm64", build_args={})
    assert command == ["docker", "build", "--platform", "linux/arm64", "--network", "host", "-f", "d", "-t", "t", "."]


def _runner(answers: dict[str, int]) -> Any:
    def run(command: Sequence[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
        code = next((c for prefix, c in answers.items() if " ".join(command).startswith(prefix)), 0)
        return subprocess.CompletedProcess(list(command), code, "", "boom" if code else "")

    return run


@pytest.mark.parametrize(("buildx", "builder"), [(0, "buildx"), (1, "legacy")])
def test_the_builder_is_the_one_docker_has(buildx: int, builder: str) -> None:
    assert images.detect_builder(_runner({"docker buildx version": buildx})) == builder


def test_no_docker_engine_is_named() -> None:
    with pytest.raises(DeployError, match="no Docker engine answers"):
        images.detect_builder(_runner({"docker version": 1}))


def test_the_legacy_builder_cannot_cross_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "host_architecture", lambda: "x86_64")
    plan = images.ImagePlan("airlaunch/launcher", "s/launcher", "arm64", "lambda/Dockerfile")
    with pytest.raises(DeployError, match="legacy builder builds only for linux/amd64: install buildx with QEMU"):
        images.Images(None, "r", "legacy", _runner({})).build(plan)


def test_the_plan_has_the_launcher_and_each_distinct_catalog_image() -> None:
    catalog = Catalog.from_dict({"tasks": {
        "a": {"image": "acme/one:1", "command": ["x"], "build": {"dockerfile": "one/Dockerfile"}},
        "b": {"image": "acme/one:1", "command": ["y"], "build": {"dockerfile": "one/Dockerfile"}},
        "c": {"image": "acme/two:2", "command": ["z"], "architecture": "arm64"},
    }})  # fmt: skip
    plans = images.plan(catalog, "dev", "x86_64", "base:1")
    summary = [(p.local, p.repository, p.architecture, p.dockerfile, p.users) for p in plans]
    assert summary == [
        ("airlaunch/launcher", "dev/launcher", "x86_64", "lambda/Dockerfile", []),
        ("acme/one:1", "dev/one", "x86_64", "one/Dockerfile", ["a", "b"]),
        ("acme/two:2", "dev/two", "arm64", None, ["c"]),
    ]
    assert plans[1].build_args == {"BASE_IMAGE": "base:1", "RUNTIME_IMAGE": "airlaunch-deploy/task-runtime:x86_64"}


def test_one_image_cannot_serve_two_architectures() -> None:
    arm = {"image": "i:1", "command": ["x"], "architecture": "arm64"}
    catalog = Catalog.from_dict({"tasks": {"a": {"image": "i:1", "command": ["x"]}, "b": arm}})
    with pytest.raises(DeployError, match="share image i:1 but not its architecture"):
        images.plan(catalog, "dev", "x86_64", None)


@pytest.fixture
def ecr() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("ecr", region_name=REGION)
        client.create_repository(repositoryName="dev/launcher")
        yield client


CONFIG = {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, "digest": "sha256:" + "a" * 64}
SINGLE = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "config": CONFIG}
SINGLE["layers"] = []
OCI = "application/vnd.oci.image.manifest.v1+json"
# What BuildKit pushes by default for one platform: the image and its provenance attestation, in an index.
INDEX = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
    {"mediaType": OCI, "digest": "sha256:" + d * 64, "size": 1, "platform": {"architecture": a, "os": o}}
    for d, a, o in (("b", "amd64", "linux"), ("c", "unknown", "unknown"))
]}  # fmt: skip


def test_a_single_platform_manifest_is_what_lambda_gets(ecr: Any) -> None:
    ecr.put_image(repositoryName="dev/launcher", imageManifest=json.dumps(SINGLE), imageTag="good",
                  imageManifestMediaType=SINGLE["mediaType"])  # fmt: skip
    assert ecr_images.check_single_image(ecr, "dev/launcher", "good") == SINGLE["mediaType"]


def test_an_image_index_is_refused_before_lambda_sees_it(ecr: Any) -> None:
    ecr.put_image(repositoryName="dev/launcher", imageManifest=json.dumps(INDEX), imageTag="attested",
                  imageManifestMediaType=INDEX["mediaType"])  # fmt: skip
    with pytest.raises(DeployError, match=r"is an image index .* --provenance=false --sbom=false"):
        ecr_images.check_single_image(ecr, "dev/launcher", "attested")


def test_repositories_are_created_once_with_scanning_and_expiry(ecr: Any) -> None:
    said: list[str] = []
    pusher = images.Images(ecr, "r", "legacy", _runner({}), said.append)
    pusher.ensure_repository("dev/reference-tasks", "dev")
    pusher.ensure_repository("dev/reference-tasks", "dev")
    [repository] = ecr.describe_repositories(repositoryNames=["dev/reference-tasks"])["repositories"]
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    pusher.keep("dev/reference-tasks", ["0123456789abcdef"])  # moto checks the text as ECR's validator does
    rules = json.loads(ecr.get_lifecycle_policy(repositoryName="dev/reference-tasks")["lifecyclePolicyText"])
    assert rules == ecr_images.lifecycle_policy(["0123456789abcdef"])
    assert said == [
        "==> Created ECR repository dev/reference-tasks",
        "==> ECR dev/reference-tasks: keeps 0123456789abcdef (used by the stack) and the 10 images pushed last; "
        "older images expire",
    ]


def _expired(policy: dict[str, Any], pushed: list[set[str]]) -> set[int]:
    """Which of the images (oldest first, each a set of tags) ECR's lifecycle evaluation rules expire.

    As the ECR User Guide states them (LifecyclePolicies.html, lifecycle_policy_parameters.html):
    rules apply from the lowest rulePriority; a rule selects by its tagging requirements (every
    pattern of tagPatternList matched by one of an image's tags); with imageCountMoreThan it sorts
    what it selects newest first and marks those past the count; it identifies images that
    higher-priority rules match, but never expires an image matching a higher rule's requirements.
    """
    import fnmatch

    def selects(rule: dict[str, Any], tags: set[str]) -> bool:
        selection = rule["selection"]
        if selection["tagStatus"] == "untagged":
            return not tags
        patterns = selection.get("tagPatternList", [])
        return all(any(fnmatch.fnmatchcase(t, p) for t in tags) for p in patterns) and (
            selection["tagStatus"] == "any" or bool(tags)
        )

    rules = sorted(policy["rules"], key=lambda r: r["rulePriority"])
    expired: set[int] = set()
    for n, rule in enumerate(rules):
        assert rule["selection"]["countType"] == "imageCountMoreThan" and rule["action"] == {"type": "expire"}
        newest_first = [i for i in reversed(range(len(pushed))) if selects(rule, pushed[i])]
        for i in newest_first[rule["selection"]["countNumber"] :]:
            if not any(selects(higher, pushed[i]) for higher in rules[:n]):
                expired.add(i)
    return expired


def test_the_images_in_use_never_expire_and_the_last_ten_stay() -> None:
    """Every push has a tag of its own (its image id), so expiring untagged images would keep all forever."""
    policy = ecr_images.lifecycle_policy(["t00", "t03"])
    priorities = [rule["rulePriority"] for rule in policy["rules"]]
    assert priorities == [1, 2, 3] and policy["rules"][-1]["selection"]["tagStatus"] == "any"  # 'any' goes last
    assert [rule["selection"].get("tagPatternList") for rule in policy["rules"]] == [["t00"], ["t03"], None]
    pushed = [{f"t{i:02}"} for i in range(25)]  # t00 pushed first, t24 last; the stack uses t00 and t03
    assert _expired(policy, pushed) == set(range(1, 15)) - {3}
    assert _expired(ecr_images.lifecycle_policy([]), pushed) == set(range(15))
    assert _expired(ecr_images.lifecycle_policy(["t00"]), [*pushed, set(), set()]) == set(range(1, 17))


def test_what_the_stack_uses_is_read_from_its_template_and_launcher_parameter() -> None:
    from airlaunch.deploy.template import body, render

    cfn = boto3.client("cloudformation", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
    rendered = body(render(Catalog.load(images.REPO / "tasks" / "catalog.yaml"),
                           {"airlaunch/reference-tasks:latest": "fedcba9876543210"}))  # fmt: skip
    uri = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/dev/launcher:0123456789abcdef"
    stack = {"StackName": "dev", "StackStatus": "UPDATE_COMPLETE",
             "Parameters": [{"ParameterKey": "LauncherImageUri", "ParameterValue": uri}]}  # fmt: skip
    with Stubber(cfn) as stub:
        stub.add_response("get_template", {"TemplateBody": rendered}, {"StackName": "dev", "TemplateStage": "Original"})
        assert ecr_images.stack_image_tags(cfn, stack) == {
            "dev/reference-tasks": {"fedcba9876543210"},
            "dev/launcher": {"0123456789abcdef"},
        }
    assert (
        ecr_images.stack_image_tags(cfn, None)
        == {}
        == ecr_images.stack_image_tags(cfn, {"StackStatus": "REVIEW_IN_PROGRESS"})
    )


# -- the account and the network --------------------------------------------------------------------


def test_the_ecs_service_linked_role_is_created_once() -> None:
    with mock_aws():
        iam = boto3.client("iam", region_name=REGION)
        assert account.ensure_ecs_service_linked_role(iam) is True
        assert account.ensure_ecs_service_linked_role(iam) is False


@pytest.fixture
def vpc() -> Iterator[dict[str, Any]]:
    """A VPC with a public subnet (internet gateway), a NAT subnet and an isolated one."""
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc_id = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
        subnets = {}
        for index, kind in enumerate(("public", "nat", "isolated")):
            subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.1.{index}.0/24")["Subnet"]["SubnetId"]
            table = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
            ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
            subnets[kind] = (subnet, table)
        igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc_id)
        ec2.create_route(RouteTableId=subnets["public"][1], DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        nat = ec2.create_nat_gateway(SubnetId=subnets["public"][0])["NatGateway"]["NatGatewayId"]
        ec2.create_route(RouteTableId=subnets["nat"][1], DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)
        group = ec2.create_security_group(GroupName="t", Description="t", VpcId=vpc_id)["GroupId"]  # egress: all
        closed = ec2.create_security_group(GroupName="c", Description="c", VpcId=vpc_id)["GroupId"]
        ec2.revoke_security_group_egress(
            GroupId=closed, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
        )
        yield {"ec2": ec2, "vpc": vpc_id, "subnets": subnets, "group": group, "closed": closed}


def _plan(vpc: dict[str, Any], kind: str, **changes: Any) -> account.NetworkPlan:
    values = {"subnets": (vpc["subnets"][kind][0],), "security_groups": (vpc["group"],), "assign_public_ip": False,
              "create_endpoints": False}  # fmt: skip
    return account.NetworkPlan(**{**values, **changes})


def test_a_public_subnet_needs_a_public_ip(vpc: dict[str, Any]) -> None:
    with pytest.raises(DeployError, match=r"is public .* but AssignPublicIp is false.*Pass AssignPublicIp=true"):
        account.check_network(vpc["ec2"], _plan(vpc, "public"))
    [line] = account.check_network(vpc["ec2"], _plan(vpc, "public", assign_public_ip=True))
    assert "public subnet, tasks get a public IP" in line


def test_a_private_subnet_with_nat_is_enough(vpc: dict[str, Any]) -> None:
    [line] = account.check_network(vpc["ec2"], _plan(vpc, "nat"))
    assert "out through nat-" in line


def test_an_isolated_subnet_needs_the_endpoints(vpc: dict[str, Any]) -> None:
    with pytest.raises(DeployError, match=r"lacks endpoints for s3, ecr.api, ecr.dkr, logs, sts.*VpcEndpoints=true"):
        account.check_network(vpc["ec2"], _plan(vpc, "isolated"))
    vpc["ec2"].modify_vpc_attribute(VpcId=vpc["vpc"], EnableDnsHostnames={"Value": True})  # private DNS needs it
    [line] = account.check_network(vpc["ec2"], _plan(vpc, "isolated", create_endpoints=True))
    assert "through the VPC endpoints this stack creates" in line
    ec2, (subnet, table) = vpc["ec2"], vpc["subnets"]["isolated"]
    ec2.create_vpc_endpoint(VpcId=vpc["vpc"], ServiceName=f"com.amazonaws.{REGION}.s3", RouteTableIds=[table],
                            VpcEndpointType="Gateway")  # fmt: skip
    for service in ("ecr.api", "ecr.dkr", "logs"):
        ec2.create_vpc_endpoint(VpcId=vpc["vpc"], ServiceName=f"com.amazonaws.{REGION}.{service}",
                                VpcEndpointType="Interface", SubnetIds=[subnet], PrivateDnsEnabled=True)  # fmt: skip
    with pytest.raises(DeployError, match="lacks endpoints for sts"):
        account.check_network(ec2, _plan(vpc, "isolated"))


def _existing_endpoints(vpc: dict[str, Any], kind: str) -> None:
    ec2, (subnet, table) = vpc["ec2"], vpc["subnets"][kind]
    ec2.create_vpc_endpoint(VpcId=vpc["vpc"], ServiceName=f"com.amazonaws.{REGION}.s3", RouteTableIds=[table],
                            VpcEndpointType="Gateway")  # fmt: skip
    for service in account.INTERFACE_ENDPOINTS:
        ec2.create_vpc_endpoint(VpcId=vpc["vpc"], ServiceName=f"com.amazonaws.{REGION}.{service}",
                                VpcEndpointType="Interface", SubnetIds=[subnet], PrivateDnsEnabled=True)  # fmt: skip


def test_endpoints_need_the_vpcs_dns_support_and_hostnames(vpc: dict[str, Any]) -> None:
    """A new VPC has DNS hostnames off (as on AWS): the endpoints' private DNS would not work there."""
    ec2, vpc_id = vpc["ec2"], vpc["vpc"]
    fix = f"aws ec2 modify-vpc-attribute --vpc-id {vpc_id} --enable-dns-hostnames '{{\"Value\":true}}'"
    with pytest.raises(DeployError) as created:
        account.check_network(ec2, _plan(vpc, "isolated", create_endpoints=True))
    assert str(created.value).startswith(f"VPC {vpc_id} has enableDnsHostnames off, but VpcEndpoints=true creates")
    assert str(created.value).endswith(f"Turn it on: {fix}")
    _existing_endpoints(vpc, "isolated")  # the VPC's own endpoints, relied on by a subnet with no other way out
    with pytest.raises(DeployError, match=r"has enableDnsHostnames off, but subnets \['subnet-.*own endpoints"):
        account.check_network(ec2, _plan(vpc, "isolated"))
    [line] = account.check_network(ec2, _plan(vpc, "nat"))  # a subnet with a NAT relies on no private DNS
    assert "out through nat-" in line
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsSupport={"Value": False})
    with pytest.raises(DeployError) as both:
        account.check_network(ec2, _plan(vpc, "isolated"))
    assert "has enableDnsSupport and enableDnsHostnames off" in str(both.value)
    assert str(both.value).endswith(f"--enable-dns-support '{{\"Value\":true}}'; then {fix}")  # support first
    for attribute in ("EnableDnsSupport", "EnableDnsHostnames"):
        ec2.modify_vpc_attribute(VpcId=vpc_id, **{attribute: {"Value": True}})
    [line] = account.check_network(ec2, _plan(vpc, "isolated"))
    assert "through the VPC's existing endpoints" in line


def test_the_interface_endpoints_get_one_subnet_per_zone() -> None:
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc_id = ec2.create_vpc(CidrBlock="10.2.0.0/16")["Vpc"]["VpcId"]
        zones = ("eu-west-1b", "eu-west-1a", "eu-west-1b", "eu-west-1c", "eu-west-1a")
        subnets = tuple(
            ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.2.{i}.0/24", AvailabilityZone=zone)["Subnet"]["SubnetId"]
            for i, zone in enumerate(zones)
        )
        assert account.one_subnet_per_zone(ec2, subnets) == (subnets[0], subnets[1], subnets[3])


def test_a_transit_gateway_peering_or_firewall_route_is_a_way_out(vpc: dict[str, Any]) -> None:
    """The check cannot see past these (another VPC, a firewall), so it accepts them and says so."""
    ec2, vpc_id = vpc["ec2"], vpc["vpc"]
    [subnet, table] = vpc["subnets"]["isolated"]
    other = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    service = f"com.amazonaws.vpce.{REGION}.vpce-svc-0f1a2b3c4d5e6f708"  # a firewall's endpoint service
    firewall = ec2.create_vpc_endpoint(VpcId=vpc_id, VpcEndpointType="GatewayLoadBalancer", SubnetIds=[subnet],
                                       ServiceName=service)  # fmt: skip
    tgw = ec2.create_transit_gateway()["TransitGateway"]["TransitGatewayId"]
    targets = {
        "transit gateway tgw-": {"TransitGatewayId": tgw},
        "VPC peering connection pcx-": {"VpcPeeringConnectionId": ec2.create_vpc_peering_connection(
            VpcId=vpc_id, PeerVpcId=other)["VpcPeeringConnection"]["VpcPeeringConnectionId"]},
        "firewall (Gateway Load Balancer) endpoint vpce-": {"VpcEndpointId": firewall["VpcEndpoint"]["VpcEndpointId"]},
    }  # fmt: skip
    for words, target in targets.items():
        ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", **target)
        [line] = account.check_network(ec2, _plan(vpc, "isolated"))
        assert f"private subnet, out through {words}" in line and "this check cannot see beyond it" in line
        ec2.delete_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0")


def test_a_default_route_to_a_deleted_target_is_no_way_out() -> None:
    """A NAT gateway deleted under its route leaves the route as a blackhole (EC2 API Reference, Route.State)."""
    ec2 = boto3.client("ec2", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
    route = {"DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": "nat-0abc", "State": "blackhole"}
    table = {"RouteTableId": "rtb-1", "Associations": [{"SubnetId": "subnet-1"}], "Routes": [route]}
    egress = {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    with Stubber(ec2) as stub:
        stub.add_response("describe_subnets", {"Subnets": [{"SubnetId": "subnet-1", "VpcId": "vpc-1"}]})
        stub.add_response("describe_route_tables", {"RouteTables": [table]})
        stub.add_response("describe_vpc_endpoints", {"VpcEndpoints": []})
        stub.add_response("describe_security_groups", {"SecurityGroups": [{"GroupId": "sg-1",
                          "IpPermissionsEgress": [egress]}]})  # fmt: skip
        plan = account.NetworkPlan(("subnet-1",), ("sg-1",), assign_public_ip=False, create_endpoints=False)
        with pytest.raises(DeployError, match="subnet subnet-1 has no route to the internet"):
            account.check_network(ec2, plan)


def test_https_out_to_a_security_group_or_a_prefix_list_is_enough(vpc: dict[str, Any]) -> None:
    """The tasks' group may allow 443 only to the endpoints' group and S3's prefix list, as a locked-down VPC does."""
    ec2, group = vpc["ec2"], vpc["closed"]
    endpoints = ec2.create_security_group(GroupName="e", Description="e", VpcId=vpc["vpc"])["GroupId"]
    https = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443}
    ec2.authorize_security_group_egress(GroupId=group, IpPermissions=[{**https, "UserIdGroupPairs": [
        {"GroupId": endpoints}]}])  # fmt: skip
    lines = account.check_network(ec2, _plan(vpc, "nat", security_groups=(group,)))
    assert lines[-1].startswith(f"security groups ['{group}'] allow HTTPS out only to ['{endpoints}']")
    assert "cannot tell whether that covers ECR, S3, CloudWatch Logs and STS" in lines[-1]
    prefix_list = ec2.create_managed_prefix_list(PrefixListName="s3", MaxEntries=1, AddressFamily="IPv4")
    pl = prefix_list["PrefixList"]["PrefixListId"]
    ec2.authorize_security_group_egress(
        GroupId=group, IpPermissions=[{**https, "PrefixListIds": [{"PrefixListId": pl}]}]
    )
    assert f"'{pl}'" in account.check_network(ec2, _plan(vpc, "nat", security_groups=(group,)))[-1]
    [line] = account.check_network(ec2, _plan(vpc, "nat"))  # all traffic everywhere: nothing to add
    assert "out through nat-" in line


def test_no_subnets_or_no_way_out_are_named(vpc: dict[str, Any]) -> None:
    with pytest.raises(DeployError, match=r"Subnets is empty.*AssignPublicIp=true"):
        account.check_network(vpc["ec2"], _plan(vpc, "nat", subnets=()))
    with pytest.raises(DeployError, match="allow no outbound HTTPS"):
        account.check_network(vpc["ec2"], _plan(vpc, "nat", security_groups=(vpc["closed"],)))


# -- make destroy: no task left running ------------------------------------------------------------


class _Clock:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _ecs() -> Any:
    return boto3.client("ecs", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")


ARN_A = "arn:aws:ecs:eu-west-1:123456789012:task/dev/aaaa"
ARN_B = "arn:aws:ecs:eu-west-1:123456789012:task/dev/bbbb"
STOP = {"cluster": "dev", "reason": "make destroy: stack dev is being deleted"}


def _described(*states: tuple[str, str]) -> dict[str, Any]:
    return {"tasks": [{"taskArn": arn, "lastStatus": status} for arn, status in states], "failures": []}


def test_destroy_stops_tasks_started_while_it_waits_and_waits_until_they_are_stopped() -> None:
    """A launch already under way when the launcher was throttled starts a task after the first listing."""
    from airlaunch.deploy import teardown

    clock, said = _Clock(), []
    with Stubber(ecs := _ecs()) as stub:
        stub.add_response("list_tasks", {"taskArns": [ARN_A]}, {"cluster": "dev", "desiredStatus": "RUNNING"})
        stub.add_response("stop_task", {}, {**STOP, "task": ARN_A})
        stub.add_response("describe_tasks", _described((ARN_A, "DEPROVISIONING")), {"cluster": "dev", "tasks": [ARN_A]})
        stub.add_response("list_tasks", {"taskArns": [ARN_B]}, {"cluster": "dev", "desiredStatus": "RUNNING"})
        stub.add_response("stop_task", {}, {**STOP, "task": ARN_B})
        stub.add_response("describe_tasks", _described((ARN_A, "STOPPED"), (ARN_B, "STOPPED")),
                          {"cluster": "dev", "tasks": [ARN_A, ARN_B]})  # fmt: skip
        for _ in range(2):  # at 10 s nothing runs, but 12 s have not passed: listed once more at 15 s
            stub.add_response("list_tasks", {"taskArns": []}, {"cluster": "dev", "desiredStatus": "RUNNING"})
        left = teardown.stop_tasks(ecs, "dev", STOP["reason"], said.append, settle_seconds=12, poll_seconds=5,
                                   clock=clock, sleep=clock.sleep)  # fmt: skip
        stub.assert_no_pending_responses()
    assert left == [] and clock.slept == [5, 5, 5]  # listed again until 12 s had passed with nothing running
    assert said == ["==> Stopping 1 running task(s) in cluster dev; waiting up to 300 s until ECS reports them STOPPED",
                    "==> Stopped 2 task(s) in cluster dev in 15 s"]  # fmt: skip


def test_destroy_waits_a_bounded_time_for_a_task_that_does_not_stop() -> None:
    from airlaunch.deploy import teardown

    clock, said = _Clock(), []
    with Stubber(ecs := _ecs()) as stub:
        stub.add_response("list_tasks", {"taskArns": [ARN_A]}, {"cluster": "dev", "desiredStatus": "RUNNING"})
        stub.add_response("stop_task", {}, {**STOP, "task": ARN_A})
        for _ in range(4):  # at 0, 10, 20 and 30 s: still stopping
            stub.add_response("describe_tasks", _described((ARN_A, "STOPPING")), {"cluster": "dev", "tasks": [ARN_A]})
            stub.add_response("list_tasks", {"taskArns": []}, {"cluster": "dev", "desiredStatus": "RUNNING"})
        left = teardown.stop_tasks(ecs, "dev", STOP["reason"], said.append, wait_seconds=30, poll_seconds=10,
                                   clock=clock, sleep=clock.sleep)  # fmt: skip
    assert left == [ARN_A] and clock.now == 30
    assert said[-1] == f"==> 1 task(s) in cluster dev not STOPPED after 30 s, going on: {ARN_A}"


def test_destroy_without_a_cluster_or_a_function_has_nothing_to_stop() -> None:
    from airlaunch.deploy import teardown

    with Stubber(ecs := _ecs()) as stub:
        stub.add_client_error("list_tasks", "ClusterNotFoundException", "Cluster not found.")
        assert teardown.stop_tasks(ecs, "dev", "r", print, clock=_Clock(), sleep=_Clock().sleep) == []
    lam = boto3.client("lambda", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(lam) as stub:
        stub.add_client_error("put_function_concurrency", "ResourceNotFoundException", "Function not found")
        assert teardown.throttle_launcher(lam, "dev-launcher") is False
        stub.add_response("put_function_concurrency", {"ReservedConcurrentExecutions": 0},
                          {"FunctionName": "dev-launcher", "ReservedConcurrentExecutions": 0})  # fmt: skip
        assert teardown.throttle_launcher(lam, "dev-launcher") is True


# -- the stack's state ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("", "CREATE"),
        ("REVIEW_IN_PROGRESS", "CREATE"),
        ("CREATE_COMPLETE", "UPDATE"),
        ("UPDATE_ROLLBACK_COMPLETE", "UPDATE"),
        ("UPDATE_IN_PROGRESS", "another deployment or deletion is running"),
        ("DELETE_IN_PROGRESS", "another deployment or deletion is running"),
        ("ROLLBACK_COMPLETE", "its first create failed .* `make destroy DEPLOY_STACK=dev`"),
        ("UPDATE_ROLLBACK_FAILED", "continue-update-rollback"),
        ("DELETE_FAILED", "delete it .*make destroy DEPLOY_STACK=dev"),
    ],
)
def test_the_stack_state_decides_before_anything_is_built(status: str, outcome: str) -> None:
    if outcome in ("CREATE", "UPDATE"):
        assert change_kind("dev", status) == outcome
    else:
        with pytest.raises(DeployError, match=f"stack dev is {status}[: ].*{outcome}"):
            change_kind("dev", status)


# -- what Airflow is told ---------------------------------------------------------------------------


def test_the_airflow_connection_and_variables_are_printed() -> None:
    outputs = {"AirflowRoleArn": "arn:aws:iam::1:role/dev-AirflowRole-X", "LauncherFunctionName": "dev-launcher",
               "StatusQueueUrl": "https://sqs/1/dev-status", "BucketName": "dev-results", "KeyPrefix": "runs",
               "AirflowPolicyArn": "arn:aws:iam::1:policy/p"}  # fmt: skip
    text = airflow_setup(outputs, REGION)
    extra = json.dumps({"region_name": REGION, "role_arn": outputs["AirflowRoleArn"]})
    assert f"airflow connections add aws_default --conn-type aws --conn-extra '{extra}'" in text
    for line in ("export AIRLAUNCH_FUNCTION_NAME=dev-launcher", "export AIRLAUNCH_STATUS_QUEUE=https://sqs/1/dev-status",
                 "export AIRLAUNCH_BUCKET=dev-results"):  # fmt: skip
        assert line in text


# -- the smoke test ----------------------------------------------------------------------------------


def _payload(data: Any) -> dict[str, Any]:
    raw = json.dumps(data).encode()
    return {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(raw), len(raw))}


def _body(data: bytes) -> dict[str, Any]:
    return {"Body": StreamingBody(io.BytesIO(data), len(data))}


def _smoke_answers(lambdas: Stubber, objects: Stubber, peek: dict[str, Any]) -> None:
    """A deployed stack's answers to the smoke test: the echo task, ECS's STOPPED event (ecs.json), the peek."""
    prefix = "runs/airlaunch_smoke/smoke__1/diagnostic/-1/1/"
    peek_prefix = "runs/airlaunch_smoke/smoke__1/peek/-1/1/"
    for where, task_ref in ((prefix, "arn:t"), (peek_prefix, "arn:p")):
        handle = {"backend": "ecs", "task_ref": task_ref, "bucket": "b", "prefix": where, "launched": True}
        if where == prefix:
            lambdas.add_response("invoke", _payload({"ok": True, "backend": "ecs", "tasks": ["diagnostic"]}))
        lambdas.add_response("invoke", _payload({"ok": True, "handle": handle}))
        keys = {"result": where + "result.json", "log": where + "log.txt"}
        status = {"state": "succeeded", "exit_code": 0, "reason": "exit", "started_at": "t", "ended_at": "t",
                  "execution_id": "e", "result_keys": keys}  # fmt: skip
        objects.add_client_error("get_object", "NoSuchKey", http_status_code=404)
        objects.add_response("get_object", _body(json.dumps(status).encode()))
        if where == prefix:
            objects.add_response("get_object", _body(b'{"echo": "smoke"}'))
            objects.add_response("get_object", _body(b"diagnostic action=echo\n"))
            objects.add_client_error("get_object", "NoSuchKey", http_status_code=404)  # the event comes a moment later
            objects.add_response("get_object", _body(b'{"stopped_at": "t"}'))
        else:
            objects.add_response("get_object", _body(json.dumps(peek).encode()))


def _smoke_clients(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """The smoke test's Lambda and S3 clients, to be stubbed; its pauses take no time."""
    monkeypatch.setattr(smoke.time, "sleep", lambda seconds: None)
    creds = {"region_name": REGION, "aws_access_key_id": "x", "aws_secret_access_key": "y"}
    return boto3.client("lambda", **creds), boto3.client("s3", **creds)


def test_smoke_runs_the_diagnostic_task_and_times_each_step(monkeypatch: pytest.MonkeyPatch) -> None:
    lam, s3 = _smoke_clients(monkeypatch)
    peek = {"proc_1_environ": "denied (Permission denied)", "own_environment_has_run_session": False}
    with Stubber(lam) as lambdas, Stubber(s3) as objects:
        _smoke_answers(lambdas, objects, peek)
        run = smoke.smoke(lam, s3, "dev-launcher", timeout=10, poll=0.01)
    assert run.result == {"echo": "smoke"} and run.log == "diagnostic action=echo\n" and run.peek == peek
    assert [name for name, _ in run.steps] == ["ping the launcher", "launch (Lambda)", "container ran, status.json",
                                               "read result.json", "read log.txt", "ECS's stopped event (ecs.json)",
                                               "the command sees no run session"]  # fmt: skip
    assert "launch (Lambda)" in run.report() and " s" in run.report()


def test_smoke_fails_when_the_tasks_command_can_read_its_run_session(monkeypatch: pytest.MonkeyPatch) -> None:
    lam, s3 = _smoke_clients(monkeypatch)
    peek = {"proc_1_environ": "readable, holds the run session", "own_environment_has_run_session": False}
    with Stubber(lam) as lambdas, Stubber(s3) as objects:
        _smoke_answers(lambdas, objects, peek)
        with pytest.raises(DeployError, match="can read the runtime's run session"):
            smoke.smoke(lam, s3, "dev-launcher", timeout=10, poll=0.01)


def test_the_checklist_names_this_stack_and_the_docs_list_every_check() -> None:
    from airlaunch.deploy.checklist import checklist, render

    checks = checklist("dev", "eu-west-1", "arn:aws:ecs:eu-west-1:1:task/dev/abc", "dev-results")
    text = render(checks)
    assert "--cluster dev --tasks arn:aws:ecs:eu-west-1:1:task/dev/abc" in text and "dev-launcher" in text
    docs = (Path(__file__).resolve().parents[2] / "docs" / "deploy-aws.md").read_text()
    assert [check.what for check in checks if check.what not in docs] == []


def test_a_failed_smoke_says_which_step_and_why() -> None:
    lam = boto3.client("lambda", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(lam) as lambdas:
        lambdas.add_client_error("invoke", "ResourceNotFoundException", "Function not found: dev-launcher")
        with pytest.raises(DeployError, match="invoking the launcher dev-launcher failed: ResourceNotFoundException"):
            smoke.smoke(lam, None, "dev-launcher")


# -- the command line --------------------------------------------------------------------------------


def test_a_stack_name_that_cannot_name_ecr_repositories_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from airlaunch.deploy.cli import main

    assert main(["template", "--stack-name", "Dev_Stack"]) == 2
    assert "stack name 'Dev_Stack': use 1-31 lower-case letters" in capsys.readouterr().err


def test_the_template_command_prints_what_deploy_would_deploy(capsys: pytest.CaptureFixture[str]) -> None:
    from airlaunch.deploy.cli import main

    assert main(["template", "--stack-name", "dev"]) == 0
    template = json.loads(capsys.readouterr().out)
    families = [r for r in template["Resources"].values() if r["Type"] == "AWS::ECS::TaskDefinition"]
    assert len(families) == len(Catalog.load(images.REPO / "tasks" / "catalog.yaml").tasks)  # one a catalog task


def test_a_bad_catalog_is_named_not_traced(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from airlaunch.deploy.cli import main

    bad = tmp_path / "catalog.yaml"
    bad.write_text("tasks: {x: {image: i, command: [c], cpu: 99}}")
    assert main(["template", "--catalog", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "task 'x': cpu must be in" in err and "Traceback" not in err


# -- throttling ----------------------------------------------------------------------------------------


def test_launcher_and_airflow_clients_retry_throttling(monkeypatch: pytest.MonkeyPatch) -> None:
    """The launcher's ECS and STS clients retry a call a few times only (its RunTask loop owns the retries and
    their budget, paced across execution environments); Airflow's Lambda clients adapt their rate."""
    from airlaunch.launcher.backends.ecs import EcsBackend
    from airlaunch.launcher.settings import LauncherSettings
    from airlaunch.providers.airflow.hooks.launcher import LauncherHook

    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AIRLAUNCH_RUN_ROLE_ARN", "arn:aws:iam::123456789012:role/al-run-files-us-east-1")
    backend = EcsBackend(LauncherSettings())
    assert backend.run_sessions is not None
    for client in (backend.client, backend.run_sessions.sts):
        assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 4}  # 3 retries
    plain = {"conn_type": "aws", "login": "a", "password": "secret", "extra": {"region_name": REGION}}
    monkeypatch.setenv("AIRFLOW_CONN_PLAIN", json.dumps(plain))
    assert LauncherHook(function_name="f", aws_conn_id="plain").conn.meta.config.retries["mode"] == "adaptive"
    own = {**plain, "extra": {"region_name": REGION, "config_kwargs": {"retries": {"mode": "standard"}}}}
    monkeypatch.setenv("AIRFLOW_CONN_OWN", json.dumps(own))
    assert LauncherHook(function_name="f", aws_conn_id="own").conn.meta.config.retries["mode"] == "standard"


# -- the launcher's concurrency -------------------------------------------------------------------------


def _lambda_settings(total: int, unreserved: int, reserved: int | None) -> Any:
    lam = boto3.client("lambda", region_name=REGION, aws_access_key_id="a", aws_secret_access_key="b")
    stub = Stubber(lam)
    stub.add_response("get_account_settings", {"AccountLimit": {
        "TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000, "CodeSizeZipped": 52428800,
        "ConcurrentExecutions": total, "UnreservedConcurrentExecutions": unreserved}})  # fmt: skip
    if reserved is None:
        stub.add_client_error("get_function_concurrency", "ResourceNotFoundException", "Function not found", 404)
    else:
        stub.add_response("get_function_concurrency", {"ReservedConcurrentExecutions": reserved})
    stub.activate()
    return lam


@pytest.mark.parametrize(
    ("total", "unreserved", "reserved", "expected"),
    [
        (1000, 1000, None, (True, 10)),  # the usual account: reserve
        (1000, 100, 10, (True, 10)),  # a redeploy: its own reservation counts as available
        (10, 10, None, (False, 10)),  # a new account: nothing can be reserved; paced for all 10
        (1000, 105, None, (False, 105)),  # others reserved the rest: paced for the unreserved pool
    ],
)
def test_the_launcher_reserves_its_concurrency_where_the_account_can_and_is_paced_for_it_where_not(
    total: int, unreserved: int, reserved: int | None, expected: tuple[bool, int]
) -> None:
    from airlaunch.deploy.account import launcher_concurrency

    plan = launcher_concurrency(_lambda_settings(total, unreserved, reserved), "al-launcher", 10)
    assert (plan.reserve, plan.concurrency) == expected
    assert ("cannot spare" in plan.note) is not plan.reserve
