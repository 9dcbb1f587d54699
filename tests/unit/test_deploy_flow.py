"""`make deploy`, `make deploy` again and `make destroy` from end to end against moto, with Docker faked.

Every AWS call goes to moto (in-process); the docker commands are answered by a fake that
records them and, for `docker push`, puts a single-platform manifest into moto's ECR, as a
real push would. What is checked: the order of the steps, what a fresh account gets
(service-linked role, repositories), that the second deploy changes nothing, and that destroy
removes the stack and the repositories with their images but keeps the results bucket.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator, Sequence
from typing import Any

import boto3
import pytest
from moto import mock_aws

from airlaunch.catalog import Catalog
from airlaunch.deploy import account as account_checks
from airlaunch.deploy import cli, cloudformation, images, teardown
from airlaunch.deploy.errors import DeployError

REGION = "eu-west-1"
MANIFEST = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1,
                       "digest": "sha256:" + "a" * 64}, "layers": []}  # fmt: skip


class FakeDocker:
    """Answers the docker CLI as a working engine with the legacy builder would."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []
        self.changed: set[str] = set()  # local images rebuilt with other contents: a new image id

    def __call__(self, command: Sequence[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
        command = list(command)
        self.commands.append(command)
        out, code = "", 0
        if command[:3] == ["docker", "buildx", "version"]:
            code = 1
        elif command[:3] == ["docker", "image", "inspect"]:
            field, image = command[4], command[5]
            seed = image + ("+changed" if image in self.changed else "")
            out = "amd64" if "Architecture" in field else "sha256:" + hashlib.sha256(seed.encode()).hexdigest()
        elif command[:2] == ["docker", "push"]:
            registry_path, tag = command[2].rsplit(":", 1)
            repository = registry_path.split("/", 1)[1]
            boto3.client("ecr", region_name=REGION).put_image(
                repositoryName=repository, imageManifest=json.dumps(MANIFEST), imageTag=tag,
                imageManifestMediaType=MANIFEST["mediaType"],
            )  # fmt: skip
        return subprocess.CompletedProcess(command, code, out, "")


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AUTO_APPROVE", "1")
    docker = FakeDocker()
    monkeypatch.setattr(images, "run", docker)
    monkeypatch.setattr(images, "host_architecture", lambda: "x86_64")
    monkeypatch.setattr(teardown, "FUNCTION_TIMEOUT_SECONDS", 0)  # destroy: moto's function runs no invocation
    # moto has no lambda:GetAccountSettings: an account that can reserve (AWS's answers: test_deploy_tool)
    reserve = account_checks.LauncherConcurrency
    monkeypatch.setattr(account_checks, "launcher_concurrency", lambda lam, fn, n: reserve(True, n, "reserved"))
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        [vpc] = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
        main = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["RouteTables"][0]
        if not any(r.get("GatewayId", "").startswith("igw-") for r in main["Routes"]):  # as AWS's default VPC has
            igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
            ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc["VpcId"])
            ec2.create_route(RouteTableId=main["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"] if s.get("DefaultForAz")][:2]
        [group] = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"]
        yield {"docker": docker, "subnets": subnets, "group": group["GroupId"]}


def _deploy(account: dict[str, Any], *extra: str) -> int:
    params = [f"Subnets={','.join(account['subnets'])}", f"SecurityGroups={account['group']}", "AssignPublicIp=true"]
    return cli.main(["deploy", "--stack-name", "dev", *[a for p in params for a in ("--param", p)], *extra])


def test_deploy_from_a_fresh_account_then_again_then_destroy(
    account: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[dict[str, str], str]] = []
    real = cloudformation.deploy

    def spy(cfn: Any, name: str, params: dict[str, str], approve: Any, body: str, *args: Any) -> dict[str, str]:
        sent.append((params, body))
        return real(cfn, name, params, approve, body, *args) if len(sent) == 1 else {}

    monkeypatch.setattr(cloudformation, "deploy", spy)
    assert _deploy(account) == 0
    first = capsys.readouterr().out
    steps = [
        "==> Network: subnet-",
        "==> Created the ECS service-linked role AWSServiceRoleForECS",
        "==> Building airlaunch/launcher for linux/amd64 (legacy)",
        "==> Created ECR repository dev/launcher",
        "==> Pushing 123456789012.dkr.ecr.eu-west-1.amazonaws.com/dev/launcher:",
        "==> Building the task runtime for linux/amd64",
        "==> Building airlaunch/reference-tasks:latest for linux/amd64 (legacy)",
        "==> Created ECR repository dev/reference-tasks",
        "==> Creating change set",
        "airflow connections add aws_default --conn-type aws",
        "==> Next: make smoke DEPLOY_STACK=dev",
    ]
    positions = [first.index(step) for step in steps]
    assert positions == sorted(positions), "the steps ran in this order"
    builds = [c for c in account["docker"].commands if c[:2] == ["docker", "build"]]
    assert [c[c.index("-f") + 1] for c in builds] == [
        "lambda/Dockerfile", "tasks/runtime/Dockerfile", "tasks/reference/Dockerfile"
    ]  # fmt: skip
    assert all(c[2:4] == ["--platform", "linux/amd64"] for c in builds)
    ecs = boto3.client("ecs", region_name=REGION)
    families = ecs.list_task_definition_families(familyPrefix="dev-")["families"]
    catalog = Catalog.load(images.REPO / "tasks" / "catalog.yaml")
    assert sorted(families) == sorted(f"dev-{task}" for task in catalog.tasks)  # one a catalog task
    definition = ecs.describe_task_definition(taskDefinition="dev-task_one")["taskDefinition"]
    tag = definition["containerDefinitions"][0]["image"].rsplit(":", 1)[1]
    assert tag == hashlib.sha256(b"airlaunch-deploy/dev/reference-tasks:build").hexdigest()[:16]

    # Again, nothing changed: same images, same tags, the very same template and parameters, which
    # CloudFormation answers with "no changes". (moto's change sets cannot update this stack: not sent.)
    assert _deploy(account) == 0
    second = capsys.readouterr().out
    assert "Created" not in second and "Pushing" not in second and "is in ECR already" in second
    assert sent[0] == sent[1]
    assert sent[0][0]["LauncherImageUri"].startswith("123456789012.dkr.ecr.eu-west-1.amazonaws.com/dev/launcher:")

    assert cli.main(["destroy", "--stack-name", "dev"]) == 0
    gone = capsys.readouterr().out
    assert "==> Deleted stack dev" in gone and "Deleted ECR repository dev/reference-tasks and its images" in gone
    assert "Kept the results bucket" in gone
    assert boto3.client("ecr", region_name=REGION).describe_repositories()["repositories"] == []


def test_a_deploy_that_cannot_work_stops_before_building(
    account: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    params = [f"Subnets={account['subnets'][0]}", f"SecurityGroups={account['group']}"]  # public, no public IP
    assert cli.main(["deploy", "--stack-name", "dev", *[a for p in params for a in ("--param", p)]]) == 2
    err = capsys.readouterr().err
    assert "is public" in err and "AssignPublicIp is false" in err and "Traceback" not in err
    assert not [c for c in account["docker"].commands if c[:2] == ["docker", "build"]]


def test_vpc_endpoints_get_one_subnet_per_zone(
    account: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two of the tasks' subnets share a zone: the interface endpoints get only the first (one per zone)."""
    sent: list[dict[str, str]] = []
    monkeypatch.setattr(cloudformation, "deploy", lambda cfn, name, params, *args: sent.append(params) or {})
    ec2 = boto3.client("ec2", region_name=REGION)
    a, b = ec2.describe_subnets(SubnetIds=account["subnets"])["Subnets"]
    twin = ec2.create_subnet(VpcId=a["VpcId"], CidrBlock="172.31.200.0/24", AvailabilityZone=a["AvailabilityZone"])
    subnets = [a["SubnetId"], twin["Subnet"]["SubnetId"], b["SubnetId"]]
    tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [a["VpcId"]]}])["RouteTables"]
    params = [f"Subnets={','.join(subnets)}", f"SecurityGroups={account['group']}", "AssignPublicIp=true",
              "VpcEndpoints=true", f"VpcId={a['VpcId']}", f"RouteTableIds={tables[0]['RouteTableId']}"]  # fmt: skip
    assert cli.main(["deploy", "--stack-name", "dev", *[x for p in params for x in ("--param", p)]]) == 0
    assert sent[0]["EndpointSubnets"] == f"{a['SubnetId']},{b['SubnetId']}"
    out = capsys.readouterr().out
    assert f"interface endpoints go into {a['SubnetId']}, {b['SubnetId']} (one subnet per Availability Zone)" in out


