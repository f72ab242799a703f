"""The composition root picks Azure or local adapters from the settings alone."""

from __future__ import annotations

from slipway.adapters.secrets import FileSecretStore, KeyVaultSecretStore
from slipway.bootstrap import build_services
from slipway.config import load_settings


def test_local_settings_give_azurite_storage_and_the_file_secret_store(base_env: dict[str, str]) -> None:
    services = build_services(load_settings(base_env))
    assert isinstance(services.secrets, FileSecretStore)
    assert services.tables.endpoint.startswith("http://127.0.0.1:")
    assert services.queues.endpoint.startswith("http://127.0.0.1:")


def test_azure_settings_give_identity_based_storage_and_key_vault(base_env: dict[str, str]) -> None:
    env = {
        **base_env,
        "AzureWebJobsStorage": "",
        "AzureWebJobsStorage__accountName": "slipwaydata",
        "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
        "SLIPWAY_SECRET_STORE": "keyvault",
        "SLIPWAY_KEY_VAULT_URL": "https://slipway-kv.vault.azure.net/",
    }
    services = build_services(load_settings(env))
    assert isinstance(services.secrets, KeyVaultSecretStore)
    assert services.secrets.location.rstrip("/") == "key vault https://slipway-kv.vault.azure.net"
    assert services.tables.endpoint == "https://slipwaydata.table.core.windows.net"
    assert services.queues.endpoint.rstrip("/") == "https://slipwaydata.queue.core.windows.net"


def test_secrets_written_through_services_land_in_a_private_file(base_env: dict[str, str]) -> None:
    import os
    import stat
    from pathlib import Path

    services = build_services(load_settings(base_env))
    services.secrets.set_secret("github-token", "ghp_example")
    path = Path(base_env["SLIPWAY_SECRETS_FILE"])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert services.secrets.get_secret("github-token") == "ghp_example"
