"""What a new account lacks, and whether the tasks' subnets can reach AWS: checked before the stack.

* ECS needs its service-linked role (AWSServiceRoleForECS) before a cluster with capacity
  providers can be created. AWS creates it on first use of the console, not of CloudFormation,
  and as a stack resource it fails in every account that has it: so it is created here, once.
* A Fargate task pulls its image from ECR (API and registry, layers from S3), sends its output
  to CloudWatch Logs, reads and writes S3 and renews its run session at STS. Its subnet needs a
  way out for each: a public IP with an internet gateway route, a NAT gateway, or VPC endpoints.
  Without one the task stays PENDING and fails with CannotPullContainerError minutes later, so
  the route tables, endpoints and security groups are read first and a gap is named. A default
  route to a transit gateway, a VPC peering connection or a firewall (Gateway Load Balancer or
  AWS Network Firewall) endpoint is a way out too, but only the other side knows where it leads:
  the check says so instead of refusing it.
* Interface endpoints with private DNS (the ones this stack creates, or the VPC's own) answer
  for ECR, Logs and STS only when the VPC has both ``enableDnsSupport`` and
  ``enableDnsHostnames`` (EC2 API Reference, CreateVpcEndpoint ``PrivateDnsEnabled``:
  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateVpcEndpoint.html); without
  them the endpoint's creation fails, or the tasks resolve the public names and cannot reach
  them. Such a VPC is refused with the command that fixes it.
* An interface endpoint takes at most one subnet per Availability Zone ("select one subnet per
  Availability Zone", AWS PrivateLink Guide, "Access an AWS service using an interface VPC
  endpoint": https://docs.aws.amazon.com/vpc/latest/privatelink/create-interface-endpoint.html),
  so the endpoints get :func:`one_subnet_per_zone` of the tasks' subnets, not all of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from airlaunch.deploy.errors import DeployError, failed

ECS_SERVICE_ROLE = "AWSServiceRoleForECS"
INTERFACE_ENDPOINTS = ("ecr.api", "ecr.dkr", "logs", "sts")
# The VPC attributes private DNS needs, in the order they must be turned on (DNS hostnames can be
# enabled only once DNS support is; ModifyVpcAttribute changes one attribute per request).
PRIVATE_DNS_ATTRIBUTES = (
    ("enableDnsSupport", "--enable-dns-support"),
    ("enableDnsHostnames", "--enable-dns-hostnames"),
)


def ensure_ecs_service_linked_role(iam: Any) -> bool:
    """Create ECS's service-linked role unless it exists; True when this call created it."""
    try:
        iam.get_role(RoleName=ECS_SERVICE_ROLE)
        return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchEntity":
            raise failed(f"looking up the ECS service-linked role {ECS_SERVICE_ROLE}", exc) from exc
    try:
        iam.create_service_linked_role(AWSServiceName="ecs.amazonaws.com")
    except ClientError as exc:
        error = exc.response.get("Error", {})
        taken = error.get("Code") == "EntityAlreadyExists" or "has been taken" in error.get("Message", "")
        if taken:  # created meanwhile (or by another deploy): what we wanted
            return False
        raise failed(
            f"creating the ECS service-linked role {ECS_SERVICE_ROLE}",
            exc,
            "it needs iam:CreateServiceLinkedRole; or have an administrator run "
            "`aws iam create-service-linked-role --aws-service-name ecs.amazonaws.com` once",
        ) from exc
    return True


@dataclass(frozen=True)
class NetworkPlan:
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    assign_public_ip: bool
    create_endpoints: bool  # VpcEndpoints=true in this deploy


