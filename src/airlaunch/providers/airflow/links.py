"""Extra links of LaunchContainerOperator: the try's results in S3, its CloudWatch log stream, its ECS task.

Airflow 3 builds a task's links on the worker when its run there ends, deferral included, and
keeps the URLs in XCom; the API server only shows them. So a link is made from what the task
has pushed by then: the final summary (XCom ``airlaunch``) or, while it waits in the
triggerer, the handle pushed at launch (``airlaunch_handle``): both hold bucket, prefix and
task_ref. A task launched and ended in the triggerer never reaches a worker; the trigger can
push the same URLs with :func:`link_xcoms`. Locally (task_ref a Docker container id) the
results link is the s3:// URI and the AWS links are empty, which Airflow shows as disabled.

The log link names what the deployed stack creates (airlaunch.aws_names, which the template
generator uses too): the catalog task's own log group ``/airlaunch/<stack>/tasks/<task>`` and the
awslogs stream ``task/task/<ECS task id>``. The stack is ``[airlaunch] stack_name``, else the cluster
in the task's ARN (``make deploy`` names the cluster after the stack); the catalog task is the
operator's ``task``; the ECS task id ends the task's ARN.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote, quote_plus

from airflow.sdk import BaseOperatorLink

from airlaunch.aws_names import task_log_group, task_log_stream
from airlaunch.providers.airflow.settings import AirflowSettings
from airlaunch.providers.airflow.xcoms import HANDLE_XCOM_KEY, SUMMARY_XCOM_KEY

_TASK_ARN = re.compile(r"^arn:(?P<partition>aws[\w-]*):ecs:(?P<region>[\w-]+):(?P<account>\d+):task/(?P<path>.+)$")
_CONSOLES = {
    "aws": "console.aws.amazon.com",
    "aws-cn": "console.amazonaws.cn",
    "aws-us-gov": "console.amazonaws-us-gov.com",
}


@dataclass(frozen=True)
class EcsTask:
    """The parts of an ECS task ARN (``arn:aws:ecs:<region>:<account>:task/<cluster>/<id>``)."""

    partition: str
    region: str
    account: str
    cluster: str
    task_id: str

    @classmethod
    def parse(cls, task_ref: str) -> EcsTask | None:
        match = _TASK_ARN.match(task_ref or "")
        if not match or match["path"].count("/") != 1:  # a Docker container id, or the old ARN without cluster
            return None
        cluster, task_id = match["path"].split("/")
        return cls(match["partition"], match["region"], match["account"], cluster, task_id)

    def console(self, service_path: str) -> str:
        domain = _CONSOLES.get(self.partition, _CONSOLES["aws"])
        host = f"{self.region}.{domain}" if self.partition == "aws" else domain
        return f"https://{host}/{service_path}"


def results_url(where: dict[str, Any]) -> str:
    """The S3 console on the try's prefix on AWS; its s3:// URI anywhere else."""
    bucket, prefix = where.get("bucket", ""), where.get("prefix", "")
    task = EcsTask.parse(where.get("task_ref", ""))
    if task is None:
        return where.get("uri") or (f"s3://{bucket}/{prefix}" if bucket else "")
    path = f"s3/buckets/{quote(bucket)}?region={task.region}&prefix={quote(prefix)}&showversions=false"
    return task.console(path)


def log_stream_url(where: dict[str, Any], settings: AirflowSettings | None = None, catalog_task: str = "") -> str:
    """The task's awslogs stream in the CloudWatch console; "" off ECS or without the catalog task's name.

    ``catalog_task`` is the catalog entry the try ran (the operator's ``task``), else ``where["task"]``.
    """
    task = EcsTask.parse(where.get("task_ref", ""))
    catalog_task = catalog_task or str(where.get("task") or "")
    if task is None or not catalog_task:
        return ""
    stack = (settings or AirflowSettings()).stack_name or task.cluster
    group = quote_plus(task_log_group(stack, catalog_task))
    fragment = f"logsV2:log-groups/log-group/{group}/log-events/{quote_plus(task_log_stream(task.task_id))}"
    return task.console(f"cloudwatch/home?region={task.region}#{fragment}")


def ecs_task_url(where: dict[str, Any]) -> str:
    task = EcsTask.parse(where.get("task_ref", ""))
    if task is None:
        return ""
    return task.console(
        f"ecs/v2/clusters/{quote(task.cluster)}/tasks/{task.task_id}/configuration?region={task.region}"
    )


def _pushed(ti_key: Any) -> dict[str, Any] | None:
    """The task's summary, else its handle: whichever it has pushed (None before its launch)."""
    from airflow.sdk.execution_time.xcom import XCom  # the worker's XCom, through the task supervisor

    for key in (SUMMARY_XCOM_KEY, HANDLE_XCOM_KEY):
        value = XCom.get_value(ti_key=ti_key, key=key)
        if isinstance(value, dict) and value.get("bucket"):
            return value
    return None


class AirlaunchLink(BaseOperatorLink):
    """A link made from where the task's try lives; subclasses say which URL."""

    name: ClassVar[str]

    def url(self, where: dict[str, Any], catalog_task: str = "") -> str:
        raise NotImplementedError

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        where = _pushed(ti_key)
        return self.url(where, str(getattr(operator, "task", "") or "")) if where else ""


class ResultsLink(AirlaunchLink):
    name = "Results in S3"

    def url(self, where: dict[str, Any], catalog_task: str = "") -> str:
        return results_url(where)


class LogStreamLink(AirlaunchLink):
    name = "CloudWatch log stream"

    def url(self, where: dict[str, Any], catalog_task: str = "") -> str:
        return log_stream_url(where, catalog_task=catalog_task)


class EcsTaskLink(AirlaunchLink):
    name = "ECS task"

    def url(self, where: dict[str, Any], catalog_task: str = "") -> str:
        return ecs_task_url(where)


LINKS: tuple[AirlaunchLink, ...] = (ResultsLink(), LogStreamLink(), EcsTaskLink())


def link_xcoms(where: dict[str, Any], catalog_task: str = "") -> dict[str, str]:
    """The XComs Airflow reads the links from (``_link_<class>``), for a trigger that ends the task itself.

    A link without a URL here (the AWS consoles' off AWS) is left out: Airflow's API shows a missing link
    XCom and an empty one alike (no link), and each XCom a trigger pushes is an execution API request the
    triggerer's supervisor serves (about 20 ms of its CPU)."""
    urls = {link.xcom_key: link.url(where, catalog_task) for link in LINKS}
    return {key: url for key, url in urls.items() if url}
