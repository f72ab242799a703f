"""KeyVaultSecretStore against a local fake of the Key Vault REST API, over real HTTPS.

The real ``SecretClient`` does the talking: the bearer challenge, the JSON bodies and the
error mapping are the SDK's own. Only the vault is fake (see ``tests/fakes/keyvault.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.keyvault.secrets import SecretClient
from azure.keyvault.secrets._shared import http_challenge_cache
from fakes import self_signed_certificate
from fakes.keyvault import TENANT, FakeKeyVault

from slipway.adapters.secrets import KeyVaultSecretStore

VAULT_SCOPE = "https://vault.azure.net/.default"


class RecordingCredential:
    """A TokenCredential that hands out one fixed token and remembers what it was asked for."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.asked: list[tuple[tuple[str, ...], str | None]] = []

    def get_token(self, *scopes: str, tenant_id: str | None = None, **kwargs: Any) -> AccessToken:
        self.asked.append((scopes, tenant_id))
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key, as PEM files."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"), "Slipway test vault")


@pytest.fixture
def vault(tls_files: tuple[Path, Path]) -> Iterator[FakeKeyVault]:
    http_challenge_cache.clear()  # the SDK caches challenges per host:port, process-wide
    with FakeKeyVault(*tls_files) as fake:
        yield fake
    http_challenge_cache.clear()


@pytest.fixture
def credential(vault: FakeKeyVault) -> RecordingCredential:
    return RecordingCredential(vault.token)


@pytest.fixture
def store(
    vault: FakeKeyVault, credential: RecordingCredential, tls_files: tuple[Path, Path]
) -> Iterator[KeyVaultSecretStore]:
    client = SecretClient(
        vault.url,
        credential,
        # Verify the fake's certificate against the test certificate, not skip verification.
        connection_verify=str(tls_files[0]),
        # The challenge names vault.azure.net, which 127.0.0.1 is not under; the SDK checks that.
        verify_challenge_resource=False,
        connection_timeout=5,
        read_timeout=5,
        retry_total=0,
    )
    with client:
        yield KeyVaultSecretStore(client)


def test_a_stored_secret_reads_back(store: KeyVaultSecretStore, vault: FakeKeyVault) -> None:
    store.set_secret("github-token", "ghp_s3cret")

    assert store.get_secret("github-token") == "ghp_s3cret"
    assert vault.value_of("github-token") == "ghp_s3cret"


def test_the_sdk_answers_the_vault_challenge_with_a_token_for_the_vault_scope(
    store: KeyVaultSecretStore, vault: FakeKeyVault, credential: RecordingCredential
) -> None:
    store.set_secret("github-token", "ghp_s3cret")
    store.get_secret("github-token")

    # The first request goes out without a token and is challenged; the retry carries it.
    assert [status for _, _, status in vault.requests] == [401, 200, 200]
    assert credential.asked == [((VAULT_SCOPE,), TENANT)]
    assert vault.value_of("github-token") == "ghp_s3cret"  # the body survived the challenge


def test_a_missing_secret_reads_as_none(store: KeyVaultSecretStore) -> None:
    assert store.get_secret("never-set") is None


def test_setting_a_secret_again_after_deleting_it_recovers_it_and_stores_the_new_value(
    store: KeyVaultSecretStore, vault: FakeKeyVault
) -> None:
    store.set_secret("api-key", "first")
    store.delete_secret("api-key")
    assert store.get_secret("api-key") is None

    store.set_secret("api-key", "second")

    assert store.get_secret("api-key") == "second"
    calls = [(method, path, status) for method, path, status in vault.requests if status != 401]
    assert ("PUT", "/secrets/api-key", 409) in calls  # the soft-deleted name blocked the first PUT
    assert ("POST", "/deletedsecrets/api-key/recover", 200) in calls


