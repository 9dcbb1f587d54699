"""What a task script imports: its params, its run identity, and where its result goes.

Tasks in other languages use the same contract directly: AIRLAUNCH_PARAMS_FILE is a YAML
file with ``params`` and ``run``; write a JSON object to AIRLAUNCH_RESULT_FILE.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from airlaunch.protocol import ENV_PARAMS_FILE, ENV_RESULT_FILE


def _document() -> dict[str, Any]:
    return yaml.safe_load(Path(os.environ[ENV_PARAMS_FILE]).read_text()) or {}


def params() -> dict[str, Any]:
    """The params the Airflow task passed (DAG params, templated values, upstream results)."""
    return dict(_document().get("params") or {})


def run_info() -> dict[str, Any]:
    """dag_id, run_id, task_id, map_index, try_number, execution_id and task name."""
    return dict(_document().get("run") or {})


def save_result(result: dict[str, Any]) -> None:
    """Record the task's result; it becomes result.json in S3 and its values reach XCom."""
    path = Path(os.environ[ENV_RESULT_FILE])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)
