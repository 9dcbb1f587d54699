"""``make destroy``: throttle the launcher and stop the tasks running in the stack's cluster
(deploy.teardown), then delete the stack and, whatever happens to it, the ECR repositories it used
(images included); the results bucket stays unless ``--delete-results``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from airlaunch.aws_clients import ADAPTIVE_RETRIES
from airlaunch.aws_names import cluster_name, function_name
from airlaunch.deploy import cloudformation, sessions, teardown
from airlaunch.deploy.errors import DeployError, failed


def destroy(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    """Throttle the launcher, stop the cluster's tasks, delete the stack; delete its ECR repositories in any case.

    The repositories go even when stopping or the stack's deletion fails (the error is raised
    after), so a failed destroy never leaves images behind to be billed; the results bucket is
    deleted (``--delete-results``) only once the stack is gone.
    """
    stack_name = args.stack_name
    session = sessions.aws_session(args.region)
    cfn, ecr, s3, ecs, lam = (
        session.client(n, config=ADAPTIVE_RETRIES) for n in ("cloudformation", "ecr", "s3", "ecs", "lambda")
    )
    outputs = cloudformation.outputs_of(cfn, stack_name)
    bucket = outputs.get("BucketName") or results_bucket(cfn, stack_name)
    repositories = stack_repositories(ecr, stack_name)
    what = f"stack {stack_name}" + (f" and ECR repositories {repositories} (images included)" if repositories else "")
    if args.delete_results:
        what += f" and the results bucket {bucket or '(none)'} with every run in it"
    question = f"Stop the tasks running in cluster {cluster_name(stack_name)} and delete {what}?"
    if not cloudformation.terminal_approval(question):
        raise DeployError("not confirmed; nothing was deleted (answer y, or set AUTO_APPROVE=1)")
    problem: DeployError | None = None
    try:
        function = outputs.get("LauncherFunctionName") or function_name(stack_name)
        throttled = teardown.throttle_launcher(lam, function)
        if throttled:
            say(f"==> Throttled the launcher {function} (reserved concurrency 0): it starts no more tasks")
        teardown.stop_tasks(
            ecs,
            cluster_name(stack_name),
            f"make destroy: stack {stack_name} is being deleted",
            say,
            settle_seconds=teardown.FUNCTION_TIMEOUT_SECONDS if throttled else 0.0,
        )
        if cloudformation.delete(cfn, stack_name):
            say(f"==> Deleted stack {stack_name}")
    except DeployError as exc:
        problem = exc
    for name in repositories:
        try:
            ecr.delete_repository(repositoryName=name, force=True)
        except (ClientError, BotoCoreError) as exc:
            problem = problem or failed(f"deleting ECR repository {name}", exc)
            continue
        say(f"==> Deleted ECR repository {name} and its images")
    if problem is not None:
        kept = f"; the results bucket {bucket} was kept" if bucket else ""
        raise DeployError(f"{problem}{kept}; run `make destroy DEPLOY_STACK={stack_name}` again") from problem
    if bucket and args.delete_results:
        empty_and_delete_bucket(s3, bucket)
        say(f"==> Deleted the results bucket {bucket}")
    elif bucket:
        say(f"==> Kept the results bucket {bucket} (make destroy DELETE_RESULTS=1 deletes it with every run)")
    return 0


def results_bucket(cfn: Any, stack_name: str) -> str:
    """The results bucket's name from the stack's resources ("" when there is none)."""
    try:
        resource = cfn.describe_stack_resource(StackName=stack_name, LogicalResourceId="ResultsBucket")
    except ClientError:
        return ""
    return str(resource["StackResourceDetail"].get("PhysicalResourceId", ""))


def stack_repositories(ecr: Any, stack_name: str) -> list[str]:
    """The ECR repositories make deploy created for this stack: <stack>/..."""
    names: list[str] = []
    try:
        for page in ecr.get_paginator("describe_repositories").paginate():
            names += [r["repositoryName"] for r in page["repositories"]]
    except (ClientError, BotoCoreError) as exc:
        raise failed("listing ECR repositories", exc) from exc
    return sorted(n for n in names if n.startswith(f"{stack_name}/"))


def empty_and_delete_bucket(s3: Any, bucket: str) -> None:
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            doomed = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if doomed:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True})
        s3.delete_bucket(Bucket=bucket)
    except (ClientError, BotoCoreError) as exc:
        raise failed(f"deleting the results bucket {bucket}", exc) from exc
