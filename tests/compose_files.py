"""Compose files in tests: checked against the Compose Specification schema, without a Docker engine.

``validate_compose`` loads a compose file (or takes an already-loaded mapping) and checks it against
``tests/schemas/compose-spec.json``; it raises an AssertionError listing every error with its JSON
path. ``interpolate`` resolves Compose's variable syntax in a string, and ``load_compose`` gives a
compose file as Compose would see it with a given environment (an empty one: the file's defaults).

The schema's provenance is in ``tests/schemas/README.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import validators
from jsonschema.exceptions import ValidationError, best_match

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "compose-spec.json"

__all__ = [
    "SCHEMA_PATH",
    "InvalidTemplateError",
    "MissingVariableError",
    "compose_schema",
    "interpolate",
    "load_compose",
    "validate_compose",
]


# --- loading ------------------------------------------------------------------------------------


class _ComposeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys as Compose does (PyYAML keeps the last one)."""


def _construct_mapping(loader: _ComposeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be repeated and overridden
            continue
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_ComposeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load(path_or_mapping: str | Path | Mapping[str, Any]) -> tuple[Any, str]:
    """The document and a name for it in messages."""
    if isinstance(path_or_mapping, Mapping):
        return path_or_mapping, "compose mapping"
    path = Path(path_or_mapping)
    with path.open(encoding="utf-8") as stream:
        return yaml.load(stream, Loader=_ComposeLoader), str(path)  # noqa: S506 - a SafeLoader subclass


# --- schema validation --------------------------------------------------------------------------


@cache
def compose_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@cache
def _validator() -> Any:
    schema = compose_schema()
    # The validator class of the schema's own "$schema" (draft 2020-12 at the time of writing); an
    # unknown dialect is an error rather than a silent fallback to another draft's rules.
    cls = validators.validator_for(schema, default=None)
    if cls is None:
        raise AssertionError(
            f"{SCHEMA_PATH}: jsonschema has no validator for $schema {schema.get('$schema')!r}"
        )
    cls.check_schema(schema)
    return cls(schema)


def _describe(error: ValidationError) -> str:
    line = f"{error.json_path}: {error.message}"
    if error.context:  # oneOf/anyOf: say which alternative came closest, and where it failed
        # An alternative of the right type (an object form whose key is wrong, say) says more than
        # "is not of type 'string'" from the short form.
        closest = best_match([e for e in error.context if e.validator != "type"] or error.context)
        line += f" (closest alternative: {closest.json_path}: {closest.message})"
    return line


def validate_compose(path_or_mapping: str | Path | Mapping[str, Any]) -> None:
    """Check a compose file (a path) or a loaded compose mapping against the Compose schema.

    Raises AssertionError naming every error by its JSON path, for example
    ``$.services.app.ports: {'bad': 1} is not of type 'array'``.
    """
    document, name = _load(path_or_mapping)
    errors = sorted(
        _validator().iter_errors(document), key=lambda e: (list(map(str, e.absolute_path)), e.message)
    )
    if errors:
        listing = "\n".join(f"  {_describe(error)}" for error in errors)
        count = f"{len(errors)} error" + ("s" if len(errors) > 1 else "")
        raise AssertionError(f"{name} is not a valid compose file ({count}):\n{listing}")


# --- interpolation ------------------------------------------------------------------------------


class InvalidTemplateError(ValueError):
    """A ``${...}`` that Compose would refuse (unclosed, or not a variable name)."""


class MissingVariableError(ValueError):
    """``${VAR:?message}`` or ``${VAR?message}`` with the variable missing: Compose stops with this."""

    def __init__(self, variable: str, reason: str) -> None:
        self.variable = variable
        self.reason = reason
        detail = f": {reason}" if reason else ""
        super().__init__(f"required variable {variable} is missing a value{detail}")


_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Resolve Compose variable syntax in ``text`` with the variables in ``env``.

    Supported, as in the Compose Specification's interpolation chapter: ``$VAR``, ``${VAR}``,
    ``${VAR:-default}`` (unset or empty), ``${VAR-default}`` (unset only), ``${VAR:?message}`` and
    ``${VAR?message}`` (raise MissingVariableError), ``${VAR:+replacement}`` and ``${VAR+replacement}``,
    defaults that are themselves interpolated (``${A:-${B:-x}}``), and ``$$`` for a literal ``$``.
    A variable that is unset and has no default becomes an empty string, as in Compose. A ``$`` that
    starts none of these is kept as it is; a ``${`` that is not a valid template raises
    InvalidTemplateError.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        dollar = text.find("$", i)
        if dollar < 0:
            out.append(text[i:])
            break
        out.append(text[i:dollar])
        after = dollar + 1
        if text.startswith("$", after):
            out.append("$")
            i = after + 1
        elif text.startswith("{", after):
            end = _closing_brace(text, after + 1)
            out.append(_braced(text[after + 1 : end], env, text))
            i = end + 1
        elif name := _NAME.match(text, after):
            out.append(env.get(name.group(), ""))
            i = name.end()
        else:
            out.append("$")
            i = after
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` closing a ``${`` whose body starts at ``start``; nested ``${...}`` skipped."""
    depth = 0
    i = start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    raise InvalidTemplateError(f"Invalid template: {text!r} (unclosed '${{')")


def _braced(body: str, env: Mapping[str, str], template: str) -> str:
    name = _NAME.match(body)
    if not name:
        raise InvalidTemplateError(f"Invalid template: {template!r}")
    variable, rest = name.group(), body[name.end() :]
    value = env.get(variable)
    if not rest:
        return value or ""
    operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
    if operator is None:
        raise InvalidTemplateError(f"Invalid template: {template!r}")
    argument = rest[len(operator) :]
    present = bool(value) if operator.startswith(":") else value is not None
    if operator.endswith("-"):
        return value if present else interpolate(argument, env)  # type: ignore[return-value]
    if operator.endswith("+"):
        return interpolate(argument, env) if present else ""
    if not present:  # "?"
        raise MissingVariableError(variable, interpolate(argument, env))
    return value  # type: ignore[return-value]


def _interpolate_values(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolation applies to YAML values, not keys (Compose Specification, interpolation)."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, Mapping):
        return {key: _interpolate_values(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate_values(item, env) for item in node]
    return node


def load_compose(
    path_or_mapping: str | Path | Mapping[str, Any], env: Mapping[str, str] | None = None
) -> Any:
    """A compose file with every string value interpolated with ``env`` (default: no variables set,
    so the file's own defaults apply and a required variable raises MissingVariableError)."""
    document, _ = _load(path_or_mapping)
    return _interpolate_values(document, env or {})
