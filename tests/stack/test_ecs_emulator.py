"""The ECS emulator (the local stack's Fargate stand-in), driven only as the launcher drives ECS.

Real Docker, the emulator as its own process on a free port, boto3's ECS/EventBridge/S3 APIs
and the emulator's control API. What it must show is ECS's behaviour in ECS's shapes:
tests/fixtures/aws holds AWS's own examples, which the events are compared with.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import boto3
import docker
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from airlaunch.launcher.platform_events import EcsTaskStateChange
from airlaunch.stack.ecs_emulator.runner import LABEL_TASK
from tests.moto_server import free_port

pytestmark = pytest.mark.stack

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "aws"
ACCOUNT = "000000000000"
REGION = "us-east-1"
IMAGE = "airlaunch/task-runtime"  # has python; its entrypoint is replaced by entryPoint below
TASK_LABEL = "airlaunch.ecs-emulator.task-arn"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], deadline: float = 60.0) -> T:
    """Poll until ``probe`` returns something truthy; fail naming ``what`` past the deadline."""
    end = time.monotonic() + deadline
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


class FakeLambda:
    """The launcher under the Runtime Interface Emulator, as far as delivery goes: records what is POSTed,
    and answers 500 to the first request a predicate picks (once)."""

    def __init__(self) -> None:
        self.received: list[tuple[int, dict[str, Any]]] = []  # (status answered, event)
        self._fail_once: Callable[[dict[str, Any]], bool] | None = None
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake._lock:
                    status = 500 if fake._fail_once and fake._fail_once(event) else 200
                    if status == 500:
                        fake._fail_once = None
                    fake.received.append((status, event))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"errorType": "Boom"}' if status == 500 else b"null")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/2015-03-31/functions/function/invocations"

    def fail_once(self, predicate: Callable[[dict[str, Any]], bool]) -> None:
        with self._lock:
            self._fail_once = predicate

    def events_of(self, task_arn: str) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            return [(s, e) for s, e in self.received if e.get("detail", {}).get("taskArn") == task_arn]


class Emulator:
    """``python -m airlaunch.stack.ecs_emulator`` as a process of its own, and clients for it."""

    def __init__(self, log: Path, *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "airlaunch.stack.ecs_emulator", "--port", str(self.port), *flags],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(f"the emulator to serve (see {log})", self._healthy, deadline=60)
        self.ecs = self.client("ecs")
        self.ecs_once = self.client("ecs", Config(retries={"total_max_attempts": 1}))

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the emulator exited with {self.proc.returncode}")
        try:
            return bool(self.control("GET", "health")["ok"])
        except OSError:
            return False

    def client(self, service: str, config: Config | None = None) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=config,
        )

    def control(self, method: str, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}/_airlaunch/ecs/{route}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read()))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class Account:
    """A cluster, a subnet and a security group in the emulated account; task definitions and RunTask."""

    def __init__(self, emulator: Emulator, cluster: str) -> None:
        self.emulator = emulator
        self.ecs = emulator.ecs
        self.cluster = self.ecs.create_cluster(clusterName=cluster)["cluster"]["clusterArn"]
        ec2 = emulator.client("ec2")
        subnet = ec2.describe_subnets()["Subnets"][0]
        self.subnet = subnet["SubnetId"]
        groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [subnet["VpcId"]]}])
        self.security_group = groups["SecurityGroups"][0]["GroupId"]

    def define(self, family: str, code: str, image: str = IMAGE, **container: Any) -> str:
        """A Fargate task definition whose one container runs ``python -c code``."""
        definition = {"name": "task", "image": image, "essential": True, "entryPoint": ["python", "-c"]}
        definition.update(command=[code], **container)
        answer = self.ecs.register_task_definition(
            family=family,
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="256",
            memory="512",
            containerDefinitions=[definition],
        )
        return str(answer["taskDefinition"]["taskDefinitionArn"])

    def run(self, definition: str, client: Any = None, **params: Any) -> dict[str, Any]:
        if "capacityProviderStrategy" not in params:
            params.setdefault("launchType", "FARGATE")
        return dict(
            (client or self.ecs).run_task(
                cluster=self.cluster,
                taskDefinition=definition,
                networkConfiguration={
                    "awsvpcConfiguration": {"subnets": [self.subnet], "securityGroups": [self.security_group]}
                },
                **params,
            )
        )

    def describe(self, arn: str) -> dict[str, Any]:
        return dict(self.ecs.describe_tasks(cluster=self.cluster, tasks=[arn])["tasks"][0])

    def wait_status(self, arn: str, status: str = "STOPPED", deadline: float = 60.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            task = self.describe(arn)
            return task if task["lastStatus"] == status else None

        return wait_for(f"task {arn} to be {status}", probe, deadline)


@pytest.fixture(scope="module")
def fake_lambda() -> Iterator[FakeLambda]:
    fake = FakeLambda()
    yield fake
    fake.server.shutdown()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory, fake_lambda: FakeLambda) -> Iterator[Emulator]:
    log = tmp_path_factory.mktemp("ecs-emulator") / "emulator.log"
    emulator = Emulator(
        log,
        *("--stop-timeout", "2", "--phase-seconds", "0.05", "--shutdown-grace", "1"),
        *("--lambda-endpoint", fake_lambda.url, "--lambda-retry-delays", "0.2,0.2"),
    )
    yield emulator
    assert emulator.stop() == 0


@pytest.fixture(scope="module")
def account(emulator: Emulator) -> Account:
    return Account(emulator, "emu")


@pytest.fixture
def limits(emulator: Emulator) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Tighten the emulator's limits for one test; AWS's figures come back afterwards."""
    before = emulator.control("GET", "limits")
    keys = ("throttling", "api", "fargate_launch", "fargate_run_task", "vcpu_quota", "spot_vcpu_quota")

    def tighten(changes: dict[str, Any]) -> None:
        emulator.control("POST", "limits", changes)

    yield tighten
    emulator.control("POST", "limits", {key: before[key] for key in keys})


