"""The compose-file helper: schema validation with JSON paths, and Compose's variable interpolation."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from compose_files import (
    SCHEMA_PATH,
    InvalidTemplateError,
    MissingVariableError,
    compose_schema,
    interpolate,
    load_compose,
    validate_compose,
)
from jsonschema import Draft202012Validator

SCHEMAS = SCHEMA_PATH.parent

MINIMAL = {
    "name": "example",
    "services": {
        "app": {
            "image": "docker.io/slipway/slipway:1.2.3",
            "ports": ["127.0.0.1:7071:80"],
            "environment": {"FUNCTIONS_WORKER_RUNTIME": "python"},
            "depends_on": {"azurite": {"condition": "service_healthy"}},
        },
        "azurite": {"image": "mcr.microsoft.com/azure-storage/azurite:3.35.0"},
    },
    "volumes": {"data": {}},
    "x-anything": {"extensions": "are allowed"},
}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "compose.yml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _failure(document) -> str:
    with pytest.raises(AssertionError) as raised:
        validate_compose(document)
    return str(raised.value)


# --- the schema in the repository ----------------------------------------------------------------


def test_schema_is_stored_with_its_licence_and_provenance() -> None:
    schema = compose_schema()
    assert schema["title"] == "Compose Specification"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert "Apache License" in (SCHEMAS / "compose-spec.LICENSE").read_text(encoding="utf-8")
    readme = (SCHEMAS / "README.md").read_text(encoding="utf-8")
    assert "compose-spec/compose-spec" in readme
    assert "schema/compose-spec.json" in readme


def test_the_schema_file_is_plain_json() -> None:
    # A reformatted or truncated copy would still load in Python but would no longer be upstream's file.
    text = SCHEMA_PATH.read_text(encoding="utf-8")
    assert json.loads(text) == compose_schema()
    assert text.startswith("{\n") and text.rstrip().endswith("}")


# --- validation ------------------------------------------------------------------------------------


def test_a_valid_minimal_mapping_passes() -> None:
    validate_compose(MINIMAL)
    validate_compose({"services": {"app": {"image": "busybox"}}})


def test_a_valid_file_passes(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        x-storage: &storage "UseDevelopmentStorage=true"
        x-common: &common
          restart: unless-stopped
        services:
          app:
            <<: *common
            build:
              context: .
              dockerfile: Dockerfile
            image: slipway:dev
            ports:
              - "127.0.0.1:${PORT:-7071}:80"
            environment:
              AzureWebJobsStorage: *storage
              ENABLE_DEBUGGING: ${ENABLE_DEBUGGING:-false}
            healthcheck:
              test: ["CMD", "python", "-c", "print(1)"]
              interval: 30s
        """,
    )
    validate_compose(path)
    validate_compose(str(path))


def test_wrong_type_is_reported_with_its_path() -> None:
    message = _failure({"services": {"app": {"image": "busybox", "ports": {"bad": 1}}}})
    assert "$.services.app.ports" in message
    assert "is not of type 'array'" in message


def test_unknown_top_level_key_is_reported() -> None:
    message = _failure({"services": {"app": {"image": "busybox"}}, "servics": {}})
    assert "$: 'servics' does not match any of the regexes: '^x-'" in message


def test_every_error_is_listed_not_only_the_first() -> None:
    message = _failure(
        {
            "services": {
                "app": {"image": "busybox", "ports": {"bad": 1}, "restart": ["always"]},
                "worker": {"image": "busybox", "depends_on": {"app": {"condition": "when_ready"}}},
            },
            "unknown": True,
        }
    )
    assert "(4 errors)" in message
    assert "$: 'unknown' does not match" in message
    assert "$.services.app.ports:" in message
    assert "$.services.app.restart:" in message
    # A oneOf failure names the alternative that came closest and the path inside it.
    assert "$.services.worker.depends_on.app.condition: 'when_ready' is not one of" in message


def test_unknown_key_inside_a_service_is_reported() -> None:
    message = _failure({"services": {"app": {"image": "busybox", "imagee": "x"}}})
    assert "$.services.app: 'imagee' does not match any of the regexes: '^x-'" in message


def test_invalid_service_name_is_reported() -> None:
    message = _failure({"services": {"my app": {"image": "busybox"}}})
    assert "$.services: 'my app' does not match any of the regexes" in message


def test_a_file_names_itself_in_the_failure(tmp_path: Path) -> None:
    path = _write(tmp_path, "services:\n  app:\n    image: busybox\n    ports: {bad: 1}\n")
    message = _failure(path)
    assert str(path) in message
    assert "$.services.app.ports" in message


def test_duplicate_keys_are_refused_as_compose_does(tmp_path: Path) -> None:
    # PyYAML alone would keep the second 'image' silently; Compose refuses the file.
    import yaml

    path = _write(tmp_path, "services:\n  app:\n    image: a\n    image: b\n")
    with pytest.raises(yaml.YAMLError, match="duplicate key 'image'"):
        validate_compose(path)


