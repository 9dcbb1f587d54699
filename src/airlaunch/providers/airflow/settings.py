"""The Airflow side's settings: the provider's ``[airlaunch]`` section of Airflow's configuration.

Every option is declared once, in ``OPTIONS``: ``get_provider_info()["config"]`` is made from it,
so Airflow documents the section as it documents any provider's (``airflow config list``, a
generated airflow.cfg), and ``AirflowSettings`` reads each option through
``airflow.configuration.conf``. A value comes from, first to last:

1. an explicit Airflow setting: ``AIRFLOW__AIRLAUNCH__<KEY>`` or ``<key>`` in airflow.cfg's
   ``[airlaunch]`` section (Airflow's own rules: the variable wins over the file);
2. else the option's ``AIRLAUNCH_*`` variable, the name airlaunch used before it had a section
   (still honoured, so existing deployments keep working unchanged);
3. else the default declared here.

Whose configuration counts: each setting is read by the process that makes the object using it.
An operator's defaults are read where the DAG is parsed; a trigger takes the task's settings
(poll interval, budgets, read sizes) when it is made, on the worker that defers, and carries them
in its serialized state, so the triggerer acts on the values the task was deferred with. Only
what a triggerer shares among all its tasks (``sweep_seconds``, ``triggerer_reads_per_second``) is
the triggerer's own configuration.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

SECTION = "airlaunch"
VERSION_ADDED = "0.1.0"

T = TypeVar("T")


@dataclass(frozen=True)
class Option:
    """One option of the ``[airlaunch]`` section, as Airflow's provider configuration describes it."""

    key: str
    type: str  # Airflow's config types: string, integer, float
    default: str  # "" for none
    legacy: str  # the AIRLAUNCH_* variable honoured when Airflow's configuration does not set it
    description: str
    example: str

    @property
    def airflow_variable(self) -> str:
        return f"AIRFLOW__{SECTION.upper()}__{self.key.upper()}"

    def provider_info(self) -> dict[str, Any]:
        """The option as ``get_provider_info()["config"]`` declares it (the Amazon provider's shape).

        Its declared default is None on purpose: Airflow writes a new airflow.cfg with every declared
        default as a setting of the file, which would then override the ``AIRLAUNCH_*`` variable; an
        option without one is written commented out, so only a value someone set counts as set. The
        default is stated in the description and applied by ``setting``."""
        default = f"``{self.default}``" if self.default else "unset"
        return {
            "description": f"{self.description}\nAlso read from ``{self.legacy}`` when Airflow's configuration "
            f"does not set it; default: {default}.\n",
            "type": self.type,
            "default": None,
            "example": self.example,
            "version_added": VERSION_ADDED,
        }


OPTIONS: dict[str, Option] = {
    option.key: option
    for option in (
        Option(
            "aws_conn_id", "string", "aws_default", "AIRLAUNCH_AWS_CONN_ID",
            "The Airflow AWS connection for Lambda, S3 and SQS (its endpoints, region and credentials).",
            "airlaunch_aws",
        ),
        Option(
            "function_name", "string", "airlaunch-launcher", "AIRLAUNCH_FUNCTION_NAME",
            "The launcher Lambda function (``function`` under the local Runtime Interface Emulator).",
            "prod-launcher",
        ),
        Option(
            "poll_interval", "float", "1", "AIRLAUNCH_POLL_INTERVAL",
            "Seconds between a trigger's S3 requests for one task.",
            "2",
        ),
        Option(
            "max_xcom_bytes", "integer", "49152", "AIRLAUNCH_MAX_XCOM_BYTES",
            "result.json up to this size goes to XCom as ``return_value``; a larger one only by its S3 key.",
            "1048576",
        ),
        Option(
            "status_queue", "string", "", "AIRLAUNCH_STATUS_QUEUE",
            "The SQS queue (name or URL) S3 notifies of each status.json; the triggerer long-polls it once for "
            "all its tasks. Empty: triggers poll S3 only.",
            "airlaunch-status",
        ),
        Option(
            "retry_seconds", "float", "120", "AIRLAUNCH_RETRY_SECONDS",
            "How long a launch, stop or read is retried through transient Lambda or S3 errors (apart from "
            "Airflow's task retries).",
            "300",
        ),
        Option(
            "retry_max_backoff", "float", "10", "AIRLAUNCH_RETRY_MAX_BACKOFF",
            "The longest pause between two of those retries (they double from 0.5 s).",
            "30",
        ),
        Option(
            "outage_seconds", "float", "900", "AIRLAUNCH_OUTAGE_SECONDS",
            "How long a trigger keeps watching through an S3 or Lambda outage before it stops the container "
            "and fails the task.",
            "1800",
        ),
        Option(
            "log_read_bytes", "integer", "65536", "AIRLAUNCH_LOG_READ_BYTES",
            "The most of a task's log a trigger reads, and shows in the task log, per request.",
            "262144",
        ),
        Option(
            "sweep_seconds", "float", "15", "AIRLAUNCH_SWEEP_SECONDS",
            "How often each triggerer stops containers whose Airflow task instance no longer runs (0: never). "
            "The triggerer's own setting.",
            "60",
        ),
        Option(
            "triggerer_reads_per_second", "float", "20", "AIRLAUNCH_TRIGGERER_READS_PER_SECOND",
            "The periodic reads (log parts, safety-net status reads, launcher checks) one triggerer makes for "
            "all its tasks together; with more tasks each reads less often. The triggerer's own setting.",
            "50",
        ),
        Option(
            "stack_name", "string", "", "AIRLAUNCH_STACK_NAME",
            "The deployed stack, whose names the extra link to a task's CloudWatch log stream is made of "
            "(``/airlaunch/<stack>/tasks/<catalog task>``). Empty: the cluster named in the task's ARN, which "
            "``make deploy`` names after the stack.",
            "prod",
        ),
    )
}  # fmt: skip


