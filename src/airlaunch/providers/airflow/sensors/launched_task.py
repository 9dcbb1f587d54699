"""LaunchedTaskSensor: wait for a task launched by another Airflow task (deferrable only).

Split launch and wait into two tasks::

    launch = LaunchContainerOperator(task_id="launch", task="task_two", wait_for_completion=False)
    wait = LaunchedTaskSensor(task_id="wait", handle=launch.output)

The sensor forwards the result keys and small values through XCom exactly as the operator does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator, Context

from airlaunch.protocol import Handle
from airlaunch.providers.airflow.operators.launch import WaitsForLaunchedTask
from airlaunch.providers.airflow.xcoms import HANDLE_XCOM_KEY


class LaunchedTaskSensor(WaitsForLaunchedTask, BaseSensorOperator):
    """:param handle: the launch handle (templated; e.g. ``launch.output``). Other parameters as the operator's."""

    template_fields: Sequence[str] = ("handle",)

    def __init__(
        self,
        *,
        handle: Any,
        function_name: str | None = None,
        aws_conn_id: str | None = None,
        region_name: str | None = None,
        poll_interval: float | None = None,
        max_xcom_bytes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.handle = handle
        self._init_settings(
            function_name=function_name,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            poll_interval=poll_interval,
            max_xcom_bytes=max_xcom_bytes,
        )

    def execute(self, context: Context) -> Any:
        handle = Handle.from_dict(self.handle)
        context["ti"].xcom_push(key=HANDLE_XCOM_KEY, value=handle.to_dict())
        self.defer(trigger=self.trigger_for(handle, context), method_name="execute_complete")

    def poke(self, context: Context) -> bool:
        raise NotImplementedError("LaunchedTaskSensor is deferrable only: it waits in the triggerer")
