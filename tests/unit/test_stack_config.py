"""A StackConfig is one stack: read from the environment once, when it is made, and handed to child processes whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from airlaunch.stack import StackConfig

NAMES = (
    "AIRLAUNCH_STATE_DIR",
    "AIRLAUNCH_REPO",
    "AIRLAUNCH_LAMBDA_PORT",
    "AIRLAUNCH_RIE_PORT_BASE",
    "AIRLAUNCH_AIRFLOW_PARALLELISM",
)


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)


def test_the_state_folder_is_resolved_when_the_config_is_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = StackConfig(repo=tmp_path)
    assert cfg.state_dir == tmp_path / ".stack"
    monkeypatch.setenv("AIRLAUNCH_STATE_DIR", str(tmp_path / "elsewhere"))
    assert cfg.state_dir == tmp_path / ".stack"  # a config made earlier keeps its stack
    assert StackConfig(repo=tmp_path).state_dir == tmp_path / "elsewhere"
    assert StackConfig(repo=tmp_path, state_dir=tmp_path / "given").state_dir == tmp_path / "given"


def test_a_child_made_from_its_env_is_the_same_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the supervisor (and the components it starts) make of ``env()`` is the config that started them,
    values given as arguments included."""
    cfg = StackConfig(repo=tmp_path, state_dir=tmp_path / "bench", lambda_port=9500, rie_port_base=20000)
    for name, value in cfg.env().items():
        monkeypatch.setenv(name, value)
    assert StackConfig() == cfg


def test_airflow_runs_two_executor_slots_unless_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two LocalExecutor slots (worker processes, each held for the scheduler's life) unless
    AIRLAUNCH_AIRFLOW_PARALLELISM says otherwise: launched tasks hold no slot while they run."""
    assert StackConfig(repo=tmp_path).airflow_env()["AIRFLOW__CORE__PARALLELISM"] == "2"
    monkeypatch.setenv("AIRLAUNCH_AIRFLOW_PARALLELISM", "6")
    assert StackConfig(repo=tmp_path).airflow_env()["AIRFLOW__CORE__PARALLELISM"] == "6"
