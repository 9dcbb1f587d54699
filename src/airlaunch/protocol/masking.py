"""How a secret's value is hidden wherever a try's output is kept: one rule for every side.

The launcher names a task's secret variables in ``AIRLAUNCH_SECRET_NAMES`` (names only); whoever
keeps what the task printed or returned replaces each of their values with ``***`` first: the
runtime in the log it uploads (every part, log.txt), in status.json's ``log_tail`` and ``error``,
in result.json and the output notebook; the launcher in the log tail of a stand-in status.json
it reads from Docker. So Airflow's task log, which streams the uploaded log, shows the mask.

Guarantees of :func:`secret_values`: the whole value, each line of a value of several lines (a log
is kept line by line), and each string value inside a value that is a JSON document (a whole JSON
secret injected, of which the task prints one field), longest first, so that a value containing another
is masked whole. As Airflow's own masker does (``[logging] min_length_masked_secret``, 5), values
shorter than MIN_LENGTH are not masked: masking them would hide every occurrence of a few common
characters and make the log unreadable.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from airlaunch.protocol.env import ENV_SECRET_NAMES

MASK = "***"
MIN_LENGTH = 5


def secret_names(environ: Mapping[str, str]) -> list[str]:
    return [name.strip() for name in environ.get(ENV_SECRET_NAMES, "").split(",") if name.strip()]


def secret_values(environ: Mapping[str, str]) -> tuple[str, ...]:
    """What to mask, for a container whose environment is ``environ`` (see the module's docstring)."""
    values: set[str] = set()
    for name in secret_names(environ):
        value = environ.get(name, "")
        values.add(value)
        values.update(line.strip() for line in value.splitlines())
        with contextlib.suppress(ValueError):  # a value that is no JSON document
            values.update(_strings(json.loads(value)))
    return tuple(sorted((v for v in values if len(v) >= MIN_LENGTH), key=len, reverse=True))


def _strings(document: Any) -> list[str]:
    if isinstance(document, dict):
        return [s for v in document.values() for s in _strings(v)]  # its values: the keys are no secret
    if isinstance(document, list):
        return [s for item in document for s in _strings(item)]
    return [document] if isinstance(document, str) else []


def mask(text: str, values: Sequence[str]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def mask_json(document: Any, values: Sequence[str]) -> Any:
    """A JSON document with every string in it (keys too) masked."""
    if not values:
        return document
    if isinstance(document, dict):
        return {mask(str(k), values): mask_json(v, values) for k, v in document.items()}
    if isinstance(document, list):
        return [mask_json(item, values) for item in document]
    return mask(document, values) if isinstance(document, str) else document