def check_network(ec2: Any, plan: NetworkPlan) -> list[str]:
    """How each subnet reaches ECR, S3, Logs and STS; DeployError naming the first that cannot.

    Guarantees, when it returns: one of the security groups allows outbound TCP 443 to some
    destination (a line says when that is not everywhere, which the check cannot judge further);
    every subnet has a way out (a public IP, a NAT, a transit gateway, peering or firewall route,
    or endpoints for S3, ECR, Logs and STS); and when interface endpoints with private DNS are
    relied on (created by this stack, or the VPC's own in a subnet with no other way out), the
    VPC has DNS support and DNS hostnames on.
    """
    if not plan.subnets:
        raise DeployError(
            "Subnets is empty: Fargate tasks need subnets. In the default VPC (public subnets, no NAT) pass "
            'DEPLOY_PARAMS="Subnets=subnet-a,subnet-b SecurityGroups=sg-x AssignPublicIp=true"'
        )
    if not plan.security_groups:
        raise DeployError("SecurityGroups is empty: give the tasks a security group that allows outbound HTTPS (443)")
    try:
        subnets = ec2.describe_subnets(SubnetIds=list(plan.subnets))["Subnets"]
        vpcs = {s["VpcId"] for s in subnets}
        if len(vpcs) != 1:
            raise DeployError(f"Subnets {list(plan.subnets)} are in several VPCs {sorted(vpcs)}: use one VPC")
        vpc = vpcs.pop()
        tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"]
        endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["VpcEndpoints"]
        groups = ec2.describe_security_groups(GroupIds=list(plan.security_groups))["SecurityGroups"]
    except (ClientError, BotoCoreError) as exc:
        raise failed("reading the tasks' network (subnets, route tables, endpoints, security groups)", exc) from exc
    destinations = [d for group in groups for d in _https_destinations(group)]
    if not destinations:
        raise DeployError(
            f"security groups {list(plan.security_groups)} allow no outbound HTTPS: tasks could not reach ECR, S3 "
            "or CloudWatch Logs; add an egress rule for TCP 443 (or all traffic) to one of them"
        )
    routes = [_route_of(subnet, tables, endpoints, plan) for subnet in subnets]
    lines = [line for line, _ in routes]
    relying = [subnet["SubnetId"] for subnet, (_, private_dns) in zip(subnets, routes, strict=True) if private_dns]
    if plan.create_endpoints:
        _check_private_dns(ec2, vpc, "VpcEndpoints=true creates interface endpoints with private DNS")
    elif relying:
        _check_private_dns(ec2, vpc, f"subnets {relying} reach ECR, Logs and STS only through the VPC's own endpoints")
    if not any(d in ("0.0.0.0/0", "::/0") for d in destinations):
        lines.append(
            f"security groups {list(plan.security_groups)} allow HTTPS out only to {sorted(set(destinations))}: "
            "this check cannot tell whether that covers ECR, S3, CloudWatch Logs and STS (the endpoints' security "
            "group, S3's prefix list, a proxy); tasks fail with CannotPullContainerError if it does not"
        )
    return lines


def one_subnet_per_zone(ec2: Any, subnet_ids: tuple[str, ...]) -> tuple[str, ...]:
    """The first of the given subnets in each Availability Zone, in the order given.

    An interface endpoint has at most one network interface per zone, and a subnet lies in one
    zone, so these are the subnets the stack's interface endpoints can take (EndpointSubnets).
    """
    try:
        described = ec2.describe_subnets(SubnetIds=list(subnet_ids))["Subnets"]
    except (ClientError, BotoCoreError) as exc:
        raise failed("reading the tasks' subnets (their Availability Zones)", exc) from exc
    zone_of = {subnet["SubnetId"]: subnet["AvailabilityZone"] for subnet in described}
    chosen: dict[str, str] = {}
    for subnet in subnet_ids:
        chosen.setdefault(zone_of[subnet], subnet)
    return tuple(chosen.values())


