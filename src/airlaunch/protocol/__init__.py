"""The messages that cross between Airflow, the launcher Lambda and the task runtime.

Every side imports this package and nothing of each other's. It depends on the standard
library only, so the task runtime stays small. Each message is a frozen dataclass with
``to_dict``/``from_dict``; ``from_dict`` validates and raises :class:`InvalidRequest`
naming the offending field, so a bad message fails where it enters, not deep inside.

One module per concern, each saying what it guarantees: ``checks`` (InvalidRequest),
``identity`` (which try), ``layout`` (its S3 keys), ``env`` (the container's environment),
``requests`` (a launch and its handle), ``status`` (how a try ends), ``telemetry`` (usage
and timings, for the report). Import the names from here: the modules are how the package
is kept, not part of its interface.
"""

from airlaunch.protocol.checks import InvalidRequest
from airlaunch.protocol.env import (
    ENV_BUCKET,
    ENV_EXECUTION_ID,
    ENV_PARAMS_FILE,
    ENV_PREFIX,
    ENV_RESULT_FILE,
    ENV_RUN_CREDENTIALS,
    ENV_TIMEOUT_SECONDS,
)
from airlaunch.protocol.identity import RunIdentity, digest_of, parse_try_key, validate_id
from airlaunch.protocol.layout import (
    ECS_TIMES_FILE,
    LOG_FILE,
    LOG_PARTS_DIR,
    NOTEBOOK_FILE,
    PARAMS_FILE,
    RESULT_FILE,
    STATUS_FILE,
    STOP_FILE,
    TIMINGS_FILE,
    ResultLayout,
    identity_of_prefix,
    run_prefix,
)
from airlaunch.protocol.requests import (
    MAX_CPU,
    MAX_MEMORY_MIB,
    MAX_PARAMS_BYTES,
    MAX_TIMEOUT_SECONDS,
    Handle,
    LaunchRequest,
    Overrides,
    check_params,
)
from airlaunch.protocol.status import (
    PROTOCOL_VERSION,
    Description,
    Status,
    StopReason,
    StopRequest,
    TaskState,
    utcnow,
)
from airlaunch.protocol.telemetry import (
    AIRFLOW_CLOCK,
    ECS_CLOCK,
    LAUNCHER_CLOCK,
    RUNTIME_CLOCK,
    USAGE_VERSION,
    AirflowMoments,
    EcsTimes,
    LauncherMoments,
    RequestedSize,
    Resources,
    RuntimePhases,
    Timeline,
    Usage,
)

__all__ = [
    "AIRFLOW_CLOCK",
    "ECS_CLOCK",
    "ECS_TIMES_FILE",
    "ENV_BUCKET",
    "ENV_EXECUTION_ID",
    "ENV_PARAMS_FILE",
    "ENV_PREFIX",
    "ENV_RESULT_FILE",
    "ENV_RUN_CREDENTIALS",
    "ENV_TIMEOUT_SECONDS",
    "LAUNCHER_CLOCK",
    "LOG_FILE",
    "LOG_PARTS_DIR",
    "MAX_CPU",
    "MAX_MEMORY_MIB",
    "MAX_PARAMS_BYTES",
    "MAX_TIMEOUT_SECONDS",
    "NOTEBOOK_FILE",
    "PARAMS_FILE",
    "PROTOCOL_VERSION",
    "RESULT_FILE",
    "RUNTIME_CLOCK",
    "STATUS_FILE",
    "STOP_FILE",
    "TIMINGS_FILE",
    "USAGE_VERSION",
    "AirflowMoments",
    "Description",
    "EcsTimes",
    "Handle",
    "InvalidRequest",
    "LaunchRequest",
    "LauncherMoments",
    "Overrides",
    "RequestedSize",
    "Resources",
    "ResultLayout",
    "RunIdentity",
    "RuntimePhases",
    "Status",
    "StopReason",
    "StopRequest",
    "TaskState",
    "Timeline",
    "Usage",
    "check_params",
    "digest_of",
    "identity_of_prefix",
    "parse_try_key",
    "run_prefix",
    "utcnow",
    "validate_id",
]
