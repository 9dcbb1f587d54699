"""What Airflow needs once the stack is up: its AWS connection and the variables a DAG reads."""

from __future__ import annotations

import json


def airflow_setup(outputs: dict[str, str], region: str) -> str:
    """The text ``make deploy`` ends with: the connection's extra JSON, an `airflow connections add`, the variables."""
    extra = {"region_name": region, "role_arn": outputs.get("AirflowRoleArn", "<AirflowRoleArn output>")}
    extra_json = json.dumps(extra)
    variables = {
        "AIRLAUNCH_FUNCTION_NAME": outputs.get("LauncherFunctionName", "<LauncherFunctionName output>"),
        "AIRLAUNCH_STATUS_QUEUE": outputs.get("StatusQueueUrl", ""),
        "AIRLAUNCH_BUCKET": outputs.get("BucketName", ""),
        "AIRLAUNCH_KEY_PREFIX": outputs.get("KeyPrefix", "runs"),
    }
    lines = [
        "Airflow AWS connection: id aws_default (or the id you set in AIRLAUNCH_AWS_CONN_ID), type aws,",
        "no login or endpoint; the workers' own credentials assume the Airflow role. Extra:",
        f"  {extra_json}",
        "e.g.:",
        f"  airflow connections add aws_default --conn-type aws --conn-extra '{extra_json}'",
        "Environment of the Airflow scheduler, workers and triggerer (and of the `airlaunch` results CLI):",
        *(f"  export {name}={value}" for name, value in variables.items()),
        f"Who may assume the Airflow role: AirflowPrincipalArn, or attach {outputs.get('AirflowPolicyArn', '')}",
        "to your Airflow's own role (MWAA: its execution role) and drop role_arn from the extra.",
    ]
    return "\n".join(lines)
