"""``python -m airlaunch.stack up|down|status|reload|reset|env|localstack-up|supervise``."""

from __future__ import annotations

import argparse
import subprocess
import sys

from airlaunch.stack import Stack, supervisor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airlaunch.stack", description="The embedded local stack.")
    commands = ["up", "down", "status", "env", "localstack-up", "reload", "reset", "supervise"]
    parser.add_argument("command", choices=commands)
    parser.add_argument("--airflow", action="store_true", help="also start Airflow's processes (up)")
    args = parser.parse_args(argv)
    if args.command == "supervise":
        supervisor.main()
        return 0
    stack = Stack()
    try:
        if args.command == "up":
            stack.up(with_airflow=args.airflow)
        elif args.command == "localstack-up":
            stack.up(only=["localstack"])
        elif args.command == "down":
            stack.down()
        elif args.command == "reload":
            print(f"==> {stack.reload()}")
        elif args.command == "reset":
            gone = stack.reset()
            print("==> Deleted the local results and Airflow's state:" if gone else "==> Nothing to delete")
            for path in gone:
                print(f"    {path}")
        elif args.command == "env":
            for key, value in stack.cfg.client_env().items():
                print(f"export {key}={value}")
        else:
            for name, state in stack.status().items():
                health = "healthy" if state["healthy"] else "up, not healthy" if state["alive"] else "down"
                print(f"{name:22} {health:16} restarts {state['restarts']}")
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or ""
        print(f"error: {exc} {detail}".strip(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
