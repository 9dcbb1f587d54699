"""``python -m airlaunch.stack.ecs_emulator --port P [...]``: serve until SIGTERM or SIGINT, then clean up.

On SIGTERM or SIGINT it stops serving, stops every container it started (SIGTERM, a short
grace, SIGKILL) and removes them. It prints ``ECS emulator listening on URL`` once it serves.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from airlaunch.stack.ecs_emulator.server import EcsEmulator
from airlaunch.stack.ecs_emulator.settings import from_args, parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    emulator = EcsEmulator(from_args(args)).start()
    print(f"ECS emulator listening on {emulator.url}", flush=True)
    try:
        done.wait()
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
