"""The XComs a launched task leaves, named in one place.

* ``airlaunch_handle`` (``HANDLE_XCOM_KEY``): the launch's handle, pushed at launch, so a task
  resumed on a worker, the links and a sensor find the try while it still runs.
* ``airlaunch`` (``SUMMARY_XCOM_KEY``) and ``return_value``: pushed at the end, by the trigger in the
  triggerer or by the operator on a worker, with the same content either way (``xcoms_for``).
"""

from __future__ import annotations

from typing import Any

from airlaunch.protocol import Handle, RunIdentity, Status

HANDLE_XCOM_KEY = "airlaunch_handle"
SUMMARY_XCOM_KEY = "airlaunch"


def xcoms_for(handle: Handle, status: Status, result: Any) -> dict[str, Any]:
    """The XComs a finished task leaves: its small result as return_value, and where everything is."""
    summary = {
        "state": status.state.value,
        "exit_code": status.exit_code,
        "reason": status.reason.value,
        "bucket": handle.bucket,
        "prefix": handle.prefix,
        "uri": handle.layout.uri(),
        "result_keys": status.result_keys,
        "task_ref": handle.task_ref,
    }
    if status.cached_from:  # served from the result cache: the try whose result this is
        summary["cached_from"] = status.cached_from
    return {"return_value": result, SUMMARY_XCOM_KEY: summary}


async def aset_xcom(identity: RunIdentity, key: str, value: Any) -> None:
    """Push one XCom of the try from the triggerer, through its Task SDK comms, as the task itself would."""
    from airflow.sdk.execution_time.xcom import XCom

    await XCom.aset(
        key,
        value,
        dag_id=identity.dag_id,
        task_id=identity.task_id,
        run_id=identity.run_id,
        map_index=identity.map_index,
    )
