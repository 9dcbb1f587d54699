"""Shared fixtures: the real local stack (LocalStack, the launcher Lambda, Docker) and its clients."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from airlaunch.protocol import Handle, ResultLayout, Status
from airlaunch.stack import Stack, StackConfig, stop_task_containers, supervisor

# The launcher of the test stack serves a copy of the catalog, which tests may edit while it runs.
_REPO = Path(__file__).resolve().parents[1]
TEST_CATALOG = StackConfig(repo=_REPO).state_dir / "test-catalog" / "catalog.yaml"
# The test stack's Airflow loads the repository's DAGs and the fault catalogue's (tests/airflow/test_faults.py).
TEST_DAGS = StackConfig(repo=_REPO).state_dir / "test-dags"
_DAG_FOLDERS = (_REPO / "airflow" / "dags", _REPO / "bench" / "faults" / "dags")


# Fixtures that need the stack (through ``stack``) or Airflow itself, and the markers they imply.
_AIRFLOW_FIXTURES = {"airflow_api", "airflow_db", "ecs_airflow"}
# Set by `make test-fast`: nothing in its session may start the stack (or a Docker engine for it).
NO_STACK_ENV = "AIRLAUNCH_TESTS_NO_STACK"
# The stack's Airflow runs with parallelism 2, so the slot test (tests/airflow) can show that waiting holds no slot.
E2E_PARALLELISM = 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the stack, directly or through another fixture, is marked ``stack`` (and one that
    uses Airflow ``airflow`` too) even where its module forgot to say so: ``-m "not stack"`` (make
    test-fast) must never start the stack. The tests of the stack's ECS mode run last, together: the
    stack switches to it once (``ecs_mode``) instead of to and fro for each module."""
    items.sort(key=lambda item: "ecs_mode" in getattr(item, "fixturenames", ()))  # stable: order kept otherwise
    for item in items:
        callspec = getattr(item, "callspec", None)  # a parameter named like a fixture (a stack name) is not one
        used = set(getattr(item, "fixturenames", ())) - set(callspec.params if callspec is not None else ())
        if used & _AIRFLOW_FIXTURES and item.get_closest_marker("airflow") is None:
            item.add_marker(pytest.mark.airflow)
        if (used & _AIRFLOW_FIXTURES or "stack" in used) and item.get_closest_marker("stack") is None:
            item.add_marker(pytest.mark.stack)


def _link_test_dags() -> None:
    """TEST_DAGS: a link to every DAG file of ``_DAG_FOLDERS`` (Airflow's DAG folder is one folder)."""
    TEST_DAGS.mkdir(parents=True, exist_ok=True)
    for old in TEST_DAGS.iterdir():
        if old.is_symlink():
            old.unlink()
    for folder in _DAG_FOLDERS:
        for path in folder.glob("*.py"):
            (TEST_DAGS / path.name).symlink_to(path)


def _supervised_with(stack: Stack) -> bool:
    """True when the running stack's supervisor (whose environment its components get) has this stack's DAGs
    folder: Airflow's processes read it only when they start."""
    pid = supervisor.pid_of(stack.cfg)
    if pid is None:
        return True
    environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return f"AIRLAUNCH_DAGS_FOLDER={stack.cfg.dags_folder}".encode() in environment


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """Start LocalStack and the launcher Lambda unless they run already; stop what was started. The copy of
    the catalog is made here, not at import: a pytest session that needs no stack (the unit tests) must not
    overwrite the catalog a running stack's tests have edited."""
    if os.environ.get(NO_STACK_ENV):
        pytest.fail(f"{NO_STACK_ENV} is set (make test-fast) but a test asked for the stack: mark it stack")
    TEST_CATALOG.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_REPO / "tasks" / "catalog.yaml", TEST_CATALOG)
    os.environ["AIRLAUNCH_STACK_CATALOG"] = str(TEST_CATALOG)
    _link_test_dags()
    # its supervisor starts Airflow with these
    stack = Stack(StackConfig(airflow_parallelism=E2E_PARALLELISM, dags_folder=str(TEST_DAGS)))
    started = stack.up()
    if not stack.launcher.serves(stack.cfg.catalog) or not _supervised_with(stack):
        # A stack someone started with other settings (make demo: the repository's catalog and DAGs) is
        # supervised with them, and its supervisor would start its parts with them again: start it anew, as ours.
        stack.down()
        started = stack.up()
    assert stack.launcher.serves(stack.cfg.catalog), f"the stack's launcher does not serve {stack.cfg.catalog}"
    os.environ.update(stack.cfg.client_env())
    _STARTED_HERE[:] = started
    yield stack
    stack.down(only=started)
    stop_task_containers()