def _times(task: dict[str, Any]) -> list[datetime]:
    keys = ["createdAt", "connectivityAt", "pullStartedAt", "pullStoppedAt", "startedAt", "executionStoppedAt"]
    return [task[k] for k in keys] + [task["stoppedAt"]]


def test_a_task_runs_and_ends_as_ecs_reports_it(account: Account) -> None:
    definition = account.define("exit-code", "import os, sys; print('hello'); sys.exit(int(os.environ['CODE']))")
    overrides = {"containerOverrides": [{"name": "task", "environment": [{"name": "CODE", "value": "3"}]}]}
    answer = account.run(definition, overrides=overrides, startedBy="al-test", clientToken="token-1")
    assert answer["failures"] == []
    task = answer["tasks"][0]
    assert task["lastStatus"] == "PROVISIONING" and task["desiredStatus"] == "RUNNING"
    assert task["taskArn"].startswith(f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/emu/")
    assert account.run(definition, overrides=overrides, clientToken="token-1")["tasks"][0]["taskArn"] == task["taskArn"]

    stopped = account.wait_status(task["taskArn"])
    assert stopped["desiredStatus"] == "STOPPED"
    assert stopped["stopCode"] == "EssentialContainerExited"
    assert stopped["stoppedReason"] == "Essential container in task exited"
    container = stopped["containers"][0]
    assert container["lastStatus"] == "STOPPED" and container["exitCode"] == 3 and "reason" not in container
    assert container["runtimeId"] and container["taskArn"] == task["taskArn"]
    times = _times(stopped)
    assert times == sorted(times) and stopped["stoppingAt"] <= stopped["stoppedAt"]
    assert stopped["cpu"] == "256" and stopped["memory"] == "512" and stopped["startedBy"] == "al-test"
    assert stopped["launchType"] == "FARGATE" and stopped["platformVersion"] == "1.4.0"
    assert [a["status"] for a in stopped["attachments"]] == ["DELETED"]
    assert task["taskArn"] not in account.ecs.list_tasks(cluster="emu", desiredStatus="RUNNING")["taskArns"]
    assert not docker.from_env().containers.list(all=True, filters={"label": f"{TASK_LABEL}={task['taskArn']}"})


def test_a_container_the_oom_killer_ends_is_reported_as_ecs_does(account: Account) -> None:
    definition = account.define("oom", "s = 'x' * (400 * 2**20); print(len(s))", memory=64)
    arn = account.run(definition)["tasks"][0]["taskArn"]
    stopped = account.wait_status(arn)
    container = stopped["containers"][0]
    assert container["reason"] == "OutOfMemoryError: Container killed due to memory usage"
    assert container["exitCode"] == 137
    assert stopped["stopCode"] == "EssentialContainerExited"


def _wait_for_output(task_arn: str, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label={LABEL_TASK}={task_arn}"],
                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
        logs = subprocess.run(["docker", "logs", *ids[:1]], capture_output=True, text=True) if ids else None
        if logs is not None and text in logs.stdout:
            return
        time.sleep(0.2)
    raise AssertionError(f"{task_arn} did not print {text!r} within {timeout:.0f} s")


def test_stop_task_sends_sigterm_then_sigkill_after_stop_timeout(account: Account) -> None:
    ready = "print('ready', flush=True); time.sleep(600)"
    graceful = account.define(
        "graceful", f"import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(42)); {ready}"
    )
    stubborn = account.define(
        "stubborn", f"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); {ready}", stopTimeout=2
    )
    arns = [account.run(d)["tasks"][0]["taskArn"] for d in (graceful, stubborn)]
    for arn in arns:
        account.wait_status(arn, "RUNNING")
        _wait_for_output(arn, "ready")  # its handler is set: a SIGTERM before that is lost to a PID 1 (the kernel)
    answers = [account.ecs.stop_task(cluster="emu", task=arn, reason="drill")["task"] for arn in arns]
    for answer in answers:
        assert answer["desiredStatus"] == "STOPPED" and answer["lastStatus"] == "STOPPING"
        assert answer["stopCode"] == "UserInitiated" and "exitCode" not in answer["containers"][0]
    ends = [account.wait_status(arn) for arn in arns]
    assert [end["containers"][0]["exitCode"] for end in ends] == [42, 137]  # SIGTERM handled; SIGKILL after it
    for end in ends:
        assert end["stopCode"] == "UserInitiated" and end["stoppedReason"] == "drill"


def test_an_image_not_present_fails_to_start_with_cannot_pull(account: Account) -> None:
    definition = account.define("no-image", "pass", image="airlaunch/no-such-image:never")
    stopped = account.wait_status(account.run(definition)["tasks"][0]["taskArn"])
    assert stopped["stopCode"] == "TaskFailedToStart"
    assert stopped["stoppedReason"].startswith("CannotPullContainerError: ")
    assert "docker.io/airlaunch/no-such-image:never: not found" in stopped["stoppedReason"]
    container = stopped["containers"][0]
    assert container["reason"] == stopped["stoppedReason"] and "exitCode" not in container
    assert "startedAt" not in stopped


def test_calls_past_ecs_rates_are_throttled_as_ecs_does(
    account: Account, limits: Callable[[dict[str, Any]], None]
) -> None:
    definition = account.define("quick", "pass")
    limits({"api": {"cluster-resource-modify": [3, 0.001]}})
    outcomes, started = [], []
    for _ in range(5):
        try:
            started.append(account.run(definition, client=account.emulator.ecs_once)["tasks"][0]["taskArn"])
            outcomes.append("ok")
        except ClientError as exc:
            error = exc.response["Error"]
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            outcomes.append(f"{error['Code']}: {error['Message']}")
    assert outcomes == ["ok"] * 3 + ["ThrottlingException: Rate exceeded"] * 2

    limits({"api": {"cluster-resource-modify": [100, 40]}, "fargate_launch": [1, 0.001]})  # one Fargate launch
    started.append(account.run(definition, client=account.emulator.ecs_once)["tasks"][0]["taskArn"])
    with pytest.raises(ClientError, match="ThrottlingException"):
        account.run(definition, client=account.emulator.ecs_once)

    account.emulator.control("POST", "throttle", {"action": "ListTasks", "count": 1})
    with pytest.raises(ClientError, match="Rate exceeded"):
        account.emulator.ecs_once.list_tasks(cluster="emu")
    assert "taskArns" in account.emulator.ecs_once.list_tasks(cluster="emu")
    for arn in started:  # they hold Fargate vCPUs until STOPPED
        account.wait_status(arn)


def test_run_task_past_the_vcpu_quota_or_capacity_starts_nothing(
    account: Account, limits: Callable[[dict[str, Any]], None]
) -> None:
    sleeper = account.define("sleeper", "import time; time.sleep(600)")
    limits({"vcpu_quota": 0.5})
    first = account.run(sleeper)["tasks"][0]["taskArn"]
    refused = account.run(sleeper, overrides={"cpu": "512"})
    assert refused["tasks"] == []
    assert refused["failures"] == [
        {"arn": sleeper, "reason": "You've reached the limit on the number of vCPUs you can run concurrently"}
    ]
    account.ecs.stop_task(cluster="emu", task=first)
    account.wait_status(first)
    second = account.run(sleeper, overrides={"cpu": "512"})
    assert second["failures"] == [] and len(second["tasks"]) == 1

    account.emulator.control("POST", "fail-run-task", {"count": 1, "reason": "capacity"})
    failed = account.run(sleeper)
    assert failed["tasks"] == [] and failed["failures"][0]["reason"] == (
        "Capacity is unavailable at this time. Please try again later or in a different availability zone"
    )
    stopping = account.emulator.control("POST", "stop-all", {"reason": "cleanup"})["stopping"]
    assert stopping == 1
    account.wait_status(second["tasks"][0]["taskArn"])


def test_a_spot_interruption_warns_then_stops_the_task(
    account: Account, emulator: Emulator, fake_lambda: FakeLambda
) -> None:
    events = emulator.client("events")
    events.put_rule(Name="spot-warnings", EventPattern=json.dumps({"detail": {"stopCode": ["TerminationNotice"]}}))
    events.put_targets(
        Rule="spot-warnings",
        Targets=[{"Id": "watch", "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:spot-watch"}],
    )
    definition = account.define(
        "spot", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    )
    arn = account.run(definition, capacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}])[
        "tasks"
    ][0]["taskArn"]
    account.wait_status(arn, "RUNNING")
    assert emulator.control("POST", "spot-interruption", {"task": arn, "graceSeconds": 1}) == {"interrupted": arn}
    stopped = account.wait_status(arn)
    assert stopped["stopCode"] == "SpotInterruption"
    assert stopped["stoppedReason"] == "Your Spot Task was interrupted."
    assert stopped["containers"][0]["exitCode"] == 137  # it ignored SIGTERM: killed after the grace
    assert stopped["capacityProviderName"] == "FARGATE_SPOT"

    def warnings() -> list[dict[str, Any]]:  # events arrive in any order, as EventBridge's may
        return [e["detail"] for _, e in fake_lambda.events_of(arn) if e["detail"]["lastStatus"] == "RUNNING"]

    warning = wait_for("the Spot warning event (lastStatus RUNNING)", warnings)[0]
    assert warning["desiredStatus"] == "STOPPED" and warning["stopCode"] == "TerminationNotice"
    assert warning["stoppedReason"] == "Your Spot Task was interrupted."


