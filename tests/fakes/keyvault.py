"""A fake Azure Key Vault secrets endpoint speaking the REST wire format, over HTTPS.

It covers what ``SecretClient`` needs: the bearer challenge (401 with ``WWW-Authenticate``),
set/get/delete of secrets with soft delete, listing secrets (paged by ``maxresults``, at most 25
a page as in Azure, continued by a ``nextLink`` with a ``$skiptoken``), the deleted-secret
collection and recovery, and
Key Vault's error bodies (``{"error": {"code", "message", "innererror"}}``). A secret name can be
made to answer 403, and deletion can be made to take a while, as it does in a real vault
(until it completes the secret is in neither collection and a new PUT answers 409).
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fakes import LoopbackServer

TENANT = "72f988bf-0000-0000-0000-2d7cd011db47"
RESOURCE = "https://vault.azure.net"
TOKEN = "fake-vault-access-token"  # the only bearer token this vault accepts
CHALLENGE = f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="{RESOURCE}"'
_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
_PAGE_MAX = 25  # Key Vault's largest (and default) page of a list


class FakeKeyVault(LoopbackServer):
    """Serves one vault on ``https://127.0.0.1:<port>``; accepts only ``Bearer <token>``."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.token = TOKEN
        self.forbidden: set[str] = set()  # names whose every operation answers 403
        self.deletion_seconds = 0.0  # how long a DELETE takes to land in /deletedsecrets
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.list_requests = 0  # pages of GET /secrets served
        self._versions: dict[str, list[tuple[str, str, int]]] = {}  # name -> [(version, value, created)]
        self._deleted: dict[str, tuple[float, int]] = {}  # name -> (visible from, deletedDate)
        self._lock = threading.Lock()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._start_server(_handler(self), tls=context)

    def value_of(self, name: str) -> str | None:
        """The latest value of an active secret, read directly (not through the API)."""
        with self._lock:
            versions = self._versions.get(name)
            return versions[-1][1] if versions and name not in self._deleted else None

    # --- the REST API; called by the handler with the lock held -------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if "api-version" not in query:
            return _error(400, "BadParameter", "The request is missing the api-version query parameter")
        parts = path.strip("/").split("/")
        if parts == ["secrets"] and method == "GET":
            return self._list(query)
        if len(parts) < 2 or parts[0] not in ("secrets", "deletedsecrets") or not _NAME.fullmatch(parts[1]):
            return _error(400, "BadParameter", f"Invalid path {path}")
        collection, name, rest = parts[0], parts[1], parts[2:]
        if name in self.forbidden:
            return _error(
                403,
                "Forbidden",
                f"Caller is not authorized to perform action on resource.\r\nResource: '/secrets/{name}'",
                "ForbiddenByRbac",
            )
        now = time.time()
        deleted = self._deleted.get(name)
        deleting = deleted is not None and now < deleted[0]
        if collection == "secrets" and method == "PUT" and not rest:
            if deleted is not None:
                state = "being deleted" if deleting else "in a deleted but recoverable state"
                inner = "ObjectIsBeingDeleted" if deleting else "ObjectIsDeletedButRecoverable"
                return _error(409, "Conflict", f"Secret {name} is currently {state}.", inner)
            version = uuid.uuid4().hex
            self._versions.setdefault(name, []).append((version, str(body["value"]), int(now)))
            return 200, self._bundle(name, version)
        if collection == "secrets" and method == "GET" and len(rest) <= 1:
            version = rest[0] if rest else ""
            known = [v for v, _, _ in self._versions.get(name, [])]
            if deleted is None and known and (not version or version in known):
                return 200, self._bundle(name, version)
            return _error(
                404,
                "SecretNotFound",
                f"A secret with (name/id) {name}/{version} was not found in this key vault.",
            )
        if collection == "secrets" and method == "DELETE" and not rest:
            if deleted is not None or name not in self._versions:
                return _error(
                    404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault."
                )
            self._deleted[name] = (now + self.deletion_seconds, int(now))
            return 200, self._deleted_bundle(name)
        if collection == "deletedsecrets" and method == "GET" and not rest:
            if deleted is None or deleting:
                return _error(404, "SecretNotFound", f"Deleted Secret not found: {name}")
            return 200, self._deleted_bundle(name)
        if collection == "deletedsecrets" and method == "POST" and rest == ["recover"]:
            if deleting:
                return _error(
                    409, "Conflict", f"Secret {name} is currently being deleted.", "ObjectIsBeingDeleted"
                )
            if deleted is None:
                return _error(404, "SecretNotFound", f"Deleted Secret not found: {name}")
            del self._deleted[name]
            return 200, self._bundle(name, "")
        return _error(405, "BadParameter", f"{method} {path} is not supported")

    def _list(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        """GET /secrets: the active secrets' ids and attributes (never values), a page at a time."""
        try:
            size = int(query.get("maxresults", [str(_PAGE_MAX)])[0])
            start = int(query.get("$skiptoken", ["0"])[0])
        except ValueError:
            return _error(400, "BadParameter", "maxresults and $skiptoken must be integers")
        if not 1 <= size <= _PAGE_MAX:
            return _error(400, "BadParameter", f"maxresults must be between 1 and {_PAGE_MAX}")
        self.list_requests += 1
        names = sorted(n for n, versions in self._versions.items() if versions and n not in self._deleted)
        page = names[start : start + size]
        items = []
        for name in page:
            bundle = self._bundle(name, "")
            items.append({"id": f"{self.url}/secrets/{name}", "attributes": bundle["attributes"]})
        following = start + size
        next_link = None
        if following < len(names):
            version = query["api-version"][0]
            next_link = f"{self.url}/secrets?api-version={version}&$skiptoken={following}&maxresults={size}"
        return 200, {"value": items, "nextLink": next_link}

    def _bundle(self, name: str, version: str) -> dict[str, Any]:
        versions = self._versions[name]
        version, value, created = next((v for v in versions if v[0] == version), versions[-1])
        return {
            "value": value,
            "id": f"{self.url}/secrets/{name}/{version}",
            "attributes": {
                "enabled": True,
                "created": created,
                "updated": created,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
            },
        }

    def _deleted_bundle(self, name: str) -> dict[str, Any]:
        deleted_date = self._deleted[name][1]
        return {
            **self._bundle(name, ""),
            "recoveryId": f"{self.url}/deletedsecrets/{name}",
            "deletedDate": deleted_date,
            "scheduledPurgeDate": deleted_date + 90 * 86400,
        }


def _error(status: int, code: str, message: str, inner: str | None = None) -> tuple[int, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    return status, {"error": error}


def _handler(vault: FakeKeyVault) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            headers = {"Content-Type": "application/json; charset=utf-8"}
            with vault._lock:
                if self.headers.get("Authorization") != f"Bearer {vault.token}":
                    headers["WWW-Authenticate"] = CHALLENGE
                    status, payload = _error(
                        401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token."
                    )
                else:
                    body = json.loads(raw) if raw else None
                    status, payload = vault.handle(self.command, url.path, parse_qs(url.query), body)
                vault.requests.append((self.command, url.path, status))
            data = json.dumps(payload).encode()
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_DELETE = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
