"""Workflow secrets: named values that admins set and workflow steps read as ``ctx.secrets``.

They live in the platform's secret store (Key Vault in Azure, the local 0600 file in dev) under
the prefix ``wf-``, so they can never overwrite the platform's own secrets (``github-token``,
``github-webhook-secret``). A workflow name is env-var style, ``API_KEY``; it is stored as
``wf-API-KEY`` (Key Vault names allow dashes, not underscores). Names are uppercase only, so
Key Vault's case-insensitive names cannot make two of them one. Values are write-only: nothing
here returns one except ``get_values``, which the engine calls for a run's declared secrets.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from slipway.adapters.secrets import SecretStore
from slipway.errors import DomainError

log = logging.getLogger("slipway.secrets")

STORE_PREFIX = "wf-"
NAME_PATTERN = r"[A-Z][A-Z0-9_]{0,62}"
# Key Vault takes 25 KB a value; a little below leaves room for its own encoding.
MAX_VALUE_BYTES = 24 * 1024

_NAME = re.compile(NAME_PATTERN)


class WorkflowSecretError(DomainError):
    code = "workflow_secret_error"


class SecretNameInvalid(WorkflowSecretError):
    code = "secret_name_invalid"
    status = 422


class SecretValueInvalid(WorkflowSecretError):
    """Empty or not UTF-8 text; the message never contains the value."""

    code = "secret_value_invalid"
    status = 422


class SecretValueTooLarge(WorkflowSecretError):
    code = "secret_value_too_large"
    status = 413


class SecretNotFound(WorkflowSecretError):
    code = "secret_not_found"
    status = 404


def check_name(name: str) -> str:
    """``name`` if it is a valid workflow secret name, else ``SecretNameInvalid``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):  # fullmatch: "$" allows a final "\n"
        shown = name if isinstance(name, str) and len(name) <= 80 else f"{str(name)[:80]}…"
        raise SecretNameInvalid(
            f"secret name {shown!r} must be 1-63 characters: an uppercase letter, then uppercase "
            "letters, digits or underscores (like an environment variable: API_KEY)"
        )
    return name


def check_value(value: object) -> str:
    """``value`` if it can be stored, else an error that does not quote it."""
    if not isinstance(value, str):
        raise SecretValueInvalid("the secret value must be a string")
    if not value:
        raise SecretValueInvalid("the secret value must not be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise SecretValueInvalid("the secret value must be UTF-8 text (it has a lone surrogate)") from None
    if size > MAX_VALUE_BYTES:
        raise SecretValueTooLarge(f"the secret value is {size} bytes; the limit is {MAX_VALUE_BYTES} bytes")
    return value


def store_name(name: str) -> str:
    """The secret store's name for a workflow secret: ``API_KEY`` -> ``wf-API-KEY``."""
    return STORE_PREFIX + check_name(name).replace("_", "-")


def workflow_name(stored: str) -> str | None:
    """The workflow name of a store name, or None when it is not one of ours."""
    if stored[: len(STORE_PREFIX)].lower() != STORE_PREFIX:
        return None
    name = stored[len(STORE_PREFIX) :].replace("-", "_")
    return name if _NAME.fullmatch(name) else None


class WorkflowSecrets:
    """Lists names, sets and deletes values (admins), and hands a run its declared values."""

    def __init__(self, store: SecretStore) -> None:
        self._store = store

    check_name = staticmethod(check_name)

    def list_secrets(self) -> list[dict[str, str | None]]:
        """``[{"name", "updated"}]`` sorted by name; ``updated`` is ISO 8601 or None (local file)."""
        found = []
        for info in self._store.list_secrets(prefix=STORE_PREFIX):
            name = workflow_name(info.name)
            if name is not None:
                updated = info.updated_on.isoformat() if info.updated_on else None
                found.append({"name": name, "updated": updated})
        return sorted(found, key=lambda item: str(item["name"]))

    def exists(self, name: str) -> bool:
        return self._store.get_secret(store_name(name)) is not None

    def set_secret(self, name: str, value: str, *, actor: str = "") -> bool:
        """Store ``value`` under ``name``; True when it replaced a value, False when it is new."""
        key = store_name(name)
        check_value(value)
        replaced = self._store.get_secret(key) is not None
        self._store.set_secret(key, value)
        log.info("workflow secret set", extra={"secret": name, "replaced": replaced, "actor": actor})
        return replaced

    def delete_secret(self, name: str, *, actor: str = "") -> None:
        """Delete ``name``; ``SecretNotFound`` when there is no such secret."""
        key = store_name(name)
        if self._store.get_secret(key) is None:
            raise SecretNotFound(f"there is no workflow secret {name}")
        self._store.delete_secret(key)
        log.info("workflow secret deleted", extra={"secret": name, "actor": actor})

    def get_values(self, names: Iterable[str]) -> dict[str, str]:
        """The values of ``names`` that are set (missing ones are absent); for the engine only.

        Raises ``SecretNameInvalid`` for a malformed name, before reading any value.
        """
        keys = {name: store_name(name) for name in names}
        values: dict[str, str] = {}
        for name, key in keys.items():
            value = self._store.get_secret(key)
            if value is not None:
                values[name] = value
        return values
