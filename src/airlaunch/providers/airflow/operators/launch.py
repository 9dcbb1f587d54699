"""LaunchContainerOperator: start a catalog task through the launcher Lambda, then defer.

The worker only builds the request and invokes the Lambda (tens of milliseconds); the wait
happens in the triggerer, and a successful task is ended there too, so no worker slot is
held while the container runs. With ``start_from_trigger=True`` even the launch happens in
the triggerer and the task never visits a worker (unless it fails: the error is raised there).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException
from airflow.triggers.base import StartTriggerArgs

from airlaunch.protocol import Handle, InvalidRequest, LaunchRequest, RunIdentity, Status, TaskState, utcnow
from airlaunch.providers.airflow.links import LINKS
from airlaunch.providers.airflow.settings import AirflowSettings
from airlaunch.providers.airflow.triggers.launch_spec import (
    LAUNCH_ON_WORKER,
    TRIGGER_SETTINGS,
    identity_of,
    launch_request,
    pulls_xcoms,
)
from airlaunch.providers.airflow.xcoms import HANDLE_XCOM_KEY, xcoms_for

if TYPE_CHECKING:  # imported where used: parsing a DAG file needs neither (nor boto3, which the hook brings)
    from airlaunch.providers.airflow.hooks.launcher import LauncherHook
    from airlaunch.providers.airflow.triggers.launched_task import LaunchedTaskTrigger

# The trigger's class path, spelled out so that importing this module (every parse of a DAG file that uses the
# operator, in the dag-processor's child for each batch of task callbacks) imports neither the trigger nor the
# hook: they bring the Amazon provider, boto3 and botocore (tests/unit/test_provider_imports.py).
TRIGGER_CLASSPATH = "airlaunch.providers.airflow.triggers.launched_task.LaunchedTaskTrigger"


def state_if_cancelled(identity: RunIdentity) -> str:
    """The state a user (or Airflow) moved the running task instance to, e.g. 'failed' or 'restarting';
    '' while it still runs, or when its state cannot be read."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    try:
        states = RuntimeTaskInstance.get_task_states(
            dag_id=identity.dag_id, run_ids=[identity.run_id], task_ids=[identity.task_id]
        )
    except Exception:  # e.g. no supervisor to ask (a unit test): assume it runs, as before
        return ""
    key = identity.task_id if identity.map_index < 0 else f"{identity.task_id}_{identity.map_index}"
    state = (states.get(identity.run_id) or {}).get(key, "running")
    return "" if state == "running" else str(state or "cleared")