def provider_config() -> dict[str, Any]:
    """The ``config`` entry of get_provider_info(): the ``[airlaunch]`` section and its options."""
    return {
        SECTION: {
            "description": "Settings of airlaunch's operators, sensor and trigger. Each option can also be set "
            "by its ``AIRLAUNCH_*`` variable, which an explicit setting here overrides.\n",
            "options": {key: option.provider_info() for key, option in OPTIONS.items()},
        }
    }


def explicitly_set(key: str) -> bool:
    """True when Airflow's configuration sets the option itself: ``AIRFLOW__AIRLAUNCH__<KEY>``, or the key in
    airflow.cfg's ``[airlaunch]`` section. (``conf.get`` alone cannot tell: it answers with the declared
    default when neither does, and then the ``AIRLAUNCH_*`` variable must win.)"""
    from airflow.configuration import conf

    if OPTIONS[key].airflow_variable in os.environ:
        return True
    return configparser.RawConfigParser.has_option(conf, SECTION, key)  # the file's own options, no defaults


def setting(key: str) -> str:
    """The option's value as text: an explicit Airflow setting, else its AIRLAUNCH_* variable, else its default."""
    option = OPTIONS[key]
    if explicitly_set(key):
        from airflow.configuration import conf

        return str(conf.get(SECTION, key, fallback=option.default))
    return os.environ.get(option.legacy) or option.default


def typed(key: str, cast: Callable[[str], T]) -> T:
    """The option's value converted by ``cast``; a value that does not convert is an error naming the option."""
    raw = setting(key)
    try:
        return cast(raw)
    except ValueError as exc:
        option = OPTIONS[key]
        raise ValueError(
            f"[{SECTION}] {key} ({option.airflow_variable} or {option.legacy}) = {raw!r}: not a valid {option.type}"
        ) from exc


def _option(key: str, cast: Callable[[str], Any] = str) -> Any:
    return field(default_factory=lambda: typed(key, cast))


@dataclass(frozen=True)
class AirflowSettings:
    """The ``[airlaunch]`` options as read now, in this process (each can also be given per task)."""

    aws_conn_id: str = _option("aws_conn_id")
    function_name: str = _option("function_name")
    poll_interval: float = _option("poll_interval", float)
    max_xcom_bytes: int = _option("max_xcom_bytes", int)
    status_queue: str = _option("status_queue")
    retry_seconds: float = _option("retry_seconds", float)
    retry_max_backoff: float = _option("retry_max_backoff", float)
    outage_seconds: float = _option("outage_seconds", float)
    log_read_bytes: int = _option("log_read_bytes", int)
    sweep_seconds: float = _option("sweep_seconds", float)
    triggerer_reads_per_second: float = _option("triggerer_reads_per_second", float)
    stack_name: str = _option("stack_name")
