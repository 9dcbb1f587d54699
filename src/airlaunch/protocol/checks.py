"""How every message of the protocol is checked: one exception, and the checks that raise it.

Guarantee: a message that breaks the protocol is refused with :class:`InvalidRequest`, whose
``field`` is the dotted path of the part that is wrong (``identity.try_number``,
``reply.handle.prefix``), so a bad message fails where it enters, in words that point at the
fix, never deep inside whatever acted on it. The checks are the package's own; other modules
use :class:`InvalidRequest` only.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any


class InvalidRequest(ValueError):
    """A message broke the protocol; ``field`` names the part that is wrong."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


def parse_json(text: str | bytes, field_name: str, what: str = "") -> Any:
    """``text`` as JSON; InvalidRequest on ``field_name`` when it is not JSON (``what``: the file, in words)."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(field_name, f"{what} is not JSON: {exc}".lstrip()) from exc


def require(data: Any, field_name: str, kind: type | tuple[type, ...]) -> Any:
    """``data`` if it is of ``kind``; a boolean is never taken for a number (JSON's true is not 1)."""
    if isinstance(data, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise InvalidRequest(field_name, f"expected {kind_name(kind)}, got a boolean")
    if not isinstance(data, kind):
        raise InvalidRequest(field_name, f"expected {kind_name(kind)}, got {type(data).__name__}")
    return data


def kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def check_keys(data: dict[str, Any], field_name: str, allowed: set[str]) -> None:
    """Refuse keys a message does not have: a misspelt field must not be dropped in silence."""
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidRequest(field_name, f"unknown field(s) {unknown}; allowed: {sorted(allowed)}")


def typed_record(cls: Any, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from the known keys of ``data``; a value of the wrong type names its field.

    Unknown keys are ignored: records read this way (usage, timings) come from newer writers too.
    """
    require(data, where, dict)
    known = {f.name: str(f.type) for f in fields(cls)}
    values = {k: v for k, v in data.items() if k in known}
    for name, value in values.items():
        kinds = kinds_of(known[name])
        if value is not None and kinds:
            require(value, f"{where}.{name}", kinds)
    return cls(**values)


def kinds_of(annotation: str) -> tuple[type, ...]:
    """``"float | None"`` -> (int, float): the JSON types a scalar field accepts (none for records)."""
    names = {part.strip() for part in annotation.split("|")}
    kinds: tuple[type, ...] = ()
    for name, accepted in (("str", (str,)), ("int", (int,)), ("float", (int, float)), ("bool", (bool,))):
        if name in names:
            kinds += accepted
    return kinds