class WaitsForLaunchedTask:
    """The waiting half shared by the operator and the sensor: defer, then finish from the event."""

    task_id: str
    execution_timeout: Any
    function_name: str
    aws_conn_id: str
    region_name: str | None
    poll_interval: float
    max_xcom_bytes: int

    def _init_settings(
        self,
        *,
        function_name: str | None,
        aws_conn_id: str | None,
        region_name: str | None,
        poll_interval: float | None,
        max_xcom_bytes: int | None,
    ) -> None:
        """Each setting given to the constructor, else the ``[airlaunch]`` option's value where the DAG is parsed."""
        settings = AirflowSettings()
        self.function_name = function_name or settings.function_name
        self.aws_conn_id = aws_conn_id or settings.aws_conn_id
        self.region_name = region_name
        self.poll_interval = poll_interval or settings.poll_interval
        self.max_xcom_bytes = max_xcom_bytes or settings.max_xcom_bytes

    @property
    def hook(self) -> LauncherHook:
        from airlaunch.providers.airflow.hooks.launcher import LauncherHook

        return LauncherHook(
            function_name=self.function_name, aws_conn_id=self.aws_conn_id, region_name=self.region_name
        )

    def trigger_for(
        self, handle: Handle, context: Context, launch_requested_at: str | None = None
    ) -> LaunchedTaskTrigger:
        from airlaunch.providers.airflow.triggers.launched_task import LaunchedTaskTrigger

        deadline = None
        start = context["ti"].start_date
        if self.execution_timeout is not None and start is not None:
            deadline = (start + self.execution_timeout).timestamp()
        return LaunchedTaskTrigger(
            handle=handle.to_dict(),
            identity=identity_of(context).to_dict(),
            function_name=self.function_name,
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            poll_interval=self.poll_interval,
            deadline=deadline,
            max_xcom_bytes=self.max_xcom_bytes,
            launch_requested_at=launch_requested_at,
        )

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        """Resumed after the trigger: a failure (raise with details) or, under dag.test(), a success."""
        if not isinstance(event, dict):  # dag.test() resumes TaskSuccessEvents here, without their XComs
            event = self._collect(context)
        if event.get("state") != TaskState.SUCCEEDED.value:
            from airlaunch.providers.airflow.triggers.completing import failure_message

            raise AirflowException(failure_message(event))
        handle = Handle.from_dict(event["handle"])
        xcoms = xcoms_for(handle, Status.from_dict(event["status"]), event.get("result"))
        context["ti"].xcom_push(key="airlaunch", value=xcoms["airlaunch"])
        return xcoms["return_value"]

    def _collect(self, context: Context) -> dict[str, Any]:
        handle = Handle.from_dict(context["ti"].xcom_pull(task_ids=self.task_id, key=HANDLE_XCOM_KEY))
        hook = self.hook
        status = hook.read_status(handle.layout)
        if status is None:
            raise AirflowException(f"resumed without a status.json at {handle.layout.uri('status.json')}")
        result = None
        if "result" in status.result_keys:
            body = hook.read_bytes(handle.bucket, status.result_keys["result"])
            result = json.loads(body) if body and len(body) <= self.max_xcom_bytes else None
        return {"state": status.state.value, "status": status.to_dict(), "result": result, "handle": handle.to_dict()}


