"""What an airlaunch stack calls its AWS resources: every name derives from the stack name.

So that two stacks (dev and prod) live side by side in one account, nothing is named by a
constant: the template generator (airlaunch.deploy.template), the deploy tool and the ECS
backend all take their names from here. The stack name is kept to lower-case letters,
digits and '-' because it also begins ECR repository names, which allow no upper case.
"""

from __future__ import annotations

import re

from airlaunch.protocol import RunIdentity

STACK_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
CONTAINER_NAME = "task"  # the one container of every task definition
TASK_LOG_STREAM_PREFIX = "task"  # the awslogs-stream-prefix of every task definition

# Session tags of the credentials a task gets for its own run (see airlaunch.launcher.run_credentials):
# the files role's policy allows writes only under the prefix spelled by these tags.
RUN_TAG_KEYS = ("airlaunch-dag", "airlaunch-run", "airlaunch-task", "airlaunch-map", "airlaunch-try")
# Characters AWS allows in a session tag value (IAM User Guide, "Tagging AWS STS sessions").
_TAG_VALUE_RE = re.compile(r"^[\w\s.:/=+\-@]{0,256}$")


def check_stack_name(name: str) -> str:
    if not STACK_NAME_RE.match(name):
        raise ValueError(
            f"stack name {name!r}: use 1-31 lower-case letters, digits and '-', starting with a letter "
            "(it begins the ECR repository, cluster, function and task definition names)"
        )
    return name


def task_family(prefix: str, task: str) -> str:
    """The ECS task definition family of one catalog task."""
    return f"{prefix}-{task}"


def cluster_name(stack: str) -> str:
    """The stack's ECS cluster (ClusterName in infra/template.yaml)."""
    return stack


def task_log_group(stack: str, task: str) -> str:
    """The CloudWatch log group of one catalog task (the template makes one per task)."""
    return f"/airlaunch/{stack}/tasks/{task}"


def task_log_stream(ecs_task_id: str) -> str:
    """The awslogs stream of one ECS task: ``<awslogs-stream-prefix>/<container name>/<ECS task id>``.

    The format the awslogs driver uses when a stream prefix is set (Amazon ECS Developer Guide,
    "Send Amazon ECS logs to CloudWatch":
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/using_awslogs.html).
    """
    return f"{TASK_LOG_STREAM_PREFIX}/{CONTAINER_NAME}/{ecs_task_id}"


def failed_events_queue(stack: str) -> str:
    """The SQS queue of the ECS events whose handling failed (airlaunch.launcher.failed_events)."""
    return f"{stack}-failed-events"


def function_name(stack: str) -> str:
    return f"{stack}-launcher"


def launcher_repository(stack: str) -> str:
    return f"{stack}/launcher"


def image_repository(stack: str, image: str) -> str:
    """The ECR repository of a catalog image: the stack, then the image's last path component."""
    return f"{stack}/{image_basename(image)}"


def image_basename(image: str) -> str:
    name = image.rsplit("/", 1)[-1]
    return name.split("@", 1)[0].split(":", 1)[0]


def run_session_tags(identity: RunIdentity) -> list[dict[str, str]]:
    """The session tags that scope a task's credentials to its own run prefix.

    Raises ValueError when an id holds a character session tags cannot carry (Airflow allows
    '~' in run ids; AWS tag values do not), because such a run's prefix cannot be expressed.
    """
    values = (identity.dag_id, identity.run_id, identity.task_id, str(identity.map_index), identity.try_key)
    for key, value in zip(RUN_TAG_KEYS, values, strict=True):
        if not _TAG_VALUE_RE.match(value):
            raise ValueError(
                f"{key.removeprefix('airlaunch-')} id {value!r} holds a character AWS session tags cannot carry "
                "(allowed: letters, digits, spaces and _ . : / = + - @), so the task's credentials cannot be "
                "scoped to its run; rename the run or DAG without it"
            )
    return [{"Key": key, "Value": value} for key, value in zip(RUN_TAG_KEYS, values, strict=True)]