def _policy(repository: str) -> dict[str, Any]:
    text = boto3.client("ecr", region_name=REGION).get_lifecycle_policy(repositoryName=repository)
    return dict(json.loads(text["lifecyclePolicyText"]))


def _kept(repository: str) -> list[str]:
    """The tags the repository's lifecycle policy keeps whatever their age; and it keeps the 10 pushed last."""
    rules = _policy(repository)["rules"]
    assert rules[-1]["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 10}
    return [tag for rule in rules[:-1] for tag in rule["selection"]["tagPatternList"]]


def test_ecr_keeps_the_images_the_stack_uses_through_an_update(
    account: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each push has a tag of its own: the old launcher image stays kept until the stack uses the new one."""
    assert _deploy(account) == 0
    ecs = boto3.client("ecs", region_name=REGION)
    task_image = ecs.describe_task_definition(taskDefinition="dev-task_one")["taskDefinition"]
    task_tag = task_image["containerDefinitions"][0]["image"].rsplit(":", 1)[1]
    stack = boto3.client("cloudformation", region_name=REGION).describe_stacks(StackName="dev")["Stacks"][0]
    [old_uri] = [p["ParameterValue"] for p in stack["Parameters"] if p["ParameterKey"] == "LauncherImageUri"]
    old = old_uri.rsplit(":", 1)[1]
    assert _kept("dev/launcher") == [old] and _kept("dev/reference-tasks") == [task_tag]

    account["docker"].changed.add("airlaunch-deploy/dev/launcher:build")  # the launcher's code changed
    during: dict[str, list[str]] = {}

    def update(cfn: Any, name: str, params: dict[str, str], *args: Any) -> dict[str, str]:
        during["launcher"], during["tasks"] = _kept("dev/launcher"), _kept("dev/reference-tasks")
        during["new"] = [params["LauncherImageUri"].rsplit(":", 1)[1]]
        return {}  # moto's change sets cannot update this stack: the update is taken as done

    monkeypatch.setattr(cloudformation, "deploy", update)
    assert _deploy(account) == 0
    [new] = during["new"]
    assert new != old and during["launcher"] == sorted([old, new]), "both kept while the stack changes over"
    assert during["tasks"] == [task_tag]
    assert _kept("dev/launcher") == [new], "once the stack uses the new image, the old one is just a recent one"
    assert f"==> ECR dev/launcher: keeps {new} (used by the stack)" in capsys.readouterr().out


def _run_tasks(account: dict[str, Any], count: int) -> list[str]:
    """Tasks of the stack's cluster that stay RUNNING until stopped, as the launcher starts them."""
    from moto.moto_api import state_manager

    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    network = {"awsvpcConfiguration": {"subnets": account["subnets"], "securityGroups": [account["group"]]}}
    started = boto3.client("ecs", region_name=REGION).run_task(
        cluster="dev", taskDefinition="dev-task_one", launchType="FARGATE", count=count, networkConfiguration=network
    )
    return [task["taskArn"] for task in started["tasks"]]


def test_destroy_stops_the_running_tasks_before_deleting_the_stack(
    account: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster with active tasks cannot be deleted: the launcher is throttled, the tasks stopped, then the stack."""
    from moto.moto_api import state_manager

    assert _deploy(account) == 0
    arns = _run_tasks(account, 2)
    seen: dict[str, Any] = {}
    real_delete = cloudformation.delete

    def delete(cfn: Any, name: str, *args: Any) -> bool:
        ecs, lam = boto3.client("ecs", region_name=REGION), boto3.client("lambda", region_name=REGION)
        seen["tasks"] = ecs.describe_tasks(cluster="dev", tasks=arns)["tasks"]
        seen["concurrency"] = lam.get_function_concurrency(FunctionName="dev-launcher")
        return real_delete(cfn, name, *args)

    monkeypatch.setattr(cloudformation, "delete", delete)
    try:
        assert cli.main(["destroy", "--stack-name", "dev"]) == 0
    finally:
        state_manager.unset_transition("ecs::task")
    assert {(t["lastStatus"], t["stoppedReason"]) for t in seen["tasks"]} == {
        ("STOPPED", "make destroy: stack dev is being deleted")
    }, "every task was STOPPED before the stack's deletion began"
    assert seen["concurrency"]["ReservedConcurrentExecutions"] == 0
    out = capsys.readouterr().out
    steps = ["==> Throttled the launcher dev-launcher (reserved concurrency 0)",
             "==> Stopping 2 running task(s) in cluster dev; waiting up to 300 s", "==> Stopped 2 task(s)",
             "==> Deleted stack dev", "==> Deleted ECR repository dev/launcher"]  # fmt: skip
    positions = [out.index(step) for step in steps]
    assert positions == sorted(positions)


def test_destroy_deletes_the_repositories_even_when_the_stack_deletion_fails(
    account: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _deploy(account) == 0
    reason = (
        "deleting stack dev failed:\n  Cluster (AWS::ECS::Cluster): Resource handler returned message: "
        '"You can\'t delete a cluster that has active tasks." (ErrorCode: ClusterContainsTasksException)'
    )

    def delete(*args: Any) -> bool:
        raise DeployError(reason)

    monkeypatch.setattr(cloudformation, "delete", delete)
    capsys.readouterr()
    assert cli.main(["destroy", "--stack-name", "dev"]) == 2
    out, err = capsys.readouterr()
    assert boto3.client("ecr", region_name=REGION).describe_repositories()["repositories"] == []
    assert "Deleted ECR repository dev/launcher and its images" in out
    assert reason in err and "run `make destroy DEPLOY_STACK=dev` again" in err and "bucket" in err
