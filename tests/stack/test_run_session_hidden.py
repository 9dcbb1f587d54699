"""The task's own command cannot read the run session its runtime holds: a real container, a real kernel.

A container of airlaunch/task-runtime (uid 1000, Docker's default capabilities: no
CAP_SYS_PTRACE, as on Fargate) gets AIRLAUNCH_RUN_CREDENTIALS as ECS would put it in its
environment. Its command, a probe running as the same user, looks for the session where a
process of the same uid could: its own environment, /proc/1/environ and /proc/<parent>/environ
(the runtime, PID 1, at exec) and /proc/1/mem. It must find nothing (permission denied, or
absent), while the runtime still reads params.yaml and writes the results and status.json with
that session: the container has no other credentials (no variables, instance metadata off), so
a run without the session fails. And the probe shows that a same-uid process's environ is
readable in this container when the process is dumpable, so the denial is the runtime's doing.
S3 is a moto server of the test's own on loopback (the container uses the host's network).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from airlaunch.protocol import ENV_RUN_CREDENTIALS, ResultLayout, RunIdentity, Status
from tests.moto_server import moto_server

pytestmark = pytest.mark.stack

IMAGE = "airlaunch/task-runtime"
BUCKET = "airlaunch-hidden"
SECRET = "s3cr3t-of-the-run-session"
SESSION = {
    "AccessKeyId": "ASIARUNSESSIONTEST",
    "SecretAccessKey": SECRET,
    "SessionToken": "token-of-the-run-session",
    "Expiration": "2099-01-01T00:00:00Z",
    "Bucket": BUCKET,
    "RenewalKey": "runs-sessions/hidden/renewal.json",
}
PROBE = r"""
import json, os, subprocess, time
found = {}
def look(path, mode="r"):
    try:
        with open(path, mode + "b") as f:
            data = f.read(1 << 20) if mode == "r" else b""
        return "readable, holds the secret" if SECRET.encode() in data else "readable"
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.errno}"
SECRET = "SECRET_VALUE"
found["own environment"] = "holds it" if any(SECRET in v for v in os.environ.values()) else "absent"
found["variable in own environment"] = "AIRLAUNCH_RUN_CREDENTIALS" in os.environ
found["/proc/1/environ"] = look("/proc/1/environ")
found["/proc/parent/environ"] = look(f"/proc/{os.getppid()}/environ")
found["/proc/1/mem"] = look("/proc/1/mem")
child = subprocess.Popen(["sleep", "30"], env={"MARK": "same-uid-and-dumpable"})
for _ in range(100):  # Popen returns once exec began; the kernel fills in the new environ a moment later
    with open(f"/proc/{child.pid}/environ", "rb") as f:
        found["a dumpable child's environ"] = f.read().decode()
    if found["a dumpable child's environ"]:
        break
    time.sleep(0.05)
child.kill()
found["parent pid"] = os.getppid()
json.dump(found, open(os.environ["AIRLAUNCH_RESULT_FILE"], "w"))
print("probed")
""".replace("SECRET_VALUE", SECRET)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="harness",
                              aws_secret_access_key="harness")  # fmt: skip
        client.create_bucket(Bucket=BUCKET)
        yield url, client


def _run(url: str, s3: Any, name: str, session: dict[str, str] | None) -> tuple[ResultLayout, int, str]:
    """Run the probe as a task in a container of the runtime image; its layout, exit code and output."""
    identity = RunIdentity(dag_id="hidden", run_id=name, task_id="probe")
    layout = ResultLayout.for_identity(BUCKET, "runs", identity)
    params = {"params": {}, "run": {**identity.to_dict(), "execution_id": identity.execution_id, "task": "probe"}}
    s3.put_object(Bucket=BUCKET, Key=layout.params_key, Body=yaml.safe_dump(params).encode())
    env = {"AIRLAUNCH_BUCKET": BUCKET, "AIRLAUNCH_PREFIX": layout.prefix, "AWS_ENDPOINT_URL": url,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
           "AIRLAUNCH_S3_RETRY_SECONDS": "1"}  # fmt: skip
    if session is not None:
        env[ENV_RUN_CREDENTIALS] = json.dumps(session)
    command = ["docker", "run", "--rm", "--network", "host", "--name", f"airlaunch-hidden-{name}"]
    command += [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    command += [IMAGE, "--", "python", "-c", PROBE]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    return layout, done.returncode, done.stdout + done.stderr


def test_the_command_cannot_read_the_run_session_the_runtime_uses(s3: tuple[str, Any]) -> None:
    url, client = s3
    layout, code, output = _run(url, client, "with_session", SESSION)

    assert code == 0, output
    status = Status.from_json(client.get_object(Bucket=BUCKET, Key=layout.status_key)["Body"].read())
    assert status.state.value == "succeeded", status
    found = json.loads(client.get_object(Bucket=BUCKET, Key=layout.result_key)["Body"].read())
    assert found["parent pid"] == 1, "the runtime is PID 1 and the probe's parent"
    assert found["own environment"] == "absent" and found["variable in own environment"] is False
    assert found["/proc/1/environ"] == "permission denied", found
    assert found["/proc/parent/environ"] == "permission denied", found
    assert found["/proc/1/mem"] == "permission denied", found
    assert found["a dumpable child's environ"] == "MARK=same-uid-and-dumpable\0", "same-uid environ is readable here"
    assert SECRET not in output


def test_without_the_run_session_the_runtime_has_no_credentials(s3: tuple[str, Any]) -> None:
    """The control: what the first test's runtime wrote, it wrote with the run session."""
    url, client = s3
    layout, code, output = _run(url, client, "without_session", None)

    assert code != 0
    assert "Unable to locate credentials" in output or "NoCredentialsError" in output, output[-2000:]
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=layout.prefix).get("Contents", [])
    assert [item["Key"] for item in listed] == [layout.params_key]


def test_the_image_runs_the_runtime_as_pid_1_unprivileged() -> None:
    """Docker's default capability set, like Fargate's, has no CAP_SYS_PTRACE (bit 19); the task user is 1000."""
    done = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "sh", IMAGE, "-c", "id -u; grep CapEff /proc/self/status"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    uid, caps = done.stdout.split("\n")[:2]
    assert uid == "1000"
    assert not int(caps.split()[1], 16) & (1 << 19), caps
    assert Path("/proc/self/status").exists()
