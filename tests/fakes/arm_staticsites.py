"""A fake of Azure Resource Manager's ``Microsoft.Web/staticSites`` REST API, over HTTPS.

It covers what ``WebSiteManagementClient.static_sites`` sends for Slipway: ``GET`` and ``PUT``
``/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Web/staticSites/{name}``, ``POST
.../listSecrets`` and ``POST .../zipdeploy``, each with ``api-version``. Shapes follow the REST
reference examples (CreateOrUpdateStaticSite.json: ``200``, or ``202`` with
``Azure-AsyncOperation``; ``listSecrets``: a StringDictionary whose ``properties.apiKey`` is the
deployment token; ``zipdeploy``: ``200``, or ``202`` with ``Location``) and ARM's error bodies
(``{"error": {"code", "message"}}``: ``ResourceNotFound``, ``ResourceGroupNotFound``,
``AuthorizationFailed``, ``AuthenticationFailed``). Only ``Bearer <token>`` is accepted; the base
URL is given to the SDK, so it makes no metadata or AAD call.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fakes import LoopbackServer, send_json

TOKEN = "fake-arm-access-token"  # the only bearer token this ARM accepts
PRINCIPAL = "0d5c2f6e-1111-4a4a-9b9b-5e1f0c0ffee0"
_ROUTE = re.compile(
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.Web/staticSites/(?P<name>[^/]+)(?P<rest>/[A-Za-z]+)?"
)
_OPERATION = re.compile(
    r"/subscriptions/[^/]+/providers/Microsoft\.Web/locations/[^/]+/operationResults/(?P<id>[^/]+)"
)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


@dataclass
class FakeSite:
    name: str
    location: str
    sku: str = "Free"
    hostname: str = ""
    api_key: str = field(default_factory=lambda: secrets.token_hex(40) + "-" + secrets.token_hex(8))
    zip_urls: list[str] = field(default_factory=list)


class FakeArm(LoopbackServer):
    """One subscription's resource groups of static web apps on ``https://127.0.0.1:<port>``."""

    def __init__(self, cert: Path, key: Path, *, subscription: str) -> None:
        self.subscription = subscription
        self.resource_groups: dict[str, dict[str, FakeSite]] = {}  # lower-case rg -> name -> site
        self.forbidden: set[str] = set()  # ARM actions refused with 403 AuthorizationFailed
        self.asynchronous = True  # PUT and zipdeploy answer 202 and finish on the second poll
        self.requests: list[Request] = []
        self._operations: dict[str, int] = {}  # operation id -> polls left before it completes
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._start_server(_handler(self), tls=context)

    def add_site(self, resource_group: str, name: str, **kwargs: Any) -> FakeSite:
        site = FakeSite(name, **{"location": "West Europe", **kwargs})
        site.hostname = site.hostname or f"gentle-river-{secrets.token_hex(4)}.5.azurestaticapps.net"
        self.resource_groups.setdefault(resource_group.lower(), {})[name.lower()] = site
        return site

    def site(self, resource_group: str, name: str) -> FakeSite | None:
        return self.resource_groups.get(resource_group.lower(), {}).get(name.lower())

    # --- the REST API; called by the handler with the lock held -------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        operation = _OPERATION.fullmatch(path)
        if operation is not None and method == "GET":
            return self._operation(operation["id"])
        match = _ROUTE.fullmatch(path)
        if match is None or match["sub"] != self.subscription:
            return _error(404, "InvalidResourceType", f"The resource path '{path}' is not valid.")
        if "api-version" not in query:
            return _error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        rg, name, rest = match["rg"], match["name"], match["rest"] or ""
        scope = f"/subscriptions/{self.subscription}/resourceGroups/{rg}/providers/Microsoft.Web/staticSites/{name}"
        action = {
            ("GET", ""): "Microsoft.Web/staticSites/read",
            ("PUT", ""): "Microsoft.Web/staticSites/write",
            ("POST", "/listSecrets"): "Microsoft.Web/staticSites/listSecrets/action",
            ("POST", "/zipdeploy"): "Microsoft.Web/staticSites/zipdeploy/action",
        }.get((method, rest))
        if action is None:
            return _error(405, "MethodNotAllowed", f"The requested method {method} is not allowed.")
        if action in self.forbidden:
            return _error(
                403,
                "AuthorizationFailed",
                f"The client '{PRINCIPAL}' with object id '{PRINCIPAL}' does not have authorization to "
                f"perform action '{action}' over scope '{scope}' or the scope is invalid. If access was "
                "recently granted, please refresh your credentials.",
            )
        if rg.lower() not in self.resource_groups:
            return _error(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
        site = self.site(rg, name)
        if method == "PUT":
            return self._create(rg, name, body, scope)
        if site is None:
            return _error(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.Web/staticSites/{name}' under resource group '{rg}' was not "
                "found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            )
        if rest == "/listSecrets":
            secrets_id = f"{scope}/secrets"
            return (
                200,
                {
                    "id": secrets_id,
                    "name": "secrets",
                    "type": "Microsoft.Web/staticSites/secrets",
                    "properties": {"apiKey": site.api_key},
                },
                {},
            )
        if rest == "/zipdeploy":
            properties = (body or {}).get("properties") or {}
            if not properties.get("appZipUrl"):
                return _error(400, "BadRequest", "appZipUrl is required.")
            site.zip_urls.append(properties["appZipUrl"])
            if self.asynchronous:
                return 202, None, {"Location": self._start_operation(site.location)}
            return 200, None, {}
        return 200, self._resource(site, scope), {}

    def _create(self, rg: str, name: str, body: Any, scope: str) -> tuple[int, Any, dict[str, str]]:
        if not isinstance(body, dict) or not body.get("location"):
            return _error(400, "LocationRequired", "The location property is required for this definition.")
        sku = (body.get("sku") or {}).get("name", "Free")
        if sku not in ("Free", "Standard"):
            return _error(400, "InvalidSku", f"The sku '{sku}' is not valid for a static site.")
        site = self.site(rg, name) or self.add_site(rg, name, location=body["location"], sku=sku)
        site.sku = sku
        if self.asynchronous:
            return (
                202,
                self._resource(site, scope),
                {"Azure-AsyncOperation": self._start_operation(site.location)},
            )
        return 200, self._resource(site, scope), {}

    def _start_operation(self, location: str) -> str:
        operation = f"{next(self._ids):08d}-0000-4000-8000-000000000000"
        self._operations[operation] = 1
        region = location.replace(" ", "").lower()
        return (
            f"{self.url}/subscriptions/{self.subscription}/providers/Microsoft.Web/locations/{region}"
            f"/operationResults/{operation}?api-version=2019-01-01"
        )

    def _operation(self, operation: str) -> tuple[int, Any, dict[str, str]]:
        left = self._operations.get(operation)
        if left is None:
            return _error(404, "NotFound", f"Operation {operation} was not found.")
        self._operations[operation] = max(0, left - 1)
        status = "InProgress" if left else "Succeeded"
        return 200, {"id": operation, "name": operation, "status": status}, {}

    @staticmethod
    def _resource(site: FakeSite, scope: str) -> dict[str, Any]:
        return {
            "id": scope,
            "name": site.name,
            "type": "Microsoft.Web/staticSites",
            "location": site.location,
            "tags": {},
            "properties": {
                "defaultHostname": site.hostname,
                "repositoryUrl": None,
                "branch": None,
                "customDomains": [],
                "privateEndpointConnections": [],
                "contentDistributionEndpoint": "",
                "keyVaultReferenceIdentity": "SystemAssigned",
                "userProvidedFunctionApps": None,
                "linkedBackends": [],
                "stagingEnvironmentPolicy": "Enabled",
                "allowConfigFileUpdates": True,
            },
            "sku": {"name": site.sku, "tier": site.sku},
        }


def _error(status: int, code: str, message: str) -> tuple[int, Any, dict[str, str]]:
    return status, {"error": {"code": code, "message": message}}, {}


def _handler(fake: FakeArm) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            body = json.loads(raw) if raw else None
            headers: dict[str, str] = {"x-ms-request-id": "f4ke0000-0000-0000-0000-000000000001"}
            with fake._lock:
                fake.requests.append(
                    Request(self.command, parts.path, query, body, dict(self.headers.items()))
                )
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    status, payload, extra = _error(
                        401,
                        "AuthenticationFailed",
                        "Authentication failed. The 'Authorization' header is missing or invalid.",
                    )
                    extra = {
                        "WWW-Authenticate": 'Bearer authorization_uri="https://login.windows.net/", error="invalid_token"'
                    }
                else:
                    status, payload, extra = fake.handle(self.command, parts.path, query, body)
            headers.update(extra)
            send_json(self, status, payload, headers)

        do_GET = do_PUT = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
