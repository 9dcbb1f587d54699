"""The environment variables that carry the protocol into a task container and its command.

Guarantee: the launcher sets, and the task runtime reads, these names only; a catalog entry or
a launch's overrides can never set them (``AIRLAUNCH_`` and ``AWS_`` are reserved,
:class:`airlaunch.protocol.requests.Overrides`).
"""

from __future__ import annotations

# Environment the launcher gives every task container (read by the task runtime).
ENV_BUCKET = "AIRLAUNCH_BUCKET"
ENV_PREFIX = "AIRLAUNCH_PREFIX"
ENV_EXECUTION_ID = "AIRLAUNCH_EXECUTION_ID"
ENV_TIMEOUT_SECONDS = "AIRLAUNCH_TIMEOUT_SECONDS"
# On ECS: the run session, credentials for the task's own run prefix only, handed over as an ECS
# environment file (airlaunch.launcher.run_credentials) and renewed through the run's renewal.json
# (airlaunch.runtime.credentials), never by the task itself.
ENV_RUN_CREDENTIALS = "AIRLAUNCH_RUN_CREDENTIALS"
# Which variables of the container hold secrets (comma-separated names, never values): the catalog
# entry's ``secrets``, whose values the platform or the launcher injected; the runtime masks their
# values in everything it uploads (airlaunch.protocol.masking).
ENV_SECRET_NAMES = "AIRLAUNCH_SECRET_NAMES"
# The result cache's claim on a task whose launch missed (airlaunch.protocol.cache.CacheClaim): what the
# launcher records once the task has succeeded. Read back from the platform (Docker's labels, ECS's
# RunTask overrides), never from anything the task writes.
ENV_CACHE_CLAIM = "AIRLAUNCH_CACHE_CLAIM"
# Environment the task runtime gives the task's own process.
ENV_PARAMS_FILE = "AIRLAUNCH_PARAMS_FILE"
ENV_RESULT_FILE = "AIRLAUNCH_RESULT_FILE"
