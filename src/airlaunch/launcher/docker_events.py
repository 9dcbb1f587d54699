"""Watches the local Docker engine so that no try ends unrecorded and no container outlives its try.

Local only (the launcher image off AWS runs it beside the emulators, see ``local_pool``); on
AWS, ECS task state events reach the launcher through EventBridge instead.

* Every ``die`` of a task container is seen the moment it happens, and the try's end goes
  through ``Launcher.ended``: if the runtime wrote no status.json (killed, OOM-killed, its
  engine restarted), one is written on its behalf with the exit code and the cause in
  words, so the Airflow task fails within a second or two instead of waiting for a poll.
  The container is removed once its end is recorded.
* On (re)connecting to the engine, and every ``interval`` seconds, a sweep does the same
  for containers that ended while nobody listened, and ``Launcher.reap`` stops tasks long
  past their timeout, so an orphan has a bounded life whatever else failed.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from docker.errors import DockerException

from airlaunch.launcher.backends.docker import DockerBackend
from airlaunch.launcher.service import Launcher

log = logging.getLogger(__name__)


class DockerWatcher:
    def __init__(self, launcher: Launcher, backend: DockerBackend, interval: float = 30.0) -> None:
        self.launcher = launcher
        self.backend = backend
        self.interval = interval
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="airlaunch-ended")
        self.stopping = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._listen, name="airlaunch-docker-events", daemon=True).start()
        threading.Thread(target=self._sweep_forever, name="airlaunch-reaper", daemon=True).start()

    def _listen(self) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            since = int(time.time()) - 1
            try:
                self.sweep()  # what ended while nobody listened (first start, engine restart)
                events = self.backend.client.events(
                    decode=True,
                    since=since,
                    filters={"type": "container", "event": ["die"], "label": [self.backend.scope_label]},
                )
                backoff = 1.0
                for event in events:
                    self.pool.submit(self._ended, str(event.get("id") or event.get("Actor", {}).get("ID", "")))
                log.warning("the Docker event stream ended (engine restarting?): reconnecting")
            except DockerException as exc:
                log.warning("cannot watch Docker events (%s): retrying in %.0f s", exc, backoff)
            except Exception:
                log.exception("the Docker event watcher failed: restarting it")
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, 10.0)

    def _ended(self, task_ref: str) -> None:
        try:
            task = self.backend.task(task_ref)
            if task is not None:
                self.launcher.ended(task)
        except Exception:  # the sweep tries again
            log.exception("recording the end of container %s failed", task_ref)

    def sweep(self) -> None:
        for task in self.backend.ended_tasks():
            self._ended(task.task_ref)

    def _sweep_forever(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                self.sweep()
                reaped = self.launcher.reap()
                if reaped:
                    log.warning("reaped %d task(s) long past their timeout: %s", len(reaped), reaped)
            except Exception:
                log.exception("the sweep failed; next one in %.0f s", self.interval)


def start_watching() -> DockerWatcher | None:
    """Start the watcher for this process's launcher if it runs the Docker backend."""
    from airlaunch.launcher.handler import get_launcher

    launcher = get_launcher()
    if not isinstance(launcher.backend, DockerBackend):
        return None
    watcher = DockerWatcher(launcher, launcher.backend, launcher.settings.reap_interval_seconds)
    watcher.start()
    log.info("watching Docker for task containers that end (sweep and reaper every %.0f s)", watcher.interval)
    return watcher