def test_environment_files_are_read_from_s3(account: Account, emulator: Emulator) -> None:
    s3 = emulator.client("s3")
    s3.create_bucket(Bucket="env-files")
    s3.put_object(Bucket="env-files", Key="task.env", Body=b"# a comment\nFROM_FILE=7\nSHARED=file\n\n")
    code = (
        "import os, sys; sys.exit(int(os.environ['FROM_FILE']) + (10 if os.environ['SHARED'] == 'definition' else 0))"
    )
    files = [{"value": "arn:aws:s3:::env-files/task.env", "type": "s3"}]
    definition = account.define(
        "env-files", code, environmentFiles=files, environment=[{"name": "SHARED", "value": "definition"}]
    )
    assert account.wait_status(account.run(definition)["tasks"][0]["taskArn"])["containers"][0]["exitCode"] == 17

    missing = account.define(
        "env-missing", code, environmentFiles=[{"value": "arn:aws:s3:::env-files/no.env", "type": "s3"}]
    )
    stopped = account.wait_status(account.run(missing)["tasks"][0]["taskArn"])
    assert stopped["stopCode"] == "TaskFailedToStart"
    assert stopped["stoppedReason"].startswith("ResourceInitializationError: failed to download env files")


def test_state_changes_reach_a_lambda_target_as_eventbridge_sends_them(
    account: Account, emulator: Emulator, fake_lambda: FakeLambda
) -> None:
    events = emulator.client("events")
    pattern = {"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"],
               "detail": {"lastStatus": ["STOPPED"], "clusterArn": [account.cluster]}}  # fmt: skip
    events.put_rule(Name="task-stopped", EventPattern=json.dumps(pattern))
    events.put_targets(
        Rule="task-stopped", Targets=[{"Id": "launcher", "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:launcher"}]
    )
    fake_lambda.fail_once(lambda e: e["detail"].get("group") == "family:events")
    definition = account.define("events", "import sys; sys.exit(1)")
    arn = account.run(definition)["tasks"][0]["taskArn"]
    account.wait_status(arn)

    delivered = wait_for("a delivery answered 200", lambda: [e for s, e in fake_lambda.events_of(arn) if s == 200])
    attempts = fake_lambda.events_of(arn)
    assert [status for status, _ in attempts] == [500, 200]  # refused once, retried, only STOPPED matched
    assert attempts[0][1]["id"] == attempts[1][1]["id"]
    event = delivered[0]
    expected = json.loads((FIXTURES / "ecs-task-state-change-stopped.json").read_text())
    assert list(event) == list(expected)
    assert {k: type(v) for k, v in event.items()} == {k: type(v) for k, v in expected.items()}
    for key, value in expected["detail"].items():
        assert type(event["detail"].get(key)) is type(value), key
    for key, value in expected["detail"]["containers"][0].items():
        assert type(event["detail"]["containers"][0].get(key)) is type(value), key
    for key in ("createdAt", "connectivityAt", "pullStartedAt", "pullStoppedAt", "startedAt", "updatedAt",
                "stoppingAt", "executionStoppedAt", "stoppedAt"):  # fmt: skip
        assert ISO_MS.match(event["detail"][key]), key
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", event["time"])
    assert (event["account"], event["region"], event["resources"]) == (ACCOUNT, REGION, [arn])
    assert event["detail"]["stopCode"] == "EssentialContainerExited"
    assert event["detail"]["containers"][0]["exitCode"] == 1
    parsed = EcsTaskStateChange.parse(event)  # the launcher's own strict parser takes it
    assert (parsed.task_arn, parsed.last_status) == (arn, "STOPPED")


def test_the_emulator_leaves_no_container_behind(tmp_path: Path) -> None:
    engine = docker.from_env()

    def containers_of(arn: str) -> list[Any]:
        return list(engine.containers.list(all=True, filters={"label": f"{TASK_LABEL}={arn}"}))

    def run_sleeper(emulator: Emulator, cluster: str) -> str:
        account = Account(emulator, cluster)
        arn = account.run(account.define("sleeper", "import time; time.sleep(600)"))["tasks"][0]["taskArn"]
        account.wait_status(arn, "RUNNING")
        assert len(containers_of(arn)) == 1
        return str(arn)

    crashed = Emulator(tmp_path / "crashed.log")
    left = run_sleeper(crashed, "crash")
    crashed.stop(signal.SIGKILL)  # no chance to clean up
    assert len(containers_of(left)) == 1

    emulator = Emulator(tmp_path / "second.log")  # removes the dead emulator's leftovers as it starts
    assert containers_of(left) == []
    arn = run_sleeper(emulator, "clean")
    assert emulator.stop(signal.SIGTERM) == 0
    assert containers_of(arn) == []
