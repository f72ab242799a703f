"""Secret storage: Azure Key Vault in Azure, a 0600 JSON file on a developer's machine.

Both stores accept the same names (Key Vault's rules: letters, digits and dashes), so code
that works locally works in Azure. Values never appear in logs or exception messages.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.secrets import SecretClient

# Key Vault finishes a delete or a recovery within seconds; never hold a request longer.
_WAIT_SECONDS = 60

_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")


class SecretStoreError(RuntimeError):
    """The secret store cannot be used; the message says why and what to do."""


def check_secret_name(name: str) -> None:
    if not _NAME.fullmatch(name):  # not match + "$": "$" also matches before a final newline
        raise ValueError(f"secret name {name!r} must be 1-127 letters, digits or dashes")


@dataclass(frozen=True)
class SecretInfo:
    """A stored secret without its value: its name and, where the store records it, when it last
    changed (Key Vault does; the local file does not)."""

    name: str
    updated_on: datetime | None = None


class SecretStore(Protocol):
    """Where Slipway keeps credentials it must be able to read back."""

    location: str

    def get_secret(self, name: str) -> str | None: ...

    def list_secrets(self, *, prefix: str = "") -> list[SecretInfo]:
        """The secrets whose names start with ``prefix``, sorted by name; never their values."""
        ...

    def set_secret(self, name: str, value: str) -> None: ...

    def delete_secret(self, name: str) -> None: ...

    def check_access(self) -> dict[str, str]: ...


class FileSecretStore:
    """Secrets in one JSON file readable by its owner only (mode 0600), written atomically."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self.location = f"file {path}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive across threads and processes (the runner and a CLI may share the file)."""
        with self._lock:
            self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self._path.with_name(self._path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _load(self) -> dict[str, str]:
        try:
            info = self._path.stat()
        except FileNotFoundError:
            return {}
        if stat.S_IMODE(info.st_mode) & 0o077:
            # Like ssh with a private key: a readable secret file may already have leaked.
            raise SecretStoreError(
                f"secrets file {self._path} is readable by other users "
                f"(mode {stat.S_IMODE(info.st_mode):o}); run `chmod 600 {self._path}`"
            )
        try:
            data = json.loads(self._path.read_text(encoding="utf-8") or "{}")
        except json.JSONDecodeError as exc:
            raise SecretStoreError(
                f"secrets file {self._path} is not valid JSON (line {exc.lineno})"
            ) from None
        except UnicodeDecodeError:
            raise SecretStoreError(f"secrets file {self._path} is not UTF-8 text") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise SecretStoreError(f"secrets file {self._path} must hold a JSON object of strings")
        return data

    def _save(self, data: dict[str, str]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # mkstemp creates the file 0600 from the start, so the secret is never world-readable.
        fd, tmp = tempfile.mkstemp(prefix=".secrets-", dir=self._path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=2, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get_secret(self, name: str) -> str | None:
        check_secret_name(name)
        with self._locked():
            return self._load().get(name)

    def list_secrets(self, *, prefix: str = "") -> list[SecretInfo]:
        with self._locked():
            names = self._load()
        return [SecretInfo(name) for name in sorted(names) if name.startswith(prefix)]

    def set_secret(self, name: str, value: str) -> None:
        check_secret_name(name)
        with self._locked():
            data = self._load()
            data[name] = value
            self._save(data)

    def delete_secret(self, name: str) -> None:
        check_secret_name(name)
        with self._locked():
            data = self._load()
            if data.pop(name, None) is not None:
                self._save(data)

    def check_access(self) -> dict[str, str]:
        """Prove the file can be read (permissions and format); used by health checks."""
        with self._locked():
            count = len(self._load())
        return {"location": self.location, "secrets": str(count)}


class KeyVaultSecretStore:
    """Secrets in Azure Key Vault (RBAC: the app's identity is Key Vault Secrets Officer)."""

    # A name used only to prove the vault answers; it is never written.
    _PROBE = "slipway-health-probe"

    def __init__(self, client: SecretClient) -> None:
        self._client = client
        self.location = f"key vault {client.vault_url}"

    def get_secret(self, name: str) -> str | None:
        check_secret_name(name)
        try:
            return self._client.get_secret(name).value
        except ResourceNotFoundError:
            return None

    def list_secrets(self, *, prefix: str = "") -> list[SecretInfo]:
        # Key Vault names are case-insensitive, so is the prefix; deleted secrets are not listed.
        folded = prefix.lower()
        found = [
            SecretInfo(item.name, item.updated_on)
            for item in self._client.list_properties_of_secrets()
            if item.name and item.name.lower().startswith(folded)
        ]
        return sorted(found, key=lambda info: info.name)

    def set_secret(self, name: str, value: str) -> None:
        check_secret_name(name)
        try:
            self._client.set_secret(name, value)
        except HttpResponseError as exc:
            # With soft delete on, a deleted secret blocks its name until it is recovered.
            if exc.status_code != 409 or "deleted" not in str(exc.message or "").lower():
                raise
            self._client.begin_recover_deleted_secret(name).wait(timeout=_WAIT_SECONDS)
            self._client.set_secret(name, value)

    def delete_secret(self, name: str) -> None:
        check_secret_name(name)
        with contextlib.suppress(ResourceNotFoundError):
            # Deletion takes a moment; until it lands a set of the same name answers 409 and
            # cannot be recovered yet, so wait for it as the SDK's poller allows.
            self._client.begin_delete_secret(name).wait(timeout=_WAIT_SECONDS)

    def check_access(self) -> dict[str, str]:
        with contextlib.suppress(ResourceNotFoundError):
            self._client.get_secret(self._PROBE)
        return {"location": self.location}
