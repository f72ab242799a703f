"""Workflow secrets as admins manage them over the API: names listed, values write-only."""

from __future__ import annotations

import base64
import json
import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from slipway.adapters.secrets import FileSecretStore
from slipway.api.app import create_api
from slipway.bootstrap import Services, build_services
from slipway.config import load_settings
from slipway.gitsync.connection import TOKEN_SECRET
from slipway.workflow_secrets import (
    MAX_VALUE_BYTES,
    SecretNameInvalid,
    SecretNotFound,
    SecretValueInvalid,
    SecretValueTooLarge,
    WorkflowSecrets,
    store_name,
    workflow_name,
)

VALUE = "s3cret-Value-that-must-never-leak"


def principal(*roles: str, name: str = "ada@example.com") -> dict[str, str]:
    payload = {
        "identityProvider": "aad",
        "userId": "0f3c",
        "userDetails": name,
        "userRoles": ["anonymous", "authenticated", *roles],
    }
    return {"x-ms-client-principal": base64.b64encode(json.dumps(payload).encode()).decode()}


ADMIN = principal("admin")
EDITOR = principal("editor")
READER = principal("reader")


@pytest.fixture
def services(base_env: dict[str, str]) -> Services:
    return build_services(load_settings({**base_env, "SLIPWAY_TRUST_CLIENT_PRINCIPAL": "true"}))


@pytest.fixture
def client(services: Services, live_server: type) -> Iterator[httpx.Client]:
    with live_server(create_api(services)) as server, server.client() as http:
        yield http


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, services: Services) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="slipway")
    return caplog


def _secrets_file(services: Services) -> Path:
    assert services.settings.secrets_file is not None
    return services.settings.secrets_file


def _leaks(logs: pytest.LogCaptureFixture, value: str) -> list[str]:
    """Log records that mention ``value`` in their message or in any structured field."""
    return [
        record.getMessage()
        for record in logs.records
        if value in record.getMessage() or any(value in repr(v) for v in vars(record).values())
    ]


# --- the API ---------------------------------------------------------------------------------------


def test_an_admin_sets_a_secret_and_editors_see_its_name_but_never_its_value(
    client: httpx.Client, services: Services, logs: pytest.LogCaptureFixture
) -> None:
    created = client.put("/api/secrets/API_KEY", json={"value": VALUE}, headers=ADMIN)
    replaced = client.put("/api/secrets/API_KEY", json={"value": VALUE + "2"}, headers=ADMIN)
    listed = client.get("/api/secrets", headers=EDITOR)

    assert created.status_code == 200
    assert created.json() == {"name": "API_KEY", "replaced": False}
    assert replaced.json() == {"name": "API_KEY", "replaced": True}
    assert listed.status_code == 200
    assert listed.json() == {"secrets": [{"name": "API_KEY", "updated": None}]}
    for response in (created, replaced, listed):
        assert VALUE not in response.text
    assert services.workflow_secrets.get_values(["API_KEY"]) == {"API_KEY": VALUE + "2"}
    assert _leaks(logs, VALUE) == []
    assert any(r.getMessage() == "workflow secret set" and r.secret == "API_KEY" for r in logs.records)


def test_an_editor_may_list_but_not_set_or_delete_and_a_reader_may_not_list(
    client: httpx.Client,
) -> None:
    assert client.put("/api/secrets/API_KEY", json={"value": VALUE}, headers=ADMIN).status_code == 200

    assert client.get("/api/secrets", headers=READER).status_code == 403
    assert client.put("/api/secrets/API_KEY", json={"value": "x" * 8}, headers=EDITOR).status_code == 403
    assert client.delete("/api/secrets/API_KEY", headers=EDITOR).status_code == 403
    assert client.get("/api/secrets").status_code == 401
    assert [s["name"] for s in client.get("/api/secrets", headers=EDITOR).json()["secrets"]] == ["API_KEY"]


def test_deleting_removes_the_secret_and_deleting_again_answers_404(client: httpx.Client) -> None:
    client.put("/api/secrets/DB_PASSWORD", json={"value": VALUE}, headers=ADMIN)

    deleted = client.delete("/api/secrets/DB_PASSWORD", headers=ADMIN)
    again = client.delete("/api/secrets/DB_PASSWORD", headers=ADMIN)

    assert deleted.status_code == 204
    assert deleted.content == b""
    assert client.get("/api/secrets", headers=EDITOR).json() == {"secrets": []}
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "secret_not_found"


