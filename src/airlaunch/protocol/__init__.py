"""The messages that cross between Airflow, the launcher Lambda and the task runtime.

Every side imports this package and nothing of each other's. It depends on the standard
library only, so the task runtime stays small. Each message is a frozen dataclass with
``to_dict``/``from_dict``; ``from_dict`` validates and raises :class:`InvalidRequest`
naming the offending field, so a bad message fails where it enters, not deep inside.

One module per concern, each saying what it guarantees: ``checks`` (InvalidRequest),
``identity`` (which try), ``layout`` (its S3 keys), ``env`` (the container's environment),
``masking`` (how a secret's value is hidden in what a try leaves),
``requests`` (a launch and its handle), ``status`` (how a try ends), ``envelope`` and
``replies`` (the launcher's calls and their replies: the only place that spells them),
``telemetry`` (usage and timings, for the report), ``cache`` (the result cache's entries in
S3). Import the names from here: the modules are how the package is kept, not part of its
interface.

Each name is imported from its module on its first use (PEP 562's module ``__getattr__``), so a
side loads only the modules it uses: the task runtime, whose every start pays for what it imports,
never builds the launcher's calls and replies or the cache's entries. A name added here goes in
both the imports for type checkers and ``_MODULES`` (tests/unit/test_protocol_exports.py checks
that they, ``__all__`` and the modules agree). That is why this file is over 300 lines: two lists of
the same names, and no logic.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airlaunch.protocol.cache import CacheClaim, CacheEntry, cache_root, entry_key, is_cache_key
    from airlaunch.protocol.checks import InvalidRequest
    from airlaunch.protocol.env import (
        ENV_BUCKET,
        ENV_CACHE_CLAIM,
        ENV_EXECUTION_ID,
        ENV_PARAMS_FILE,
        ENV_PREFIX,
        ENV_RESULT_FILE,
        ENV_RUN_CREDENTIALS,
        ENV_SECRET_NAMES,
        ENV_TIMEOUT_SECONDS,
    )
    from airlaunch.protocol.envelope import (
        Action,
        AnyCall,
        Call,
        DescribeCall,
        LaunchCall,
        ListCall,
        PingCall,
        ReapCall,
        StopCall,
        action_of,
        parse_call,
        parse_reply,
        read_reply,
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
    from airlaunch.protocol.masking import MASK, mask, mask_json, secret_names, secret_values
    from airlaunch.protocol.replies import (
        AnyReply,
        CallFailed,
        DescribeReply,
        ErrorKind,
        EventReply,
        LaunchReply,
        ListedTask,
        ListReply,
        PingReply,
        ReapReply,
        Refusal,
        StopReply,
        refusal_of,
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
        INLINE_RESULT_BYTES,
        PROTOCOL_VERSION,
        Description,
        Status,
        StopReason,
        StopRequest,
        TaskState,
        status_of,
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

_MODULES: dict[str, tuple[str, ...]] = {
    "cache": ("CacheClaim", "CacheEntry", "cache_root", "entry_key", "is_cache_key"),
    "checks": ("InvalidRequest",),
    "env": (
        "ENV_BUCKET",
        "ENV_CACHE_CLAIM",
        "ENV_EXECUTION_ID",
        "ENV_PARAMS_FILE",
        "ENV_PREFIX",
        "ENV_RESULT_FILE",
        "ENV_RUN_CREDENTIALS",
        "ENV_SECRET_NAMES",
        "ENV_TIMEOUT_SECONDS",
    ),
    "envelope": (
        "Action",
        "AnyCall",
        "Call",
        "DescribeCall",
        "LaunchCall",
        "ListCall",
        "PingCall",
        "ReapCall",
        "StopCall",
        "action_of",
        "parse_call",
        "parse_reply",
        "read_reply",
    ),
    "identity": ("RunIdentity", "digest_of", "parse_try_key", "validate_id"),
    "layout": (
        "ECS_TIMES_FILE",
        "LOG_FILE",
        "LOG_PARTS_DIR",
        "NOTEBOOK_FILE",
        "PARAMS_FILE",
        "RESULT_FILE",
        "STATUS_FILE",
        "STOP_FILE",
        "TIMINGS_FILE",
        "ResultLayout",
        "identity_of_prefix",
        "run_prefix",
    ),
    "masking": ("MASK", "mask", "mask_json", "secret_names", "secret_values"),
    "replies": (
        "AnyReply",
        "CallFailed",
        "DescribeReply",
        "ErrorKind",
        "EventReply",
        "LaunchReply",
        "ListedTask",
        "ListReply",
        "PingReply",
        "ReapReply",
        "Refusal",
        "StopReply",
        "refusal_of",
    ),
    "requests": (
        "MAX_CPU",
        "MAX_MEMORY_MIB",
        "MAX_PARAMS_BYTES",
        "MAX_TIMEOUT_SECONDS",
        "Handle",
        "LaunchRequest",
        "Overrides",
        "check_params",
    ),
    "status": (
        "INLINE_RESULT_BYTES",
        "PROTOCOL_VERSION",
        "Description",
        "Status",
        "StopReason",
        "StopRequest",
        "TaskState",
        "status_of",
        "utcnow",
    ),
    "telemetry": (
        "AIRFLOW_CLOCK",
        "ECS_CLOCK",
        "LAUNCHER_CLOCK",
        "RUNTIME_CLOCK",
        "USAGE_VERSION",
        "AirflowMoments",
        "EcsTimes",
        "LauncherMoments",
        "RequestedSize",
        "Resources",
        "RuntimePhases",
        "Timeline",
        "Usage",
    ),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}

if not TYPE_CHECKING:  # mypy sees the imports above, so a misspelt name still fails the type check

    def __getattr__(name: str) -> Any:
        """A name imported from its module on its first use, then kept in this module."""
        module = _HOME.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_HOME})


__all__ = [
    "AIRFLOW_CLOCK",
    "ECS_CLOCK",
    "ECS_TIMES_FILE",
    "ENV_BUCKET",
    "ENV_CACHE_CLAIM",
    "ENV_EXECUTION_ID",
    "ENV_PARAMS_FILE",
    "ENV_PREFIX",
    "ENV_RESULT_FILE",
    "ENV_RUN_CREDENTIALS",
    "ENV_SECRET_NAMES",
    "ENV_TIMEOUT_SECONDS",
    "INLINE_RESULT_BYTES",
    "LAUNCHER_CLOCK",
    "LOG_FILE",
    "LOG_PARTS_DIR",
    "MASK",
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
    "Action",
    "AirflowMoments",
    "AnyCall",
    "AnyReply",
    "CacheClaim",
    "CacheEntry",
    "Call",
    "CallFailed",
    "DescribeCall",
    "DescribeReply",
    "Description",
    "EcsTimes",
    "ErrorKind",
    "EventReply",
    "Handle",
    "InvalidRequest",
    "LaunchCall",
    "LaunchReply",
    "LaunchRequest",
    "LauncherMoments",
    "ListCall",
    "ListReply",
    "ListedTask",
    "Overrides",
    "PingCall",
    "PingReply",
    "ReapCall",
    "ReapReply",
    "Refusal",
    "RequestedSize",
    "Resources",
    "ResultLayout",
    "RunIdentity",
    "RuntimePhases",
    "Status",
    "StopCall",
    "StopReason",
    "StopReply",
    "StopRequest",
    "TaskState",
    "Timeline",
    "Usage",
    "action_of",
    "cache_root",
    "check_params",
    "digest_of",
    "entry_key",
    "identity_of_prefix",
    "is_cache_key",
    "mask",
    "mask_json",
    "parse_call",
    "parse_reply",
    "parse_try_key",
    "read_reply",
    "refusal_of",
    "run_prefix",
    "secret_names",
    "secret_values",
    "status_of",
    "utcnow",
    "validate_id",
]
