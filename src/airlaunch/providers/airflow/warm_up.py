"""A triggerer's head start: what its first trigger would wait for is built when the triggerer starts.

A triggerer's supervisor builds its in-process execution API (a FastAPI app with its versioned routes,
a DAG bag) on the first request a trigger makes through it (a connection, an XCom, a DAG run count),
and serves nothing else meanwhile: 5 CPU-s measured on a host without byte-code, 10 to 12 s on two busy
cores, which the first task after a triggerer start waited for before its launch reached the launcher
(later tasks found it built). The trigger runner also imports the trigger's modules on its first
trigger: the Amazon provider's hooks, boto3, botocore, aiobotocore.

``WarmUpPlugin`` (the ``airflow.plugins`` entry point) moves both to the triggerer's start. What it
guarantees:

* Only a triggerer acts: every Airflow process loads plugins, and this module imports nothing but
  Airflow's plugin and listener classes; the listener's ``on_starting`` returns at once elsewhere.
* In the triggerer, ``on_starting`` runs as its job is made, before the process forks its trigger runner.
  It asks to be called in that child (``os.register_at_fork``, once: the parent and the child disarm
  it at the first fork). In the child, one thread waits for the runner's channel to its supervisor
  and makes one cheap request (a DAG run count), which has the supervisor build its API before any
  trigger asks; another imports the trigger's modules.
* A failed warm-up costs the head start only (the first request builds the API as before); it is
  logged at debug level and the triggerer goes on.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)

# What a trigger runner imports for its first LaunchedTaskTrigger (the trigger, its hook, the SQS listener).
TRIGGER_MODULES = (
    "airlaunch.providers.airflow.triggers.launched_task",
    "airflow.providers.amazon.aws.hooks.sqs",
    "aiobotocore.session",
)
CHANNEL_WAIT_SECONDS = 120.0
WARM_UP_DAG_ID = "airlaunch-warm-up"


def is_triggerer(argv: list[str]) -> bool:
    """True in an ``airflow triggerer`` process."""
    return len(argv) > 1 and argv[1] == "triggerer"


def supervisor_channel() -> Any:
    """The trigger runner's channel to its supervisor once it can send from another thread, else None."""
    from airflow.sdk.execution_time import task_runner

    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    if comms is None or type(comms).__name__ != "TriggerCommsDecoder" or getattr(comms, "_loop", None) is None:
        return None
    return comms


def ask_supervisor() -> None:
    """One cheap request through the supervisor's execution API: it builds the API to answer."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    RuntimeTaskInstance.get_dr_count(dag_id=WARM_UP_DAG_ID)


def warm_up_api(
    channel: Callable[[], Any] = supervisor_channel,
    request: Callable[[], None] = ask_supervisor,
    wait_seconds: float = CHANNEL_WAIT_SECONDS,
    pause: float = 0.1,
) -> bool:
    """Wait up to ``wait_seconds`` for the runner's channel, then make ``request``; True if it was made."""
    deadline = time.monotonic() + wait_seconds
    while channel() is None:
        if time.monotonic() > deadline:
            log.debug("triggerer warm-up: no trigger runner channel after %.0f s", wait_seconds)
            return False
        time.sleep(pause)
    try:
        request()
    except Exception as exc:  # only a head start
        log.debug("triggerer warm-up: the execution API request failed: %s", exc)
        return False
    return True


def import_trigger_modules(modules: tuple[str, ...] = TRIGGER_MODULES) -> list[str]:
    """Import what the first trigger would; the modules that failed (logged, never raised)."""
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            log.debug("triggerer warm-up: cannot import %s: %s", name, exc)
            failed.append(name)
    return failed


class _Armed:
    """Whether the next fork is the trigger runner's (set by on_starting, cleared at the first fork)."""

    value = False


def _disarm() -> None:
    _Armed.value = False


def _in_trigger_runner() -> None:
    """Called in the child of the triggerer's first fork after on_starting: the trigger runner."""
    if not _Armed.value:
        return
    _Armed.value = False
    threading.Thread(target=warm_up_api, name="airlaunch-warm-up-api", daemon=True).start()
    threading.Thread(target=import_trigger_modules, name="airlaunch-warm-up-imports", daemon=True).start()


class TriggererWarmUp:
    """The listener: arms the warm-up in a triggerer process, does nothing in any other."""

    def __init__(self, argv: list[str] | None = None, register: Callable[..., None] = os.register_at_fork) -> None:
        self._argv = argv
        self._register = register
        self._registered = False

    @hookimpl
    def on_starting(self, component: Any) -> None:
        if not is_triggerer(self._argv if self._argv is not None else sys.argv):
            return
        _Armed.value = True
        if not self._registered:  # at-fork handlers cannot be removed: register once per process
            self._register(after_in_child=_in_trigger_runner, after_in_parent=_disarm)
            self._registered = True


class WarmUpPlugin(AirflowPlugin):
    """Registers ``TriggererWarmUp`` (see the module's docstring)."""

    name = "airlaunch_triggerer_warm_up"
    listeners = [TriggererWarmUp()]
