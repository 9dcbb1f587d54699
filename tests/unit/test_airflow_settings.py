"""The provider's ``[airlaunch]`` section: declared as Airflow's providers declare theirs, read through Airflow's
configuration (an explicit setting, then the old AIRLAUNCH_* variable, then the default), and carried by the
trigger from where the task deferred to the triggerer."""

from __future__ import annotations

import configparser
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow.configuration import conf

from airlaunch.protocol import Handle
from airlaunch.providers.airflow import get_provider_info
from airlaunch.providers.airflow.settings import OPTIONS, SECTION, AirflowSettings
from airlaunch.providers.airflow.triggers.launched_task import LaunchedTaskTrigger

HANDLE = Handle(backend="docker", task_ref="c0ffee", bucket="b", prefix="runs/d/r/t/-1/1/", launched=True)


@pytest.fixture(autouse=True)
def nothing_set(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Neither the environment nor airflow.cfg sets an [airlaunch] option, whatever the session's do."""
    for option in OPTIONS.values():
        monkeypatch.delenv(option.airflow_variable, raising=False)
        monkeypatch.delenv(option.legacy, raising=False)
    saved = {
        key: conf.get(SECTION, key) for key in OPTIONS if configparser.RawConfigParser.has_option(conf, SECTION, key)
    }
    for key in saved:
        conf.remove_option(SECTION, key)
    yield
    for key, value in saved.items():
        conf.set(SECTION, key, value)


def test_a_value_comes_from_airflow_then_the_old_variable_then_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert AirflowSettings().poll_interval == 1.0 and AirflowSettings().status_queue == ""
    monkeypatch.setenv("AIRLAUNCH_POLL_INTERVAL", "3")
    assert AirflowSettings().poll_interval == 3.0  # the old name is still honoured
    monkeypatch.setenv("AIRFLOW__AIRLAUNCH__POLL_INTERVAL", "4")
    assert AirflowSettings().poll_interval == 4.0  # an explicit Airflow setting wins
    monkeypatch.delenv("AIRFLOW__AIRLAUNCH__POLL_INTERVAL")
    conf.set(SECTION, "poll_interval", "5")  # as airflow.cfg's [airlaunch] section would
    try:
        assert AirflowSettings().poll_interval == 5.0
        monkeypatch.setenv("AIRFLOW__AIRLAUNCH__POLL_INTERVAL", "6")
        assert AirflowSettings().poll_interval == 6.0  # Airflow's own order: its variable over its file
    finally:
        conf.remove_option(SECTION, "poll_interval")


def test_an_explicit_empty_queue_turns_notifications_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLAUNCH_STATUS_QUEUE", "airlaunch-status")
    assert AirflowSettings().status_queue == "airlaunch-status"
    monkeypatch.setenv("AIRFLOW__AIRLAUNCH__STATUS_QUEUE", "")
    assert AirflowSettings().status_queue == ""


def test_a_value_that_is_not_a_number_names_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__AIRLAUNCH__OUTAGE_SECONDS", "a while")
    with pytest.raises(ValueError, match=r"\[airlaunch\] outage_seconds .*AIRLAUNCH_OUTAGE_SECONDS.*'a while'"):
        AirflowSettings()


def test_the_section_is_declared_as_providers_declare_theirs() -> None:
    section = get_provider_info()["config"][SECTION]
    assert section["description"] and set(section["options"]) == set(OPTIONS)
    for key, declared in section["options"].items():
        assert set(declared) == {"description", "type", "default", "example", "version_added"}, key
        assert declared["type"] in ("string", "integer", "float") and declared["description"].strip()
        assert OPTIONS[key].legacy in declared["description"]
        assert f"default: ``{OPTIONS[key].default}``" in declared["description"] or not OPTIONS[key].default
        assert SECTION in conf.sections()  # Airflow knows the section from the provider's metadata


def test_a_new_airflow_cfg_sets_no_option_so_the_old_variables_still_count(tmp_path: Path) -> None:
    """Airflow writes a missing airflow.cfg with every declared default as a setting of the file (as
    write_default_airflow_configuration_if_needed calls conf.write): were ours declared there, a fresh
    AIRFLOW_HOME would pin aws_default and friends over the AIRLAUNCH_* variables a deployment sets."""
    generated = tmp_path / "airflow.cfg"
    with generated.open("w") as file:
        conf.write(file, include_sources=False, include_env_vars=True, include_providers=True, extra_spacing=True,
                   only_defaults=True, show_values=True)  # fmt: skip
    written = configparser.RawConfigParser(interpolation=None, strict=False)
    written.read(generated)
    assert written.has_section(SECTION) and not written.options(SECTION)  # each option only as a comment
    assert "# function_name = " in generated.read_text()


def test_a_trigger_carries_the_settings_the_task_deferred_with(monkeypatch: pytest.MonkeyPatch) -> None:
    """Made on the worker (its configuration), serialized, made again in a triggerer configured otherwise: the
    task's budgets, poll interval and read sizes are still the worker's."""
    worker = {"outage_seconds": "60", "retry_seconds": "30", "retry_max_backoff": "2", "log_read_bytes": "4096",
              "poll_interval": "0.5", "max_xcom_bytes": "1024", "status_queue": "q"}  # fmt: skip
    for key, value in worker.items():
        monkeypatch.setenv(OPTIONS[key].airflow_variable, value)
    _, kwargs = LaunchedTaskTrigger(handle=HANDLE.to_dict()).serialize()
    for key in worker:
        monkeypatch.setenv(OPTIONS[key].airflow_variable, "7")  # the triggerer's own configuration
    again = LaunchedTaskTrigger(**kwargs)
    assert {key: str(getattr(again, key)) for key in worker} == {
        "outage_seconds": "60.0", "retry_seconds": "30.0", "retry_max_backoff": "2.0", "log_read_bytes": "4096",
        "poll_interval": "0.5", "max_xcom_bytes": "1024", "status_queue": "q",
    }  # fmt: skip
    assert (again.hook.retry_seconds, again.hook.retry_cap) == (30.0, 2.0)  # its launcher calls too
    old = {k: v for k, v in kwargs.items() if k not in ("outage_seconds", "retry_seconds", "log_read_bytes")}
    assert LaunchedTaskTrigger(**old).outage_seconds == 7.0  # a trigger serialized before it carried them
