"""`make deploy-localstack`: the AWS template deployed into the running LocalStack creates the bucket, the roles
and the launcher Lambda (ECS and ECR are skipped: LocalStack's free build has neither)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from airlaunch.deploy import DeployError, deploy
from airlaunch.stack import Stack

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def aws(stack: Stack) -> dict[str, Any]:
    session = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name=stack.cfg.region)
    return {
        name: session.client(name, endpoint_url=stack.cfg.localstack_url)
        for name in ("cloudformation", "s3", "iam", "lambda", "sqs")
    }


@pytest.fixture(scope="module")
def deployed(stack: Stack, aws: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """`python -m airlaunch.deploy --localstack` exactly as `make deploy-localstack` runs it; deleted afterwards."""
    name = f"al-test-{time.time_ns()}"
    bucket = f"{name}-results"
    env = {**os.environ, "AUTO_APPROVE": "1", "AIRLAUNCH_LOCALSTACK_PORT": str(stack.cfg.localstack_port)}
    command = [sys.executable, "-m", "airlaunch.deploy", "--localstack", "--region", stack.cfg.region]
    command += ["--stack-name", name, "--param", f"BucketName={bucket}", "--param", "RetentionDays=7"]
    started = time.monotonic()
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    took = time.monotonic() - started
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        stack_info = aws["cloudformation"].describe_stacks(StackName=name)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack_info.get("Outputs", [])}
        print(f"deployed {name} into LocalStack in {took:.1f} s")
        yield {"name": name, "bucket": bucket, "outputs": outputs, "status": stack_info["StackStatus"], "out": out}
    finally:
        cfn = aws["cloudformation"]
        cfn.delete_stack(StackName=name)
        cfn.get_waiter("stack_delete_complete").wait(StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        # AWS keeps the bucket (DeletionPolicy RetainExceptOnCreate); LocalStack 2026.3 deletes it with the stack.
        if bucket in {b["Name"] for b in aws["s3"].list_buckets()["Buckets"]}:
            for listed in aws["s3"].list_objects_v2(Bucket=bucket).get("Contents", []):
                aws["s3"].delete_object(Bucket=bucket, Key=listed["Key"])
            aws["s3"].delete_bucket(Bucket=bucket)


def test_stack_is_created_with_a_previewed_change_set(deployed: dict[str, Any]) -> None:
    assert deployed["status"] == "CREATE_COMPLETE"
    printed = deployed["out"].stdout
    assert "(CREATE)" in printed and re.search(r"Add +LauncherFunction +AWS::Lambda::Function", printed)
    assert re.search(r"Add +TaskOneTaskRole +AWS::IAM::Role", printed), "the catalog's task roles are generated"
    assert "AWS::ECS::" not in printed and "AWS::ECR::" not in printed


def test_bucket_exists(deployed: dict[str, Any], aws: dict[str, Any]) -> None:
    assert deployed["outputs"]["BucketName"] == deployed["bucket"]
    aws["s3"].head_bucket(Bucket=deployed["bucket"])


def test_status_files_written_in_the_bucket_are_announced_on_its_queue(
    deployed: dict[str, Any], aws: dict[str, Any]
) -> None:
    url = deployed["outputs"]["StatusQueueUrl"]
    key = "runs/dag/run/task/-1/1/status.json"
    aws["s3"].put_object(Bucket=deployed["bucket"], Key="runs/dag/run/task/-1/1/log.txt", Body=b"not announced")
    aws["s3"].put_object(Bucket=deployed["bucket"], Key=key, Body=b"{}")
    announced: list[str] = []
    for _ in range(5):  # the first message can be S3's own s3:TestEvent
        for message in aws["sqs"].receive_message(QueueUrl=url, WaitTimeSeconds=5).get("Messages", []):
            announced += [record["s3"]["object"]["key"] for record in json.loads(message["Body"]).get("Records", [])]
        if announced:
            break
    assert announced == [key]


def test_roles_exist(deployed: dict[str, Any], aws: dict[str, Any]) -> None:
    outputs = deployed["outputs"]
    for key in ("LauncherRoleArn", "RunFilesRoleArn", "TaskExecutionRoleArn", "AirflowRoleArn"):
        role = aws["iam"].get_role(RoleName=outputs[key].rsplit("/", 1)[1])["Role"]
        assert role["Arn"] == outputs[key]
    airflow_role = outputs["AirflowRoleArn"].rsplit("/", 1)[1]
    attached = aws["iam"].list_attached_role_policies(RoleName=airflow_role)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [outputs["AirflowPolicyArn"]]


def test_lambda_function_exists_as_an_image_configured_for_ecs(deployed: dict[str, Any], aws: dict[str, Any]) -> None:
    outputs = deployed["outputs"]
    config = aws["lambda"].get_function(FunctionName=outputs["LauncherFunctionName"])["Configuration"]
    assert config["FunctionArn"] == outputs["LauncherFunctionArn"]
    assert config["PackageType"] == "Image" and config["State"] == "Active"
    assert config["Role"] == outputs["LauncherRoleArn"]
    variables = config["Environment"]["Variables"]
    assert variables["AIRLAUNCH_BACKEND"] == "ecs" and variables["AIRLAUNCH_BUCKET"] == deployed["bucket"]
    assert variables["AIRLAUNCH_ECS_CLUSTER"] == variables["AIRLAUNCH_ECS_FAMILY_PREFIX"] == deployed["name"]


def test_ecs_outputs_are_absent_in_localstack(deployed: dict[str, Any]) -> None:
    assert {"ClusterArn", "LauncherRepositoryUri", "TasksRepositoryUri"}.isdisjoint(deployed["outputs"])


def test_redeploy_without_changes_changes_nothing(deployed: dict[str, Any], aws: dict[str, Any]) -> None:
    outputs = deploy(aws["cloudformation"], deployed["name"], {}, approve=lambda q: True, poll_seconds=1)
    assert outputs == deployed["outputs"]


def _decline(question: str) -> bool:
    return False


def _no_terminal(question: str) -> bool:
    raise DeployError("no terminal to confirm on: set AUTO_APPROVE=1 to execute the change set")


@pytest.mark.parametrize(
    ("approve", "message"), [(_decline, "not confirmed; nothing was changed"), (_no_terminal, "no terminal")]
)
def test_unapproved_change_set_leaves_no_stack(aws: dict[str, Any], approve: Any, message: str) -> None:
    name = f"al-declined-{time.time_ns()}"
    with pytest.raises(DeployError, match=message):
        deploy(aws["cloudformation"], name, {"CreateEcsResources": "false"}, approve=approve, poll_seconds=1)
    summaries = aws["cloudformation"].list_stacks()["StackSummaries"]
    statuses = [s["StackStatus"] for s in summaries if s["StackName"] == name]
    assert statuses == ["DELETE_COMPLETE"], "the empty REVIEW_IN_PROGRESS stack must be deleted"