def _check_private_dns(ec2: Any, vpc: str, why: str) -> None:
    """DeployError naming each DNS attribute private DNS needs that the VPC has off, and the command that sets it."""
    off = []
    for attribute, flag in PRIVATE_DNS_ATTRIBUTES:
        try:
            answer = ec2.describe_vpc_attribute(VpcId=vpc, Attribute=attribute)
        except (ClientError, BotoCoreError) as exc:
            raise failed(f"reading VPC {vpc}'s {attribute} attribute", exc) from exc
        if not answer.get(attribute[0].upper() + attribute[1:], {}).get("Value"):
            off.append((attribute, flag))
    if off:
        names = " and ".join(attribute for attribute, _ in off)
        fixes = "; then ".join(
            f"aws ec2 modify-vpc-attribute --vpc-id {vpc} {flag} '{{\"Value\":true}}'" for _, flag in off
        )
        raise DeployError(
            f"VPC {vpc} has {names} off, but {why}, and an endpoint's private DNS needs both enableDnsSupport and "
            "enableDnsHostnames on (without them an endpoint cannot be created with private DNS, and tasks resolve "
            f"ECR, Logs and STS to public addresses they cannot reach). Turn it on: {fixes}"
        )


def _https_destinations(group: dict[str, Any]) -> list[str]:
    """Where the group's egress rules allow TCP 443: each CIDR, prefix list and security group they name."""
    found: list[str] = []
    for rule in group.get("IpPermissionsEgress", []):
        protocol = str(rule.get("IpProtocol"))
        every_port = protocol == "-1"
        https = protocol in ("tcp", "6") and rule.get("FromPort", 0) <= 443 <= rule.get("ToPort", 0)
        if every_port or https:
            found += [r["CidrIp"] for r in rule.get("IpRanges", []) if r.get("CidrIp")]
            found += [r["CidrIpv6"] for r in rule.get("Ipv6Ranges", []) if r.get("CidrIpv6")]
            found += [p["PrefixListId"] for p in rule.get("PrefixListIds", []) if p.get("PrefixListId")]
            found += [g["GroupId"] for g in rule.get("UserIdGroupPairs", []) if g.get("GroupId")]
    return found


def _table_of(subnet: dict[str, Any], tables: list[dict[str, Any]]) -> dict[str, Any] | None:
    for table in tables:
        if any(a.get("SubnetId") == subnet["SubnetId"] for a in table.get("Associations", [])):
            return table
    return next((t for t in tables if any(a.get("Main") for a in t.get("Associations", []))), None)


def _route_of(
    subnet: dict[str, Any], tables: list[dict[str, Any]], endpoints: list[dict[str, Any]], plan: NetworkPlan
) -> tuple[str, bool]:
    """How the subnet's tasks reach AWS, and whether only interface endpoints (their private DNS) take them there."""
    sid = subnet["SubnetId"]
    table = _table_of(subnet, tables) or {}
    default: dict[str, Any] = next(
        (
            r
            for r in table.get("Routes", [])
            if r.get("DestinationCidrBlock") == "0.0.0.0/0" and r.get("State", "active") != "blackhole"
        ),
        {},
    )
    if default.get("GatewayId", "").startswith("igw-"):
        if plan.assign_public_ip:
            return f"{sid}: public subnet, tasks get a public IP", False
        raise DeployError(
            f"subnet {sid} is public (its default route goes to {default['GatewayId']}) but AssignPublicIp is false: "
            "tasks would get no public IP and could not pull their image. Pass AssignPublicIp=true, or use private "
            "subnets with a NAT gateway or VPC endpoints"
        )
    if default.get("NatGatewayId") or default.get("InstanceId") or default.get("NetworkInterfaceId"):
        nat = f"{sid}: private subnet, out through {default.get('NatGatewayId') or 'a NAT instance'}"
        return nat, False
    beyond = _beyond(default)
    if beyond:
        return (
            f"{sid}: private subnet, out through {beyond}; this check cannot see beyond it: its other side must "
            "lead to a NAT gateway (or, with AssignPublicIp=true, an internet gateway) or to endpoints for S3, ECR, "
            "CloudWatch Logs and STS, else tasks fail with CannotPullContainerError",
            False,
        )
    if plan.create_endpoints:
        return f"{sid}: private subnet, through the VPC endpoints this stack creates", True
    missing = _missing_endpoints(table.get("RouteTableId", ""), endpoints)
    if missing:
        raise DeployError(
            f"subnet {sid} has no route to the internet (no internet or NAT gateway, transit gateway, peering or "
            f"firewall endpoint) and its VPC lacks endpoints for {', '.join(missing)}: tasks could not pull images "
            "or write logs. Pass VpcEndpoints=true VpcId=<vpc> RouteTableIds=<its route tables> (about 7 USD a "
            "month per endpoint and zone), or add a NAT gateway"
        )
    return f"{sid}: private subnet, through the VPC's existing endpoints", True