_STARTED_HERE: list[str] = []  # what the session's stack fixture started, and so stops at the session's end


@pytest.fixture(scope="session")
def ecs_mode(stack: Stack) -> Iterator[Stack]:
    """The stack in its ECS mode for the rest of the session (the ECS tests run last: see above); at its end the
    emulated account is stopped, and a stack someone else started is given back in the Docker mode (one this
    session started is about to stop: its launcher is not started again for nothing). A module that adds
    catalog entries the account must have deploys a new account itself (``redeploy_ecs_account``)."""
    from airlaunch.stack import ECS_ACCOUNT

    stack.up(backend="ecs")
    yield stack
    if "launcher" in _STARTED_HERE:
        stack.down(only=[ECS_ACCOUNT])
        stack.cfg.backend_file.write_text("docker")  # an `up` that names no backend starts the Docker mode
    else:
        stack.up(backend="docker")


def redeploy_ecs_account(stack: Stack) -> None:
    """A new emulated account, deployed from the catalog as it reads now (as `make deploy` after a change)."""
    from airlaunch.stack import ECS_ACCOUNT

    stack.restart(ECS_ACCOUNT)
    stack.up(backend="ecs")  # and the launcher, started again for the new account


@pytest.fixture(scope="session")
def s3(stack: Stack) -> Any:
    return boto3.client("s3", endpoint_url=stack.cfg.localstack_url, region_name=stack.cfg.region)


class LauncherClient:
    """Invokes the launcher exactly as Airflow does: boto3's lambda client, RequestResponse."""

    def __init__(self, stack: Stack, s3: Any) -> None:
        self.client = boto3.client(
            "lambda",
            endpoint_url=stack.cfg.lambda_url,
            region_name=stack.cfg.region,
            config=Config(read_timeout=130, retries={"max_attempts": 0}),
        )
        self.s3 = s3
        self.bucket = stack.cfg.bucket

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        response = self.client.invoke(FunctionName="function", Payload=json.dumps(event).encode())
        payload = json.loads(response["Payload"].read())
        assert "FunctionError" not in response, payload
        return payload

    def launch(self, task: str, identity: dict[str, Any], params: dict[str, Any] | None = None, **extra: Any) -> Handle:
        request = {"task": task, "identity": identity, "params": params or {}, **extra}
        response = self.invoke({"action": "launch", "request": request})
        assert response["ok"], response
        return Handle.from_dict(response["handle"])

    def wait_status(self, handle: Handle, timeout: float = 120) -> Status:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                body = self.s3.get_object(Bucket=handle.bucket, Key=handle.layout.status_key)["Body"].read()
                return Status.from_json(body)
            except self.s3.exceptions.NoSuchKey:
                time.sleep(0.2)
        raise AssertionError(f"no status.json at {handle.layout.uri('status.json')} after {timeout} s")

    def read(self, layout: ResultLayout, name: str) -> bytes:
        return self.s3.get_object(Bucket=layout.bucket, Key=layout.key(name))["Body"].read()

    def live_log(self, layout: ResultLayout) -> str:
        """What a running task logged so far: the parts its runtime uploaded (log.txt comes at the end)."""
        parts = []
        while True:
            try:
                parts.append(self.read(layout, layout.log_part_key(len(parts))[len(layout.prefix) :]))
            except self.s3.exceptions.NoSuchKey:
                return b"".join(parts).decode("utf-8", "replace")


@pytest.fixture(scope="session")
def launcher(stack: Stack, s3: Any) -> LauncherClient:
    return LauncherClient(stack, s3)


@pytest.fixture
def identity(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A run identity unique to this test, so tests never see each other's results."""
    run_id = f"test__{request.node.name[:60]}_{time.time_ns()}".replace("[", "_").replace("]", "_")
    return {"dag_id": "launcher_tests", "run_id": run_id, "task_id": "task", "map_index": -1, "try_number": 1}
