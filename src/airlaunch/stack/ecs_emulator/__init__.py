"""A Fargate stand-in for the local stack's ECS mode: moto's AWS APIs, whose ECS tasks really run.

For tests and demos, not a part of airlaunch: the launcher talks to it as to ECS and cannot
tell. ``python -m airlaunch.stack.ecs_emulator --port P`` serves every service moto has on
127.0.0.1:P; a Fargate task RunTask creates runs as a Docker container, moves through ECS's
lifecycle with ECS's timestamps, stop codes and reasons, sends ECS task state change events
to the Lambda targets of matching EventBridge rules, and ECS's throttling and Fargate's
quotas apply. docs/ecs-mode.md describes it, its flags and its assumptions.

The package, by concern:

* ``server``: :class:`EcsEmulator` (start/stop) and the HTTP gateway (limits, then moto);
* ``moto_hooks``: the few changes made to moto's ECS in-process;
* ``fleet``: ECS's task lifecycle on moto's task objects;
* ``containers`` / ``runner``: a task's container, and Docker;
* ``events``: task state change events and their asynchronous Lambda delivery;
* ``limits``: ECS's and Fargate's published throttling and quotas;
* ``control``: the small control API under ``/_airlaunch/ecs/``;
* ``clock``, ``settings``: time, and the flags.
"""

from airlaunch.stack.ecs_emulator.server import EcsEmulator
from airlaunch.stack.ecs_emulator.settings import Settings

__all__ = ["EcsEmulator", "Settings", "main"]


def main(argv: list[str] | None = None) -> int:
    from airlaunch.stack.ecs_emulator.__main__ import main as run

    return run(argv)
