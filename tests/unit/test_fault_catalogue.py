"""The fault catalogue (bench/faults/catalogue.py) that `make faults` and tests/airflow/test_faults.py share."""

from __future__ import annotations

from bench.faults.catalogue import BY_NAME, FAULTS, TESTED


def test_every_fault_has_one_name_and_says_how_it_is_made_and_what_must_be_seen() -> None:
    assert len(BY_NAME) == len(FAULTS)
    for fault in FAULTS:
        assert fault.injected and fault.observed, fault.name
        assert any(fault.runs_on(backend) for backend in ("docker", "ecs")), fault.name


def test_a_row_that_is_not_a_test_says_why() -> None:
    for fault in FAULTS:
        assert fault.test is True or (isinstance(fault.test, str) and fault.test), fault.name
        for backend, why in fault.not_on().items():
            assert why, f"{fault.name} does not run on {backend} and does not say why"


def test_the_faults_the_stack_tests_proved_are_test_cases() -> None:
    """Each was a test of its own before the catalogue served the tests (test_faults.py, test_end_to_end.py)."""
    proved = {
        "exit", "kill", "oom", "mark-failed-0s", "mark-failed-watched", "localstack-10s", "launcher-down",
        "triggerer-killed", "triggerer-restarted", "recreated-run",
    }  # fmt: skip
    assert proved <= {fault.name for fault in TESTED}
    assert all(fault.runs_on("docker") for fault in TESTED)