def test_setting_a_secret_right_after_deleting_it_works_while_the_vault_is_still_deleting(
    store: KeyVaultSecretStore, vault: FakeKeyVault
) -> None:
    # A real vault takes a moment before a deleted secret reaches /deletedsecrets.
    vault.deletion_seconds = 0.3
    store.set_secret("api-key", "first")
    store.delete_secret("api-key")

    store.set_secret("api-key", "second")

    assert store.get_secret("api-key") == "second"


def test_deleting_a_secret_that_does_not_exist_is_not_an_error(store: KeyVaultSecretStore) -> None:
    store.delete_secret("never-set")

    assert store.get_secret("never-set") is None


def test_check_access_succeeds_against_a_vault_without_the_probe_secret(
    store: KeyVaultSecretStore, vault: FakeKeyVault
) -> None:
    assert store.check_access() == {"location": f"key vault {vault.url}"}
    assert vault.requests[-1] == ("GET", "/secrets/slipway-health-probe/", 404)


@pytest.mark.parametrize(
    "name", ["bad_name", "a/b", "../secrets", "", "x" * 128, "trailing-newline\n", "café"]
)
def test_a_name_key_vault_refuses_is_rejected_before_any_request(
    store: KeyVaultSecretStore, vault: FakeKeyVault, name: str
) -> None:
    for call in (
        lambda: store.set_secret(name, "value"),
        lambda: store.get_secret(name),
        lambda: store.delete_secret(name),
    ):
        with pytest.raises(ValueError, match="letters, digits or dashes"):
            call()

    assert vault.requests == []


def test_a_forbidden_secret_raises_without_the_value_in_the_message(
    store: KeyVaultSecretStore, vault: FakeKeyVault
) -> None:
    vault.forbidden.add("locked")
    value = "hunter2-do-not-leak"

    with pytest.raises(HttpResponseError) as raised:
        store.set_secret("locked", value)

    assert raised.value.status_code == 403
    assert "not authorized" in str(raised.value)
    assert value not in str(raised.value)
    assert value not in repr(raised.value)
    assert vault.value_of("locked") is None


def test_listing_pages_through_the_vault_and_never_reads_a_value(
    store: KeyVaultSecretStore, vault: FakeKeyVault
) -> None:
    for n in range(30):  # more than Key Vault's page of 25
        store.set_secret(f"wf-KEY-{n:02d}", f"value-{n}")
    store.set_secret("github-token", "ghp_s3cret")
    store.set_secret("wf-GONE", "x")
    store.delete_secret("wf-GONE")
    vault.requests.clear()

    listed = store.list_secrets(prefix="wf-")

    assert [info.name for info in listed] == [f"wf-KEY-{n:02d}" for n in range(30)]
    assert all(info.updated_on is not None for info in listed)
    assert vault.list_requests == 2
    assert {(method, path) for method, path, _ in vault.requests} == {("GET", "/secrets")}


def test_the_listing_prefix_ignores_case_as_key_vault_names_do(store: KeyVaultSecretStore) -> None:
    store.set_secret("WF-LOUD", "x")
    store.set_secret("other", "y")

    assert [info.name for info in store.list_secrets(prefix="wf-")] == ["WF-LOUD"]
    assert [info.name for info in store.list_secrets()] == ["WF-LOUD", "other"]


def test_workflow_secrets_round_trip_through_key_vault(
    store: KeyVaultSecretStore, vault: FakeKeyVault
) -> None:
    from slipway.workflow_secrets import WorkflowSecrets

    secrets = WorkflowSecrets(store)
    assert secrets.set_secret("API_KEY", "k3y-value") is False
    store.set_secret("github-token", "ghp_s3cret")

    assert vault.value_of("wf-API-KEY") == "k3y-value"
    assert [s["name"] for s in secrets.list_secrets()] == ["API_KEY"]
    assert secrets.list_secrets()[0]["updated"] is not None
    assert secrets.get_values(["API_KEY", "MISSING"]) == {"API_KEY": "k3y-value"}
    secrets.delete_secret("API_KEY")
    assert secrets.list_secrets() == []
