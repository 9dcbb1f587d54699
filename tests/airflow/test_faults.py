"""The fault catalogue's rows marked ``test`` (bench/faults/catalogue.py), one case each: the same scenario code
`make faults` runs, on the test stack's Docker backend. Real Airflow processes under the stack's supervisor,
real containers, the faults injected from the outside (docker kill, SIGKILL, a REST call a user makes).

Each case asserts the goals of behaviour its row is judged on: the task ends as it should with the cause in
words (and, where its row says so, status.json's fields and the task log's lines), nothing is left running,
no result is lost or taken from another run, and nothing starts twice, counted from a Docker event stream the
case opens before its fault. Goals of time are the benchmark's (`make faults`), never asserted here. The rows
that are not tests say why in the catalogue. The launcher's part of these (its status.json for a killed or
OOM-killed container, a stop before the launch, a re-created run's own prefix) is proven without Docker in
tests/unit/test_launcher_logic.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airlaunch.airflow_rest import AirflowRest
from airlaunch.stack import Stack
from bench.faults.catalogue import TESTED, Fault
from bench.faults.stack import FaultStack
from bench.faults.suite import Suite

pytestmark = [pytest.mark.stack, pytest.mark.airflow]


@pytest.fixture(scope="module")
def fault_stack(stack: Stack, airflow_api: AirflowRest) -> FaultStack:
    """The test stack, whose Airflow loads the catalogue's DAGs too (tests/conftest.py), with them unpaused."""
    faults = FaultStack(stack)
    faults.unpause_dags()
    return faults


@pytest.fixture
def suite(fault_stack: FaultStack) -> Iterator[Suite]:
    """The steps and judges of the catalogue's scenarios; its Docker event stream is open once this returns."""
    suite = Suite(fault_stack, backend="docker")
    yield suite
    suite.events.close()


@pytest.mark.parametrize("fault", TESTED, ids=[fault.name for fault in TESTED])
def test_the_fault_ends_as_its_catalogue_row_says(fault: Fault, suite: Suite) -> None:
    row = fault.run_on(suite)

    print(f"\n{fault.name}: {row.message}\n  " + "\n  ".join(row.notes + row.late))
    assert row.missed == [], f"{fault.injected}: expected {fault.observed}; missed: {row.missed}"
    assert (row.containers_left, row.results_lost, row.duplicates) == (0, 0, 0)
