"""Every scenario of the suite, registered in the table's order: first the rows that run on both backends
(the container's faults, then the user's actions), then ECS's own, then the Docker backend's (the stack's
parts, load, the compose stack's Celery worker). Import this, not the scenario modules one by one."""

# isort: off
from bench.faults import scenarios  # the container's and the user's: both backends
from bench.faults import ecs_rows  # ECS's own
from bench.faults import stack_rows, load_rows, compose  # the Docker backend's

# isort: on
from bench.faults.suite import NOT_ON, SCENARIOS

__all__ = ["NOT_ON", "SCENARIOS", "compose", "ecs_rows", "load_rows", "scenarios", "stack_rows"]