class LaunchContainerOperator(WaitsForLaunchedTask, BaseOperator):
    """Run catalog task ``task`` in its own container and wait for it without a worker slot.

    :param task: name of the task in the launcher's catalog (tasks/catalog.yaml).
    :param parameters: the task's params (templated; XComArgs such as ``other.output["key"]``
        bring upstream results). Written to params.yaml with the DAG's params
        (``include_dag_params``) and the run's identity.
    :param overrides: env, cpu, memory_mib, timeout_seconds for this launch (templated).
    :param wait_for_completion: False to only launch and return the handle (pair it with
        ``LaunchedTaskSensor``).
    :param cache: False to run the container whatever the result cache holds, and to cache nothing
        from this try; None (the default) does what the catalog entry's ``cache`` says (docs/cache.md).
    :param start_from_trigger: launch from the triggerer: the scheduler defers the task at once
        and no worker is involved unless it fails. Templates are rendered in the triggerer;
        ``parameters`` cannot take upstream results there (no XComArgs, no ``xcom_pull``,
        which Airflow 3.3's triggerer cannot serve). A mapped task
        sets it in ``partial()`` and expands ``parameters`` over a list or one task's output.
        Airflow's pools and ``max_active_tis_per_dag`` do not apply to tasks started this way.
    :param function_name: the launcher Lambda (default ``[airlaunch] function_name``).
    :param aws_conn_id: the AWS connection for Lambda and S3 (default ``[airlaunch] aws_conn_id``).
    :param poll_interval: seconds between the trigger's S3 requests (default ``[airlaunch] poll_interval``).
    :param max_xcom_bytes: larger results reach XCom by S3 key only (default ``[airlaunch] max_xcom_bytes``).
    """

    template_fields: Sequence[str] = ("task", "parameters", "overrides")
    template_fields_renderers = {"parameters": "json", "overrides": "json"}
    ui_color = "#e8f4ea"
    operator_extra_links = LINKS
    # What a mapped task with partial(start_from_trigger=True) defers with: the triggerer
    # resolves its launch from the serialized task (see triggers/launch_spec.py).
    start_trigger_args = StartTriggerArgs(
        trigger_cls=TRIGGER_CLASSPATH, trigger_kwargs={"launch": {"mapped": True}}, next_method="execute_complete"
    )
    start_from_trigger = False

    def __init__(
        self,
        *,
        task: str,
        parameters: dict[str, Any] | None = None,
        overrides: dict[str, Any] | None = None,
        include_dag_params: bool = True,
        wait_for_completion: bool = True,
        cache: bool | None = None,
        start_from_trigger: bool = False,
        function_name: str | None = None,
        aws_conn_id: str | None = None,
        region_name: str | None = None,
        poll_interval: float | None = None,
        max_xcom_bytes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.task = task
        self.parameters = parameters or {}
        self.overrides = overrides or {}
        self.include_dag_params = include_dag_params
        self.wait_for_completion = wait_for_completion
        self.cache = cache
        self._init_settings(
            function_name=function_name,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            poll_interval=poll_interval,
            max_xcom_bytes=max_xcom_bytes,
        )
        self._handle: Handle | None = None
        self._identity: RunIdentity | None = None
        self._hook: LauncherHook | None = None
        if start_from_trigger:
            self._start_from_trigger()

    def _start_from_trigger(self) -> None:
        if pulls_xcoms((self.parameters, self.overrides)):
            raise ValueError(
                f"{self.task_id}: start_from_trigger=True cannot take upstream results (an XComArg or an "
                "xcom_pull template) in parameters or overrides: Airflow 3.3's triggerer cannot pull XComs "
                "while rendering. Launch this task from a worker (start_from_trigger=False, the default)."
            )
        timeout = self.execution_timeout.total_seconds() if self.execution_timeout is not None else None
        launch = {
            "task": self.task,
            "parameters": self.parameters,
            "overrides": self.overrides,
            "include_dag_params": self.include_dag_params,
            "wait_for_completion": self.wait_for_completion,
            "execution_timeout": timeout,
        }
        if self.cache is not None:  # absent unless set, as kwargs serialized before the cache
            launch["cache"] = self.cache
        settings = {name: getattr(self, name) for name in TRIGGER_SETTINGS}
        self.start_from_trigger = True
        self.start_trigger_args = StartTriggerArgs(
            trigger_cls=TRIGGER_CLASSPATH,
            trigger_kwargs={"launch": launch, **settings},
            next_method="execute_complete",
        )

    def build_request(self, context: Context) -> LaunchRequest:
        try:
            return launch_request(
                context, self.task, self.parameters, self.overrides, self.include_dag_params, self.cache
            )
        except InvalidRequest as exc:
            raise AirflowException(f"bad launch request for catalog task {self.task!r}: {exc}") from exc

    def execute(self, context: Context) -> Any:
        from airlaunch.providers.airflow.hooks.launcher import launched_message

        request = self.build_request(context)
        self._identity = request.identity  # a kill during the launch stops the try by its identity
        requested_at = utcnow()
        # One hook (and so one resolved connection) for the launch and a stop: a kill's on_kill runs in
        # a signal handler, where fetching the connection from Airflow again could deadlock.
        hook = self._hook = self.hook
        handle = self._handle = hook.launch(request)
        self.log.info(launched_message(self.task, handle))
        cancelled = state_if_cancelled(request.identity)
        if cancelled:
            # Marked failed or cleared while the launch was in flight: this process gets no kill
            # signal before its next heartbeat, and its deferral would be refused, so no trigger
            # would ever watch (or stop) the container.
            why = f"the Airflow task became {cancelled} during its launch"
            hook.stop(why, handle=handle, identity=request.identity)
            raise AirflowException(f"the task became {cancelled} during its launch: its container was stopped")
        context["ti"].xcom_push(key=HANDLE_XCOM_KEY, value=handle.to_dict())
        if not self.wait_for_completion:
            return handle.to_dict()
        self.defer(trigger=self.trigger_for(handle, context, requested_at), method_name="execute_complete")

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        if isinstance(event, dict) and event.get("state") == LAUNCH_ON_WORKER:
            self.log.info("launching from the worker: %s", event.get("detail"))
            return self.execute(context)
        return super().execute_complete(context, event)

    def on_kill(self) -> None:
        """Killed while still on the worker (before deferring): stop the container, started or starting."""
        if self._handle is not None or self._identity is not None:
            why = "the Airflow task was killed during its launch"
            (self._hook or self.hook).stop(why, handle=self._handle, identity=self._identity)