def _beyond(default: dict[str, Any]) -> str:
    """A default route's target that leads out of the VPC to somewhere the check cannot see ("" for none)."""
    if default.get("TransitGatewayId"):
        return f"transit gateway {default['TransitGatewayId']}"
    if default.get("VpcPeeringConnectionId"):
        return f"VPC peering connection {default['VpcPeeringConnectionId']}"
    if default.get("GatewayId", "").startswith("vpce-"):  # the route table's name for a GWLB/firewall endpoint
        return f"firewall (Gateway Load Balancer) endpoint {default['GatewayId']}"
    if default.get("CoreNetworkArn"):
        return f"Cloud WAN core network {default['CoreNetworkArn']}"
    return ""


def _missing_endpoints(route_table: str, endpoints: Iterable[dict[str, Any]]) -> list[str]:
    have = set()
    for endpoint in endpoints:
        if endpoint.get("State", "available").lower() not in ("available", "pending"):
            continue
        service = endpoint["ServiceName"].rsplit(".", 2)
        name = ".".join(service[-2:]) if service[-2] == "ecr" else service[-1]
        if endpoint.get("VpcEndpointType") == "Gateway" and route_table not in endpoint.get("RouteTableIds", []):
            continue
        if endpoint.get("VpcEndpointType") == "Interface" and not endpoint.get("PrivateDnsEnabled"):
            continue
        have.add(name)
    return [name for name in ("s3", *INTERFACE_ENDPOINTS) if name not in have]


# Lambda keeps at least this much of an account's concurrency unreserved, and refuses a reservation
# that would leave less (Lambda Developer Guide, "Configuring reserved concurrency").
UNRESERVED_MINIMUM = 100


@dataclass(frozen=True)
class LauncherConcurrency:
    """How the launcher function's concurrency is bounded, which its RunTask pacing relies on."""

    reserve: bool  # ReserveLauncherConcurrency: reserve ``concurrency`` for the function
    concurrency: int  # LauncherConcurrency: the most execution environments that can run at once
    note: str


def launcher_concurrency(lam: Any, function: str, wanted: int) -> LauncherConcurrency:
    """Reserve ``wanted`` when the account can; else run unreserved and pace as if every environment the
    account's unreserved pool allows ran at once (a new account's concurrency can be as low as 10, where
    no reservation is possible at all): either way the launcher as a whole stays within its launch rate."""
    try:
        limits = lam.get_account_settings()["AccountLimit"]
        try:
            current = lam.get_function_concurrency(FunctionName=function).get("ReservedConcurrentExecutions") or 0
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            current = 0
    except (ClientError, BotoCoreError) as exc:
        raise failed("reading the account's Lambda concurrency (lambda:GetAccountSettings)", exc) from exc
    available = int(limits["UnreservedConcurrentExecutions"]) + int(current)
    if available - wanted >= UNRESERVED_MINIMUM:
        return LauncherConcurrency(True, wanted, f"the launcher reserves {wanted} of the account's concurrency")
    note = (
        f"the account's Lambda concurrency ({limits['ConcurrentExecutions']}, {available} unreserved) cannot spare "
        f"{wanted} with {UNRESERVED_MINIMUM} left unreserved, so the launcher runs unreserved and paces its launches "
        f"as if {available} ran at once; ask for a higher Lambda concurrency quota (Service Quotas) to launch faster"
    )
    return LauncherConcurrency(False, available, note)
