"""``airlaunch secret``: a value goes in from stdin or a prompt, never from the command line, and is never printed;
``check`` says which catalog secrets a launch would refuse (moto's Secrets Manager and SSM)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from airlaunch import cli
from airlaunch.cli import secret

VALUE = "correct-horse-battery"


@pytest.fixture
def aws(moto_s3: Any) -> dict[str, Any]:
    return {"secretsmanager": boto3.client("secretsmanager"), "ssm": boto3.client("ssm")}


def _stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def test_set_reads_the_value_from_stdin_and_never_prints_it(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, VALUE + "\n")
    assert cli.main(["secret", "set", "app/db"]) == 0
    assert aws["secretsmanager"].get_secret_value(SecretId="app/db")["SecretString"] == VALUE
    _stdin(monkeypatch, "rotated-value-2\n")
    assert cli.main(["secret", "set", "app/db"]) == 0, "a second set is a new current version"
    assert aws["secretsmanager"].get_secret_value(SecretId="app/db")["SecretString"] == "rotated-value-2"
    out = capsys.readouterr()
    assert "created Secrets Manager secret 'app/db'" in out.out and "new current version" in out.out
    assert VALUE not in out.out + out.err and "rotated-value-2" not in out.out + out.err


def test_set_one_json_key_keeps_the_others_and_ssm_stores_a_secure_string(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    aws["secretsmanager"].create_secret(Name="app/db", SecretString=json.dumps({"username": "app"}))
    _stdin(monkeypatch, VALUE)
    assert cli.main(["secret", "set", "app/db", "--json-key", "password"]) == 0
    stored = json.loads(aws["secretsmanager"].get_secret_value(SecretId="app/db")["SecretString"])
    assert stored == {"username": "app", "password": VALUE}
    _stdin(monkeypatch, VALUE)
    assert cli.main(["secret", "set", "/app/token", "--ssm"]) == 0
    parameter = aws["ssm"].get_parameter(Name="/app/token", WithDecryption=True)["Parameter"]
    assert (parameter["Type"], parameter["Value"]) == ("SecureString", VALUE)


def test_a_terminal_gets_a_prompt_that_does_not_echo_asked_twice(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    tty = io.StringIO()
    monkeypatch.setattr(tty, "isatty", lambda: True)
    answers = iter([VALUE, VALUE, VALUE, "typo"])
    monkeypatch.setattr(secret.getpass, "getpass", lambda prompt: next(answers))
    assert secret.read_new_value("X", tty) == VALUE
    with pytest.raises(cli.store.CliError, match="the two values differ"):
        secret.read_new_value("X", tty)


def test_the_value_cannot_be_given_as_an_argument_nor_be_empty(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as usage:
        cli.main(["secret", "set", "app/db", VALUE])
    assert usage.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err
    _stdin(monkeypatch, "\n")
    assert cli.main(["secret", "set", "app/db"]) == 2
    assert "an empty value; nothing was stored" in capsys.readouterr().err


def test_check_names_what_a_launch_would_refuse(
    aws: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = tmp_path / "catalog.yaml"
    secrets = {"DB_PASSWORD": {"secretsmanager": "app/db"}, "API_TOKEN": {"ssm": "/app/token"}}
    tasks = {"db": {"image": "i", "command": ["x"], "secrets": secrets}, "plain": {"image": "i", "command": ["y"]}}
    catalog.write_text(yaml.safe_dump({"tasks": tasks}))
    aws["secretsmanager"].create_secret(Name="app/db", SecretString=VALUE)
    assert cli.main(["secret", "check", "--catalog", str(catalog)]) == 1
    out = capsys.readouterr().out
    assert "db  API_TOKEN  SSM parameter '/app/token'  does not exist" in out
    assert "db  DB_PASSWORD  Secrets Manager secret 'app/db'  ok" in out and VALUE not in out
    aws["ssm"].put_parameter(Name="/app/token", Value=VALUE, Type="SecureString")
    assert cli.main(["--json", "secret", "check", "db", "--catalog", str(catalog)]) == 0
    assert {row["state"] for row in json.loads(capsys.readouterr().out)} == {"ok"}
