"""What only a real AWS account can show, and the command that shows it on yours (``make smoke`` prints it).

Everything else is proven offline (docs/deploy-aws.md, "What is verified here, and what is not"):
the template against cfn-lint, moto and LocalStack, IAM by the least-privilege test's evaluator,
and the whole ECS path in the stack's ECS mode (the template deployed by the deploy code into an
emulated account whose Fargate tasks really run). What is left depends on AWS's own services
behaving as their documentation says; each check below names the command that tells, with this
stack's names filled in. ``make smoke`` itself proves the first items on every run; the others
are for a user who wants to see them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    what: str  # what AWS must do as documented (the docs list the same sentence)
    how: str  # the command, or "make smoke" when the smoke test checks it itself


def checklist(stack: str, region: str, task_arn: str = "<task ARN>", bucket: str = "<bucket>") -> list[Check]:
    """The checks, with this stack's names (and the smoke task's ARN when there is one)."""
    cluster, function = stack, f"{stack}-launcher"
    trail = f"aws cloudtrail lookup-events --region {region} --max-results 1 --lookup-attributes AttributeKey=EventName"
    return [
        Check("CloudFormation accepts the change set and creates every resource", "make deploy (CREATE_COMPLETE)"),
        Check("Lambda runs the launcher image; the Airflow role may invoke it", "make smoke: ping and launch"),
        Check("Fargate pulls the task image through the stack's network and runs it", "make smoke: status.json"),
        Check("ECS's STOPPED event reaches the launcher through EventBridge", "make smoke: ecs.json appears"),
        Check("The task's command cannot read the run session", "make smoke: the diagnostic task's peek"),
        Check(
            "RunTask, DescribeTasks and ECS events carry the run session's file ARN, never the session",
            f"aws ecs describe-tasks --region {region} --cluster {cluster} --tasks {task_arn} "
            "--query 'tasks[0].overrides.containerOverrides[0]'  (environmentFiles only)",
        ),
        Check(
            "CloudTrail records RunTask with the file ARN only, and AssumeRole without the secret key",
            f"{trail},AttributeValue=RunTask; {trail},AttributeValue=AssumeRole",
        ),
        Check(
            "The launcher's reserved concurrency is in place (the RunTask pacing relies on it)",
            f"aws lambda get-function-concurrency --region {region} --function-name {function}",
        ),
        Check(
            "No task state change event was dropped",
            f"aws sqs get-queue-attributes --region {region} --attribute-names ApproximateNumberOfMessages "
            f"--queue-url $(aws sqs get-queue-url --region {region} --queue-name {stack}-failed-events "
            "--query QueueUrl --output text)  (0)",
        ),
        Check(
            "ECR's lifecycle policy expires no image the stack uses",
            f"aws ecr start-lifecycle-policy-preview --region {region} --repository-name {stack}/launcher, then "
            f"aws ecr get-lifecycle-policy-preview --region {region} --repository-name {stack}/launcher",
        ),
        Check(
            "The results bucket refuses plain HTTP and stores objects encrypted",
            f"aws s3api get-bucket-encryption --bucket {bucket}; aws s3api get-bucket-policy --bucket {bucket}",
        ),
        Check(
            "A two-hour task keeps writing its results (the reaper renews its session)",
            'make trigger DAG=airlaunch_diagnostic CONF=\'{"action": "sleep", "seconds": 7200}\' '
            "(with a catalog max_timeout_seconds over 7200), then its status.json says succeeded",
        ),
        Check(
            "ECS's agent injects a catalog task's secrets with the task's own execution role",
            "make trigger DAG=airlaunch_diagnostic "
            'CONF=\'{"task": "<a catalog task with secrets>", "action": "secret"}\' '
            "(its task log shows `secret NAME = ***`, its result each value's fingerprint)",
        ),
        Check(
            "A task definition names its secrets by ARN, never their values",
            f"aws ecs describe-task-definition --region {region} --task-definition {stack}-<task> "
            "--query 'taskDefinition.containerDefinitions[0].[secrets,environment]'",
        ),
        Check(
            "One catalog task's execution role may not read another's secret",
            "aws iam simulate-principal-policy --policy-source-arn <the other task's ExecutionRole ARN> "
            "--action-names secretsmanager:GetSecretValue --resource-arns <the secret's ARN>  (implicitDeny)",
        ),
        Check(
            "make destroy stops running tasks before the stack's deletion",
            "make destroy while a task runs (the stack ends DELETE_COMPLETE)",
        ),
    ]


def render(checks: list[Check]) -> str:
    width = max(len(check.what) for check in checks)
    return "\n".join(f"  {check.what.ljust(width)}  {check.how}" for check in checks)
