"""The operator's extra links: URLs from the XCom a task pushed, on AWS and locally."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from airflow.sdk import DAG
from airflow.sdk.execution_time import xcom

from airlaunch.catalog import Catalog
from airlaunch.deploy.template import logical_id, render
from airlaunch.providers.airflow import get_provider_info
from airlaunch.providers.airflow.links import (
    LINKS,
    EcsTask,
    EcsTaskLink,
    LogStreamLink,
    ResultsLink,
    ecs_task_url,
    link_xcoms,
    log_stream_url,
    results_url,
)
from airlaunch.providers.airflow.operators.launch import LaunchContainerOperator
from airlaunch.providers.airflow.settings import AirflowSettings

ROOT = Path(__file__).resolve().parents[2]
ARN = "arn:aws:ecs:eu-west-1:123456789012:task/airlaunch/0123456789abcdef0123456789abcdef"
ON_AWS = {"bucket": "my-results", "prefix": "runs/d/manual__2026-01-01T00:00:00+00:00/t/-1/1/", "task_ref": ARN}
LOCAL = {
    "bucket": "airlaunch-results",
    "prefix": "runs/d/r/t/-1/1/",
    "task_ref": "3f6ddaa6e8631a2b3c4d5e6f70819aabbccddeeff00112233445566778899aa",
    "uri": "s3://airlaunch-results/runs/d/r/t/-1/1/",
}


def test_a_task_arn_is_parsed_and_a_container_id_is_not() -> None:
    assert EcsTask.parse(ARN) == EcsTask("aws", "eu-west-1", "123456789012", "airlaunch", ARN.rsplit("/", 1)[1])
    assert EcsTask.parse(LOCAL["task_ref"]) is None
    assert EcsTask.parse("arn:aws:ecs:eu-west-1:123456789012:task/0123abcd") is None  # old ARN: no cluster
    cn = EcsTask.parse("arn:aws-cn:ecs:cn-north-1:123456789012:task/c/abc")
    assert cn is not None and cn.console("ecs/v2") == "https://console.amazonaws.cn/ecs/v2"


def test_urls_on_aws() -> None:
    assert results_url(ON_AWS) == (
        "https://eu-west-1.console.aws.amazon.com/s3/buckets/my-results?region=eu-west-1"
        "&prefix=runs/d/manual__2026-01-01T00%3A00%3A00%2B00%3A00/t/-1/1/&showversions=false"
    )
    task_id = ARN.rsplit("/", 1)[1]
    assert ecs_task_url(ON_AWS) == (
        f"https://eu-west-1.console.aws.amazon.com/ecs/v2/clusters/airlaunch/tasks/{task_id}/configuration"
        "?region=eu-west-1"
    )
    assert log_stream_url(ON_AWS, AirflowSettings(stack_name="prod"), "task_one") == (
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logsV2:log-groups/log-group/"
        f"%2Fairlaunch%2Fprod%2Ftasks%2Ftask_one/log-events/task%2Ftask%2F{task_id}"
    )
    assert log_stream_url(ON_AWS, AirflowSettings(stack_name="prod")) == ""  # no catalog task: no log group


def test_locally_the_results_link_is_the_s3_uri_and_the_aws_links_are_empty() -> None:
    assert results_url(LOCAL) == "s3://airlaunch-results/runs/d/r/t/-1/1/"
    assert results_url({k: v for k, v in LOCAL.items() if k != "uri"}) == "s3://airlaunch-results/runs/d/r/t/-1/1/"
    assert ecs_task_url(LOCAL) == "" and log_stream_url(LOCAL) == ""


@pytest.fixture
def pushed(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the task pushed to XCom, by key; XCom.get_value reads it."""
    values: dict[str, Any] = {}

    def get_value(*, ti_key: Any, key: str) -> Any:
        assert ti_key == "the ti key"
        return values.get(key)

    monkeypatch.setattr(xcom.XCom, "get_value", staticmethod(get_value))
    return values


