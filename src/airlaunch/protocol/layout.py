"""Where a task try keeps its files in S3: ``s3://<bucket>/<root>/<dag>/<run>/<task>/<map>/<try>/``.

Guarantees: the prefix follows from the try's identity alone (:class:`ResultLayout.for_identity`),
the same on every side, and can be read back into that identity (:func:`identity_of_prefix`);
every file of a try has one name here, so no side spells a key of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from airlaunch.protocol.identity import RunIdentity, parse_try_key, validate_id

PARAMS_FILE = "params.yaml"
RESULT_FILE = "result.json"
NOTEBOOK_FILE = "output.ipynb"
LOG_FILE = "log.txt"
STATUS_FILE = "status.json"
STOP_FILE = "stop.json"  # why the launcher stopped this try: written before it signals the container
LOG_PARTS_DIR = "log"  # the running log, uploaded in parts (log.txt holds it whole at the end)
TIMINGS_FILE = "timings.json"  # the moments Airflow's side and the launcher saw (Timeline), written at the end
ECS_TIMES_FILE = "ecs.json"  # ECS's own timestamps of the task (EcsTimes), written when ECS reports it stopped


@dataclass(frozen=True)
class ResultLayout:
    """Where one task try keeps its files: ``s3://<bucket>/<prefix>/<dag>/<run>/<task>/<map>/<try>/``."""

    bucket: str
    prefix: str

    @classmethod
    def for_identity(cls, bucket: str, root: str, identity: RunIdentity) -> ResultLayout:
        parts = [root.strip("/")] if root.strip("/") else []
        parts += [identity.dag_id, identity.run_id, identity.task_id]
        parts += [str(identity.map_index), identity.try_key]
        return cls(bucket=bucket, prefix="/".join(parts) + "/")

    def key(self, name: str) -> str:
        return self.prefix + name

    @property
    def params_key(self) -> str:
        return self.key(PARAMS_FILE)

    @property
    def result_key(self) -> str:
        return self.key(RESULT_FILE)

    @property
    def notebook_key(self) -> str:
        return self.key(NOTEBOOK_FILE)

    @property
    def log_key(self) -> str:
        return self.key(LOG_FILE)

    @property
    def status_key(self) -> str:
        return self.key(STATUS_FILE)

    @property
    def stop_key(self) -> str:
        return self.key(STOP_FILE)

    @property
    def timings_key(self) -> str:
        return self.key(TIMINGS_FILE)

    @property
    def ecs_times_key(self) -> str:
        return self.key(ECS_TIMES_FILE)

    def log_part_key(self, number: int) -> str:
        """The running log, uploaded in parts while the task runs (log.txt holds it whole at the end)."""
        return self.key(f"{LOG_PARTS_DIR}/{number:06d}")

    def uri(self, name: str = "") -> str:
        return f"s3://{self.bucket}/{self.key(name)}"


def run_prefix(root: str, dag_id: str, run_id: str) -> str:
    """The prefix under which all task tries of one DAG run live."""
    validate_id(dag_id, "dag_id")
    validate_id(run_id, "run_id")
    root = root.strip("/")
    return (f"{root}/" if root else "") + f"{dag_id}/{run_id}/"


def identity_of_prefix(prefix: str) -> RunIdentity | None:
    """The try a result prefix belongs to (``<root>/<dag>/<run>/<task>/<map>/<try>-<ti_id>/``), if it is one."""
    parts = prefix.rstrip("/").split("/")
    if len(parts) < 5:
        return None
    dag_id, run_id, task_id, map_index, try_key = parts[-5:]
    try:
        try_number, ti_id = parse_try_key(try_key)
        return RunIdentity(dag_id, run_id, task_id, int(map_index), try_number, ti_id)
    except ValueError:
        return None
