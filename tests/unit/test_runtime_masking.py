"""The runtime masks each secret's value in everything it keeps of a try: the log's parts and log.txt, status.json's
log tail and error, result.json and the output notebook (S3 from moto, the task a real process)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from airlaunch.protocol import (
    ENV_BUCKET,
    ENV_PREFIX,
    ENV_SECRET_NAMES,
    MASK,
    PARAMS_FILE,
    STATUS_FILE,
    Status,
    mask,
    mask_json,
    secret_values,
)
from airlaunch.runtime.entrypoint import TaskRun, parse_args
from airlaunch.runtime.settings import RuntimeSettings

BUCKET, PREFIX = "runtime-masking", "runs/d/r/t/-1/1/"
VALUE = "pa55-w0rd-of-the-db"
JSON_SECRET = json.dumps({"user": "app", "token": "tok-3n-value"})
TASK = """
import json, os, sys, time
pw = os.environ["DB_PASSWORD"]
print("connecting with", pw, flush=True)
print("whole:", os.environ["CREDENTIALS"], "field:", json.loads(os.environ["CREDENTIALS"])["token"], flush=True)
time.sleep(1)  # twenty of the runtime's log flushes (0.05 s): a part of the running log is written
with open(os.environ["AIRLAUNCH_RESULT_FILE"], "w") as result:
    json.dump({"echo": pw, pw: [1, "x" + pw]}, result)
sys.exit("giving up on " + pw)
"""


def test_masking_rules() -> None:
    env = {ENV_SECRET_NAMES: "A, B,C,MISSING", "A": "first-secret", "B": "line-one\nline-two", "C": JSON_SECRET}
    values = secret_values(env)
    assert values[0] == JSON_SECRET, "longest first: a value containing another is masked whole"
    assert {"first-secret", "line-one", "line-two", "tok-3n-value"} <= set(values)
    assert "app" not in values and "user" not in values, "shorter than 5 characters, or a JSON key: not masked"
    assert mask("a first-secret and line-two", values) == f"a {MASK} and {MASK}"
    assert mask_json({"k first-secret": ["first-secret!", 3]}, values) == {f"k {MASK}": [f"{MASK}!", 3]}
    assert secret_values({}) == () and mask_json({"a": "first-secret"}, ()) == {"a": "first-secret"}


@pytest.fixture
def s3(moto_s3: Any) -> Any:
    moto_s3.create_bucket(Bucket=BUCKET)
    moto_s3.put_object(Bucket=BUCKET, Key=PREFIX + PARAMS_FILE, Body=b"params: {}\nrun: {}\n")
    return moto_s3


def test_nothing_the_runtime_keeps_holds_a_secret_value(
    s3: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    env = {ENV_BUCKET: BUCKET, ENV_PREFIX: PREFIX, ENV_SECRET_NAMES: "CREDENTIALS,DB_PASSWORD",
           "DB_PASSWORD": VALUE, "CREDENTIALS": JSON_SECRET}  # fmt: skip
    settings = RuntimeSettings(log_flush_seconds=0.05, log_tail_lines=5, work_dir=str(tmp_path))
    code = TaskRun(parse_args(["--", sys.executable, "-c", TASK]), settings, env).run()
    assert code == 1
    objects = {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read().decode()
               for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}  # fmt: skip
    assert {PREFIX + "log.txt", PREFIX + "result.json", PREFIX + STATUS_FILE} <= set(objects)
    assert any("/log/" in key for key in objects), "the running log's parts"
    for key, body in objects.items():
        for secret in (VALUE, "tok-3n-value", JSON_SECRET):
            assert secret not in body, f"{secret!r} in {key}"
    log = objects[PREFIX + "log.txt"]
    assert f"connecting with {MASK}" in log and f"whole: {MASK} field: {MASK}" in log
    status = Status.from_json(objects[PREFIX + STATUS_FILE])
    assert f"giving up on {MASK}" in status.log_tail and status.error == f"exit code 1: giving up on {MASK}"
    assert json.loads(objects[PREFIX + "result.json"]) == {"echo": MASK, MASK: [1, f"x{MASK}"]}
    assert VALUE not in capfd.readouterr().out, "its stdout (docker logs, CloudWatch) too"


def test_without_secrets_the_result_is_kept_byte_for_byte(s3: Any, tmp_path: Path) -> None:
    task = 'import os; open(os.environ["AIRLAUNCH_RESULT_FILE"], "w").write(\'{"a":  1}\')'
    settings = RuntimeSettings(log_flush_seconds=60, work_dir=str(tmp_path))
    assert (
        TaskRun(
            parse_args(["--", sys.executable, "-c", task]), settings, {ENV_BUCKET: BUCKET, ENV_PREFIX: PREFIX}
        ).run()
        == 0
    )
    assert s3.get_object(Bucket=BUCKET, Key=PREFIX + "result.json")["Body"].read() == b'{"a":  1}'
