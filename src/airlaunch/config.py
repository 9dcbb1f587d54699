"""How airlaunch reads its settings, and where each side's live.

Each side reads its own settings, once, through a dataclass in its own package, so that a
process loads only what its side needs:

* the launcher Lambda: :mod:`airlaunch.launcher.settings` (``LauncherSettings``, and the local
  Lambda endpoint's ``LocalPoolSettings``);
* the task runtime: :mod:`airlaunch.runtime.settings` (``RuntimeSettings``), standard library
  only, because the runtime imports it before its SIGTERM handler is set;
* the Airflow side: :mod:`airlaunch.providers.airflow.settings`, the provider's ``[airlaunch]``
  section of Airflow's configuration (``AIRFLOW__AIRLAUNCH__<KEY>`` or airflow.cfg), which
  still honours the ``AIRLAUNCH_*`` variables;
* the results CLI: :mod:`airlaunch.cli.settings`; the deploy tool: :mod:`airlaunch.deploy.settings`;
* the embedded stack: :mod:`airlaunch.stack.config` (``StackConfig``).

The README's configuration reference lists every variable (tests/unit/test_docs.py checks it).
Standard AWS variables (AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, credentials) are boto3's own.
This module is standard library only: every side imports it.
"""

from __future__ import annotations

import os


def env(name: str, default: str) -> str:
    """The variable's value; ``default`` when it is unset or empty."""
    return os.environ.get(name, default) or default


def env_list(name: str) -> tuple[str, ...]:
    """A comma-separated variable's items, stripped, empty ones left out."""
    return tuple(part.strip() for part in os.environ.get(name, "").split(",") if part.strip())


def env_flag(name: str, default: bool = False) -> bool:
    """``true`` (any case) is True; unset or empty is ``default``; anything else False."""
    return env(name, "true" if default else "false").lower() == "true"