@pytest.mark.parametrize(
    "name", ["api_key", "1KEY", "_KEY", "API-KEY", "K" * 64, "KEY%0A", "caf%C3%A9", "A%20B"]
)
def test_a_bad_name_is_refused_with_the_rule(client: httpx.Client, name: str) -> None:
    response = client.put(f"/api/secrets/{name}", json={"value": VALUE}, headers=ADMIN)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "secret_name_invalid"
    assert "uppercase letter" in response.json()["error"]["message"]
    assert client.delete(f"/api/secrets/{name}", headers=ADMIN).status_code == 422


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"value": ""}, 422, "secret_value_invalid"),
        ({"value": 42}, 422, "secret_value_invalid"),
        ({"value": None}, 422, "secret_value_invalid"),
        ({"value": "é" * (MAX_VALUE_BYTES // 2 + 1)}, 413, "secret_value_too_large"),
        ({}, 422, "invalid_request"),
        ({"value": VALUE, "extra": 1}, 422, "invalid_request"),
        ([VALUE], 422, "invalid_request"),
    ],
)
def test_a_bad_value_or_body_is_refused_and_not_echoed(
    client: httpx.Client, logs: pytest.LogCaptureFixture, body: object, status: int, code: str
) -> None:
    response = client.put("/api/secrets/API_KEY", json=body, headers=ADMIN)

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert VALUE not in response.text
    assert "é" * 20 not in response.text
    assert client.get("/api/secrets", headers=EDITOR).json() == {"secrets": []}
    assert _leaks(logs, VALUE) == []


def test_a_body_that_is_not_json_or_not_utf8_is_refused_without_quoting_it(client: httpx.Client) -> None:
    for content in (b'{"value": "' + VALUE.encode() + b'"', b'{"value": "\xff\xfe' + VALUE.encode() + b'"}'):
        response = client.put(
            "/api/secrets/API_KEY", content=content, headers={**ADMIN, "Content-Type": "application/json"}
        )
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_request"
        assert VALUE not in response.text


def test_a_lone_surrogate_is_refused_as_not_utf8_text(client: httpx.Client) -> None:
    content = b'{"value": "abc\\ud800def"}'
    response = client.put(
        "/api/secrets/API_KEY", content=content, headers={**ADMIN, "Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert "UTF-8" in response.json()["error"]["message"]


def test_a_huge_body_is_refused_before_it_is_read_whole(client: httpx.Client) -> None:
    response = client.put("/api/secrets/API_KEY", content=b"x" * (1024 * 1024), headers=ADMIN)

    assert response.status_code == 413


def test_the_largest_value_is_accepted(client: httpx.Client, services: Services) -> None:
    value = "v" * MAX_VALUE_BYTES
    response = client.put("/api/secrets/BIG", json={"value": value}, headers=ADMIN)

    assert response.status_code == 200
    assert services.workflow_secrets.get_values(["BIG"]) == {"BIG": value}


def test_the_platforms_own_secrets_are_neither_listed_nor_reachable(
    client: httpx.Client, services: Services
) -> None:
    services.secrets.set_secret(TOKEN_SECRET, "ghp_platform")

    client.put("/api/secrets/GITHUB_TOKEN", json={"value": VALUE}, headers=ADMIN)

    assert services.secrets.get_secret(TOKEN_SECRET) == "ghp_platform"
    assert [s["name"] for s in client.get("/api/secrets", headers=EDITOR).json()["secrets"]] == [
        "GITHUB_TOKEN"
    ]


def test_the_openapi_document_describes_the_secret_routes(client: httpx.Client) -> None:
    document = client.get("/api/openapi.json", headers=READER).json()

    put = document["paths"]["/api/secrets/{name}"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"]["required"] == ["value"]
    assert {"get"} <= set(document["paths"]["/api/secrets"])
    assert "delete" in document["paths"]["/api/secrets/{name}"]


# --- the service and the stores --------------------------------------------------------------------


def test_names_map_to_store_names_and_back() -> None:
    assert store_name("API_KEY") == "wf-API-KEY"
    assert workflow_name("wf-API-KEY") == "API_KEY"
    assert workflow_name("github-token") is None
    assert workflow_name("wf-lower") is None
    with pytest.raises(SecretNameInvalid):
        store_name("api-key")


def test_the_file_store_keeps_workflow_secrets_owner_only_and_lists_them(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "secrets.json"
    store = FileSecretStore(path)
    secrets = WorkflowSecrets(store)
    store.set_secret(TOKEN_SECRET, "ghp_platform")

    secrets.set_secret("ZETA", VALUE)
    secrets.set_secret("ALPHA_1", VALUE)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [info.name for info in store.list_secrets(prefix="wf-")] == ["wf-ALPHA-1", "wf-ZETA"]
    assert [info.name for info in store.list_secrets()] == [TOKEN_SECRET, "wf-ALPHA-1", "wf-ZETA"]
    assert secrets.list_secrets() == [{"name": "ALPHA_1", "updated": None}, {"name": "ZETA", "updated": None}]


def test_get_values_returns_the_set_ones_and_refuses_a_malformed_name(tmp_path: Path) -> None:
    secrets = WorkflowSecrets(FileSecretStore(tmp_path / "secrets.json"))
    secrets.set_secret("ONE", "value-one")

    assert secrets.get_values(["ONE", "TWO"]) == {"ONE": "value-one"}
    assert secrets.get_values([]) == {}
    with pytest.raises(SecretNameInvalid):
        secrets.get_values(["ONE", "bad-name"])


def test_service_errors_do_not_quote_the_value(tmp_path: Path) -> None:
    secrets = WorkflowSecrets(FileSecretStore(tmp_path / "secrets.json"))
    huge = VALUE * 1000

    with pytest.raises(SecretValueTooLarge) as too_large:
        secrets.set_secret("BIG", huge)
    with pytest.raises(SecretValueInvalid):
        secrets.set_secret("EMPTY", "")
    with pytest.raises(SecretNotFound):
        secrets.delete_secret("NEVER_SET")

    assert VALUE not in str(too_large.value)
