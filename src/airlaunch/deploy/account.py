"""What a new account lacks, and whether the tasks' subnets can reach AWS: checked before the stack.

* ECS needs its service-linked role (AWSServiceRoleForECS) before a cluster with capacity
  providers can be created. AWS creates it on first use of the console, not of CloudFormation,
  and as a stack resource it fails in every account that has it: so it is created here, once.
* A Fargate task pulls its image from ECR (API and registry, layers from S3), sends its output
  to CloudWatch Logs, reads and writes S3 and renews its run session at STS. Its subnet needs a
  way out for each: a public IP with an internet gateway route, a NAT gateway, or VPC endpoints.
  Without one the task stays PENDING and fails with CannotPullContainerError minutes later, so
  the route tables, endpoints and security groups are read first and a gap is named.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from airlaunch.deploy.errors import DeployError, failed

ECS_SERVICE_ROLE = "AWSServiceRoleForECS"
INTERFACE_ENDPOINTS = ("ecr.api", "ecr.dkr", "logs", "sts")


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
    """How each subnet reaches ECR, S3, Logs and STS; DeployError naming the first that cannot."""
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
    if not any(_allows_https_out(group) for group in groups):
        raise DeployError(
            f"security groups {list(plan.security_groups)} allow no outbound HTTPS: tasks could not reach ECR, S3 "
            "or CloudWatch Logs; add an egress rule for TCP 443 (or all traffic) to one of them"
        )
    return [_route_of(subnet, tables, endpoints, plan) for subnet in subnets]


def _allows_https_out(group: dict[str, Any]) -> bool:
    for rule in group.get("IpPermissionsEgress", []):
        everywhere = any(r.get("CidrIp") == "0.0.0.0/0" for r in rule.get("IpRanges", [])) or rule.get("PrefixListIds")
        if rule.get("IpProtocol") == "-1" and everywhere:
            return True
        if rule.get("IpProtocol") == "tcp" and everywhere and rule.get("FromPort", 0) <= 443 <= rule.get("ToPort", 0):
            return True
    return False


def _table_of(subnet: dict[str, Any], tables: list[dict[str, Any]]) -> dict[str, Any] | None:
    for table in tables:
        if any(a.get("SubnetId") == subnet["SubnetId"] for a in table.get("Associations", [])):
            return table
    return next((t for t in tables if any(a.get("Main") for a in t.get("Associations", []))), None)


def _route_of(
    subnet: dict[str, Any], tables: list[dict[str, Any]], endpoints: list[dict[str, Any]], plan: NetworkPlan
) -> str:
    sid = subnet["SubnetId"]
    table = _table_of(subnet, tables) or {}
    default: dict[str, Any] = next(
        (r for r in table.get("Routes", []) if r.get("DestinationCidrBlock") == "0.0.0.0/0"), {}
    )
    if default.get("GatewayId", "").startswith("igw-"):
        if plan.assign_public_ip:
            return f"{sid}: public subnet, tasks get a public IP"
        raise DeployError(
            f"subnet {sid} is public (its default route goes to {default['GatewayId']}) but AssignPublicIp is false: "
            "tasks would get no public IP and could not pull their image. Pass AssignPublicIp=true, or use private "
            "subnets with a NAT gateway or VPC endpoints"
        )
    if default.get("NatGatewayId") or default.get("InstanceId") or default.get("NetworkInterfaceId"):
        return f"{sid}: private subnet, out through {default.get('NatGatewayId') or 'a NAT instance'}"
    if plan.create_endpoints:
        return f"{sid}: private subnet, through the VPC endpoints this stack creates"
    missing = _missing_endpoints(table.get("RouteTableId", ""), endpoints)
    if missing:
        raise DeployError(
            f"subnet {sid} has no route to the internet (no internet or NAT gateway) and its VPC lacks endpoints for "
            f"{', '.join(missing)}: tasks could not pull images or write logs. Pass VpcEndpoints=true VpcId=<vpc> "
            "RouteTableIds=<its route tables> (about 7 USD a month per endpoint and zone), or add a NAT gateway"
        )
    return f"{sid}: private subnet, through the VPC's existing endpoints"


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
