"""``airlaunch``, the results CLI: the S3 store, the commands and the rendering, a module each.

``main`` imports the CLI only when called, so that a missing ``rich`` (installed with the
``[cli]`` extra) is a one-line error instead of a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """The ``airlaunch`` console script; see :mod:`airlaunch.cli.app`."""
    try:
        from airlaunch.cli.app import run
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "rich":
            raise
        sys.stderr.write("airlaunch: error: the CLI needs rich: pip install 'airlaunch[cli]'\n")
        return 2
    return run(argv)


__all__ = ["main"]