def test_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        x-base: &base
          image: busybox
          restart: "no"
        services:
          app:
            <<: *base
            restart: always
        """,
    )
    validate_compose(path)
    assert load_compose(path)["services"]["app"] == {"image": "busybox", "restart": "always"}


# --- interpolation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("plain text", {}, "plain text"),
        ("${VAR}", {"VAR": "x"}, "x"),
        ("$VAR/bin", {"VAR": "x"}, "x/bin"),
        ("${VAR}", {}, ""),  # unset, no default: empty, as Compose does (with a warning)
        ("${VAR:-fallback}", {}, "fallback"),
        ("${VAR:-fallback}", {"VAR": ""}, "fallback"),
        ("${VAR:-fallback}", {"VAR": "set"}, "set"),
        ("${VAR-fallback}", {}, "fallback"),
        ("${VAR-fallback}", {"VAR": ""}, ""),
        ("${VAR-fallback}", {"VAR": "set"}, "set"),
        ("${VAR:-}", {}, ""),
        ("${VAR:+alt}", {"VAR": "set"}, "alt"),
        ("${VAR:+alt}", {"VAR": ""}, ""),
        ("${VAR+alt}", {"VAR": ""}, "alt"),
        ("${VAR+alt}", {}, ""),
        ("${VAR:?must be set}", {"VAR": "ok"}, "ok"),
        ("127.0.0.1:${PORT:-7071}:80", {}, "127.0.0.1:7071:80"),
        ("127.0.0.1:${PORT:-7071}:80", {"PORT": "8080"}, "127.0.0.1:8080:80"),
        ("${A:-${B:-inner}}", {}, "inner"),
        ("${A:-${B:-inner}}", {"B": "b"}, "b"),
        ("${A:-x}-${B:-y}", {}, "x-y"),
        ("${A:-default with spaces: and colons}", {}, "default with spaces: and colons"),
        ("$$", {}, "$"),
        ("$$VAR", {"VAR": "x"}, "$VAR"),
        ("$${VAR}", {"VAR": "x"}, "${VAR}"),
        ("cost: $$5 and ${VAR}", {"VAR": "x"}, "cost: $5 and x"),
        ("${A:-$$literal}", {}, "$literal"),
        ("a $ alone, $1 and $-", {}, "a $ alone, $1 and $-"),  # not a variable: kept
        ("${lower_case}", {"lower_case": "ok"}, "ok"),
    ],
)
def test_interpolation(text: str, env: dict[str, str], expected: str) -> None:
    assert interpolate(text, env) == expected


def test_required_variable_missing_raises_with_the_message() -> None:
    with pytest.raises(
        MissingVariableError, match="required variable TOKEN is missing a value: set TOKEN"
    ) as raised:
        interpolate("Bearer ${TOKEN:?set TOKEN}", {})
    assert raised.value.variable == "TOKEN"
    with pytest.raises(MissingVariableError):
        interpolate("${TOKEN:?empty is not enough}", {"TOKEN": ""})
    with pytest.raises(MissingVariableError, match=r"TOKEN is missing a value$"):
        interpolate("${TOKEN?}", {})
    # Without the colon only an unset variable is an error.
    assert interpolate("${TOKEN?unset}", {"TOKEN": ""}) == ""


def test_required_message_is_itself_interpolated() -> None:
    with pytest.raises(MissingVariableError, match=r"see docs/setup\.md"):
        interpolate("${TOKEN:?see ${DOCS:-docs/setup.md}}", {})


@pytest.mark.parametrize("text", ["${", "${VAR", "${VAR:-x", "${}", "${1VAR}", "${VAR/a/b}", "${VAR:x}"])
def test_invalid_templates_are_errors(text: str) -> None:
    with pytest.raises(InvalidTemplateError):
        interpolate(text, {"VAR": "v"})


def test_load_compose_resolves_values_not_keys(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        services:
          app:
            image: ${IMAGE:-docker.io/slipway/slipway:latest}
            ports: ["127.0.0.1:${PORT:-7071}:80"]
            command: ["sh", "-c", "echo $$HOME"]
            labels:
              "${NOT_A_KEY}": kept
            environment:
              DEBUG: ${DEBUG:-false}
        """,
    )
    app = load_compose(path)["services"]["app"]
    assert app["image"] == "docker.io/slipway/slipway:latest"
    assert app["ports"] == ["127.0.0.1:7071:80"]
    assert app["command"] == ["sh", "-c", "echo $HOME"]
    assert app["labels"] == {"${NOT_A_KEY}": "kept"}
    assert app["environment"] == {"DEBUG": "false"}
    assert load_compose(path, {"PORT": "9000"})["services"]["app"]["ports"] == ["127.0.0.1:9000:80"]


def test_load_compose_stops_on_a_missing_required_variable(tmp_path: Path) -> None:
    path = _write(tmp_path, "services:\n  app:\n    image: ${IMAGE:?set IMAGE to the image to run}\n")
    with pytest.raises(MissingVariableError, match="IMAGE"):
        load_compose(path)
    assert load_compose(path, {"IMAGE": "busybox"}) == {"services": {"app": {"image": "busybox"}}}
