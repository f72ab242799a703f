"""Settings: validated once, every problem named, and documented in three places that agree."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from slipway.config import SETTING_NAMES, SETTINGS, SettingsError, load_settings

REPO_ROOT = Path(__file__).resolve().parents[1]


def _readme_setting_names() -> set[str]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE))


def test_readme_settings_table_lists_exactly_the_settings_in_code() -> None:
    assert _readme_setting_names() == set(SETTING_NAMES)


def test_local_settings_example_lists_exactly_the_settings_in_code() -> None:
    example = json.loads((REPO_ROOT / "local.settings.json.example").read_text(encoding="utf-8"))
    assert set(example["Values"]) == set(SETTING_NAMES)


def test_the_example_settings_are_themselves_valid(tmp_path: Path) -> None:
    example = json.loads((REPO_ROOT / "local.settings.json.example").read_text(encoding="utf-8"))
    settings = load_settings(example["Values"])
    assert settings.dev_principal is True
    assert settings.task_hub == "SlipwayDev"


def test_every_setting_is_documented() -> None:
    for setting in SETTINGS:
        assert len(setting.description) > 20, setting.env


def test_valid_environment_gives_typed_settings(base_env: dict[str, str]) -> None:
    settings = load_settings(
        {**base_env, "SLIPWAY_MIN_FREE_MB": "512", "SLIPWAY_TRUST_CLIENT_PRINCIPAL": "true"}
    )
    assert settings.min_free_mb == 512
    assert settings.trust_client_principal is True
    assert settings.workspace_dir == Path(base_env["SLIPWAY_WORKSPACE_DIR"])
    assert settings.storage.uses_identity is False


def test_missing_storage_and_secret_store_are_both_named_in_one_error() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({})
    message = str(caught.value)
    assert "AzureWebJobsStorage is missing" in message
    assert "SLIPWAY_SECRET_STORE is missing" in message


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("SLIPWAY_TASK_HUB", "my-hub", "SLIPWAY_TASK_HUB='my-hub' is malformed"),
        ("SLIPWAY_MIN_FREE_MB", "lots", "SLIPWAY_MIN_FREE_MB='lots' is malformed: expected a whole number"),
        ("SLIPWAY_TRUST_CLIENT_PRINCIPAL", "maybe", "expected true or false"),
        ("SLIPWAY_SECRET_STORE", "vault", "expected keyvault or file"),
        ("SLIPWAY_LOG_LEVEL", "LOUD", "SLIPWAY_LOG_LEVEL='LOUD' is malformed"),
        ("AzureWebJobsStorage__accountName", "Bad_Name", "expected 3-24 lowercase letters and digits"),
    ],
)
def test_malformed_setting_is_named_with_what_is_expected(
    base_env: dict[str, str], name: str, value: str, expected: str
) -> None:
    with pytest.raises(SettingsError, match=re.escape(expected)):
        load_settings({**base_env, name: value})


def test_key_vault_store_needs_an_https_vault_url(base_env: dict[str, str]) -> None:
    env = {**base_env, "SLIPWAY_SECRET_STORE": "keyvault"}
    with pytest.raises(SettingsError, match="SLIPWAY_KEY_VAULT_URL is missing"):
        load_settings(env)
    with pytest.raises(SettingsError, match="expected an https:// URL"):
        load_settings({**env, "SLIPWAY_KEY_VAULT_URL": "http://vault.example"})
    settings = load_settings({**env, "SLIPWAY_KEY_VAULT_URL": "https://slipway.vault.azure.net/"})
    assert settings.key_vault_url == "https://slipway.vault.azure.net/"


def test_a_short_api_token_is_refused_without_echoing_it(base_env: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({**base_env, "SLIPWAY_API_TOKEN": "hunter2"})
    assert "SLIPWAY_API_TOKEN is too short" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_development_principal_is_refused_inside_app_service(base_env: dict[str, str]) -> None:
    env = {**base_env, "SLIPWAY_DEV_PRINCIPAL": "true", "WEBSITE_INSTANCE_ID": "abc123"}
    with pytest.raises(SettingsError, match="SLIPWAY_DEV_PRINCIPAL=true is refused"):
        load_settings(env)


def test_identity_based_storage_uses_the_account_endpoints(base_env: dict[str, str]) -> None:
    env = {**base_env, "AzureWebJobsStorage": "", "AzureWebJobsStorage__accountName": "slipwaydata"}
    settings = load_settings(env)
    assert settings.storage.uses_identity
    assert settings.storage.service_url("queue") == "https://slipwaydata.queue.core.windows.net"
    assert "AccountKey" not in settings.storage.describe()


def test_storage_description_never_contains_the_account_key(base_env: dict[str, str]) -> None:
    settings = load_settings(base_env)
    assert "AccountKey" not in settings.storage.describe()
    assert "Eby8" not in settings.storage.describe()
    assert "Eby8" not in repr(settings)


def test_an_unresolved_key_vault_reference_is_refused_not_taken_as_the_value(
    base_env: dict[str, str],
) -> None:
    reference = "@Microsoft.KeyVault(SecretUri=https://kv-slipway.vault.azure.net/secrets/slipway-api-token/)"
    with pytest.raises(SettingsError) as caught:
        load_settings({**base_env, "SLIPWAY_API_TOKEN": reference})
    assert "SLIPWAY_API_TOKEN is an unresolved Key Vault reference" in str(caught.value)
    assert "kv-slipway" not in str(caught.value)  # the message names the setting, not its value
