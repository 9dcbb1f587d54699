"""Which Airflow task try a message is about: :class:`RunIdentity`, and the ids it is made of.

Guarantees: an id that reaches an S3 key is one safe key segment (no '/', no '..', Airflow's own
alphabet), so no identity can climb out of its prefix or add a level to it; each try has an
execution id, digest and slot of its own, computed the same way on every side.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from typing import Any

from airlaunch.protocol.checks import InvalidRequest, check_keys, require

# Airflow's own id alphabets (run ids may also hold ':', '+' and '~'); '/' is never allowed,
# so an id can never add a level to an S3 key, and '..' is refused outright.
_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+~-]{0,249}$")
_TI_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def validate_id(value: Any, field_name: str) -> str:
    """Return ``value`` if it is a safe Airflow id for one S3 key segment."""
    require(value, field_name, str)
    if "/" in value or ".." in value:
        raise InvalidRequest(field_name, f"{value!r} must not contain '/' or '..'")
    if not _ID_RE.match(value):
        raise InvalidRequest(
            field_name,
            f"{value!r} must be 1-250 characters of letters, digits and _.:+~- "
            "and must not start with '.', ':', '+', '~' or '-'",
        )
    return value


@dataclass(frozen=True)
class RunIdentity:
    """Which Airflow task try a launch belongs to; it alone decides the S3 prefix.

    ``ti_id`` is Airflow's task-instance id, new for every try (a retry, a clear, a re-created
    DAG run that reuses a run id and restarts try numbers at 1). It is part of the prefix, so
    a try can never take another try's status.json or results for its own.
    """

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    try_number: int = 1
    ti_id: str = ""

    def __post_init__(self) -> None:
        validate_id(self.dag_id, "identity.dag_id")
        validate_id(self.run_id, "identity.run_id")
        validate_id(self.task_id, "identity.task_id")
        require(self.map_index, "identity.map_index", int)
        require(self.try_number, "identity.try_number", int)
        require(self.ti_id, "identity.ti_id", str)
        if self.map_index < -1:
            raise InvalidRequest("identity.map_index", "must be -1 (not mapped) or >= 0")
        if self.try_number < 1:  # Airflow 3 numbers a task instance's tries from 1
            raise InvalidRequest("identity.try_number", "must be >= 1 (Airflow numbers tries from 1)")
        if self.ti_id and not _TI_ID_RE.match(self.ti_id):
            raise InvalidRequest("identity.ti_id", f"{self.ti_id!r} is not a task-instance id (a lower-case UUID)")

    @classmethod
    def from_dict(cls, data: Any) -> RunIdentity:
        require(data, "identity", dict)
        check_keys(data, "identity", {"dag_id", "run_id", "task_id", "map_index", "try_number", "ti_id"})
        for name in ("dag_id", "run_id", "task_id"):
            if name not in data:
                raise InvalidRequest(f"identity.{name}", "is required")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def try_key(self) -> str:
        """The try's S3 key segment: ``<try>-<ti_id>`` (``<try>`` alone without a ti_id)."""
        return f"{self.try_number}-{self.ti_id}" if self.ti_id else str(self.try_number)

    @property
    def execution_id(self) -> str:
        """Human-readable, unique per task try; given to the task as AIRLAUNCH_EXECUTION_ID."""
        return f"{self.dag_id}/{self.run_id}/{self.task_id}/{self.map_index}/{self.try_key}"

    @property
    def digest(self) -> str:
        """Short stable hash: names the container, so a second launch collides instead of duplicating."""
        return digest_of(self.execution_id)

    @property
    def slot(self) -> str:
        """Hash of the task instance across its tries (dag, run, task, map index): finds an earlier try."""
        key = f"{self.dag_id}/{self.run_id}/{self.task_id}/{self.map_index}"
        return hashlib.sha256(key.encode()).hexdigest()[:32]


def digest_of(execution_id: str) -> str:
    """RunIdentity.digest from the execution id alone (what a task's environment carries)."""
    return hashlib.sha256(execution_id.encode()).hexdigest()[:32]


def parse_try_key(segment: str) -> tuple[int, str]:
    """``<try>`` or ``<try>-<ti_id>`` -> (try number, ti_id); ValueError for anything else."""
    number, _, ti_id = segment.partition("-")
    identity = RunIdentity("d", "r", "t", -1, int(number), ti_id)  # validates both parts
    return identity.try_number, identity.ti_id
