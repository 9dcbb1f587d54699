"""A small client of Airflow 3's REST API (stdlib only): what `make demo`, the end-to-end tests
and the benchmarks do as a user would, through the API server."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

# A task instance in one of these states does not change again in its run (Airflow's TaskInstanceState).
TASK_ENDED_STATES = frozenset({"success", "failed", "upstream_failed", "skipped", "removed"})


class AirflowApiError(RuntimeError):
    pass


def _render_log_entry(entry: Any) -> str:
    """A structured task-log entry as the UI shows it: the message, then any exception."""
    if not isinstance(entry, dict):
        return str(entry)
    lines = [str(entry.get("event", ""))]
    for error in entry.get("error_detail") or []:
        lines.append(f"{error.get('exc_type')}: {error.get('exc_value')}")
    return "\n".join(lines)


class AirflowRest:
    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self._token: str | None = None

    @classmethod
    def for_home(cls, base_url: str, airflow_home: Path, username: str = "admin") -> AirflowRest:
        """Use the password that Airflow's simple auth manager generated for ``username``."""
        passwords = json.loads((airflow_home / "simple_auth_manager_passwords.json.generated").read_text())
        return cls(base_url, username, passwords[username])

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True, raw: bool = False) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise AirflowApiError(
                f"{method} {path}: HTTP {exc.code}: {exc.read()[:500].decode(errors='replace')}"
            ) from exc
        if raw:
            return payload.decode(errors="replace")
        return json.loads(payload) if payload else None

    def token(self) -> str:
        if self._token is None:
            response = self._request(
                "POST", "/auth/token", {"username": self.username, "password": self.password}, auth=False
            )
            self._token = response["access_token"]
        return self._token

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/api/v2/monitor/health", auth=False)

    def alive_jobs(self, job_type: str) -> list[dict[str, Any]]:
        """The running jobs of one type (``TriggererJob``, ``SchedulerJob``...) whose heartbeat is recent,
        newest first (among the 100 newest of that type: Airflow filters liveness after paging)."""
        path = f"/api/v2/jobs?job_type={job_type}&job_state=running&order_by=-id&limit=100&is_alive=true"
        return list(self._request("GET", path)["jobs"])

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._request("GET", f"/api/v2/dags/{dag_id}")
                return
            except AirflowApiError:
                time.sleep(1)
        raise AirflowApiError(f"DAG {dag_id} was not parsed within {timeout} s (see the dag-processor log)")

    def unpause(self, dag_id: str) -> None:
        self._request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, run_id: str | None = None) -> str:
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id is not None:
            body["dag_run_id"] = run_id
        run = self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)
        return run["dag_run_id"]

    def delete_run(self, dag_id: str, run_id: str) -> None:
        self._request("DELETE", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def unfinished_runs(self, dag_id: str) -> list[str]:
        """The run ids of the DAG's queued and running runs (the first 100)."""
        runs = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?state=queued&state=running&limit=100")
        return [run["dag_run_id"] for run in runs["dag_runs"]]

    def set_run_state(self, dag_id: str, run_id: str, state: str) -> None:
        self._request("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", {"state": state})

    def clear_task(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Clear one task instance of a run, whatever its state (a running one is restarted)."""
        body = {"dry_run": False, "dag_run_id": run_id, "task_ids": [task_id], "only_failed": False}
        return self._request("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances", body)["task_instances"]

    def tasks(self, dag_id: str) -> list[dict[str, Any]]:
        """The DAG's tasks as Airflow serialized them (``task_id``, ``downstream_task_ids``, ``is_mapped``...)."""
        return list(self._request("GET", f"/api/v2/dags/{dag_id}/tasks")["tasks"])

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        return self._request("GET", path if map_index < 0 else f"{path}/{map_index}")

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run, page by page ([api] maximum_page_limit is 100 by default)."""
        found: list[dict[str, Any]] = []
        while True:
            path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100&offset={len(found)}"
            page = self._request("GET", path)
            found += page["task_instances"]
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self._request("GET", f"{path}?map_index={map_index}&deserialize=true")["value"]

    def log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        content = self._request("GET", f"{path}?map_index={map_index}&full_content=true")["content"]
        if not isinstance(content, list):
            return str(content)
        return "\n".join(_render_log_entry(entry) for entry in content)

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> None:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        self._request("PATCH", path, {"new_state": state})

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600, progress: Any = None) -> dict[str, Any]:
        """Poll until the run ends; ``progress(run, task_instances)`` is called on each poll."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.dag_run(dag_id, run_id)
            if progress is not None:
                progress(run, self.task_instances(dag_id, run_id))
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(1)
        raise AirflowApiError(f"run {run_id} of {dag_id} did not finish within {timeout} s")
