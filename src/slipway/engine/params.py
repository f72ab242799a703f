"""Run parameters: checked against the workflow's declaration before a run is queued."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from slipway.engine.errors import ParamsInvalid
from slipway.sdk import PARAM_TYPES, Param

MAX_STRING_CHARS = 10_000


def describe(params: Mapping[str, Param]) -> list[dict[str, Any]]:
    """The declaration as data, for the API and the run form."""
    return [
        {
            "name": name,
            "type": PARAM_TYPES[param.type],
            "required": param.required,
            "default": param.default,
            "choices": list(param.choices) if param.choices is not None else None,
            "help": param.help,
        }
        for name, param in params.items()
    ]


def validate(declared: Mapping[str, Param], given: Any) -> dict[str, Any]:
    """The parameters of a run: ``given`` checked and completed with defaults.

    Raises :class:`ParamsInvalid` naming the first bad field.
    """
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise ParamsInvalid("", "must be a JSON object of parameter names to values")
    unknown = sorted(set(given) - set(declared))
    if unknown:
        allowed = ", ".join(declared) or "none"
        raise ParamsInvalid(str(unknown[0]), f"is not a parameter of this workflow (parameters: {allowed})")
    values: dict[str, Any] = {}
    for name, param in declared.items():
        if name not in given or given[name] is None:
            if param.required:
                raise ParamsInvalid(name, "is required")
            values[name] = param.default
            continue
        values[name] = _coerce(name, param, given[name])
    return values


def _coerce(name: str, param: Param, value: Any) -> Any:
    expected = PARAM_TYPES[param.type]
    if param.type is bool:
        ok = isinstance(value, bool)
    elif param.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif param.type is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
        if ok and len(value) > MAX_STRING_CHARS:
            raise ParamsInvalid(name, f"is longer than {MAX_STRING_CHARS} characters")
    if not ok:
        raise ParamsInvalid(name, f"must be a {expected} (got {type(value).__name__} {str(value)[:40]!r})")
    if param.choices is not None and value not in param.choices:
        raise ParamsInvalid(name, f"must be one of {', '.join(repr(c) for c in param.choices)}")
    return value
