"""Restart compose services that stay unhealthy: ``python -m airlaunch.stack.autoheal`` (docker-compose.yml).

Docker restarts a container whose process dies (``restart: unless-stopped``) but not one that
is alive and unhealthy: a hung scheduler, a triggerer without heartbeat. This watches
Docker's ``health_status`` events for containers labelled ``airlaunch.autoheal=true`` in its
compose project and restarts one that reports unhealthy, at most once per ``cooldown``
seconds per container (the embedded stack's supervisor does the same for its processes).
"""

from __future__ import annotations

import logging
import os
import time

import docker
from docker.errors import DockerException

log = logging.getLogger("airlaunch.autoheal")


def watch(project: str, cooldown: float = 120.0) -> None:
    client = docker.from_env()
    last_restart: dict[str, float] = {}
    filters = {
        "type": "container",
        "event": "health_status",
        "label": ["airlaunch.autoheal=true", f"com.docker.compose.project={project}"],
    }
    log.info("restarting unhealthy containers of compose project %s", project)
    while True:
        try:
            for event in client.events(decode=True, filters=filters):
                status = str(event.get("status") or event.get("Action") or "")
                container_id = str(event.get("id") or "")
                if (
                    not status.endswith("unhealthy")
                    or time.monotonic() - last_restart.get(container_id, -1e9) < cooldown
                ):
                    continue
                name = event.get("Actor", {}).get("Attributes", {}).get("name", container_id[:12])
                log.warning("%s is unhealthy: restarting it", name)
                last_restart[container_id] = time.monotonic()
                client.containers.get(container_id).restart(timeout=20)
        except DockerException as exc:
            log.warning("cannot watch Docker (%s): retrying in 5 s", exc)
            time.sleep(5)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    watch(os.environ.get("COMPOSE_PROJECT_NAME") or "airlaunch")