def test_links_read_the_summary_else_the_handle(pushed: dict[str, Any]) -> None:
    results = ResultsLink()
    assert results.get_link(None, ti_key="the ti key") == ""  # not launched yet
    pushed["airlaunch_handle"] = {**LOCAL, "backend": "docker", "launched": True}
    assert results.get_link(None, ti_key="the ti key") == LOCAL["uri"]  # deferred: the handle is there
    pushed["airlaunch"] = {**ON_AWS, "state": "succeeded"}
    assert results.get_link(None, ti_key="the ti key") == results_url(ON_AWS)  # finished: the summary wins
    assert EcsTaskLink().get_link(None, ti_key="the ti key") == ecs_task_url(ON_AWS)
    operator = LaunchContainerOperator(task_id="t", task="task_one")
    assert LogStreamLink().get_link(operator, ti_key="the ti key") == log_stream_url(ON_AWS, catalog_task="task_one")
    assert "%2Ftasks%2Ftask_one/" in LogStreamLink().get_link(operator, ti_key="the ti key")


def test_locally_only_the_results_link_is_pushed() -> None:
    assert link_xcoms(LOCAL, "task_one") == {"_link_ResultsLink": results_url(LOCAL)}


def test_link_xcoms_are_what_airflow_shows() -> None:
    assert link_xcoms(ON_AWS, "task_one") == {
        "_link_ResultsLink": results_url(ON_AWS),
        "_link_LogStreamLink": log_stream_url(ON_AWS, catalog_task="task_one"),
        "_link_EcsTaskLink": ecs_task_url(ON_AWS),
    }


def _sub(value: Any, stack: str) -> str:
    assert set(value) == {"Fn::Sub"}, value
    return str(value["Fn::Sub"]).replace("${AWS::StackName}", stack)


@pytest.mark.parametrize("stack", ["", "prod"])  # empty: the stack is the cluster the task ran in
def test_the_log_link_names_the_log_group_and_stream_the_template_creates(
    stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The names are read out of the rendered template, and the URL must carry exactly them."""
    catalog = Catalog.load(ROOT / "tasks" / "catalog.yaml")
    resources = render(catalog)["Resources"]
    monkeypatch.setenv("AIRLAUNCH_STACK_NAME", stack)
    deployed = stack or "airlaunch"  # the cluster in the ARN, which the template names after the stack
    for name in catalog.tasks:
        lid = logical_id(name)
        [container] = resources[f"{lid}TaskDefinition"]["Properties"]["ContainerDefinitions"]
        options = container["LogConfiguration"]["Options"]
        assert options["awslogs-group"] == {"Ref": f"{lid}LogGroup"}
        group = _sub(resources[f"{lid}LogGroup"]["Properties"]["LogGroupName"], deployed)
        # awslogs names a stream <awslogs-stream-prefix>/<container name>/<ECS task id>
        stream = f"{options['awslogs-stream-prefix']}/{container['Name']}/{ARN.rsplit('/', 1)[1]}"
        url = LogStreamLink().url(ON_AWS, name)
        fragment = unquote_plus(url.split("#logsV2:log-groups/log-group/", 1)[1])
        assert fragment == f"{group}/log-events/{stream}", url


def test_the_operator_carries_the_links_and_the_provider_registers_them() -> None:
    registered = get_provider_info()["extra-links"]
    classes = [getattr(importlib.import_module(path.rsplit(".", 1)[0]), path.rsplit(".", 1)[1]) for path in registered]
    assert classes == [type(link) for link in LINKS]
    with DAG("links_dag", schedule=None) as dag:
        LaunchContainerOperator(task_id="t", task="task_one")
    from airflow.serialization.serialized_objects import DagSerialization

    task = DagSerialization.from_dict(DagSerialization.to_dict(dag)).get_task("t")
    assert {name: link.xcom_key for name, link in task.operator_extra_link_dict.items()} == {
        "Results in S3": "_link_ResultsLink",
        "CloudWatch log stream": "_link_LogStreamLink",
        "ECS task": "_link_EcsTaskLink",
    }
