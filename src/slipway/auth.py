"""Who is calling and what they may do: principals, roles and how a request proves them.

Three roles, each including the ones below it: ``reader`` may look (GET), ``editor`` may
change the workspace and start runs, ``admin`` may connect GitHub, deploy and roll back.

A request proves a principal in one of four ways, tried in this order:
1. it reached the function-key protected automation function (the host checked the key);
2. ``Authorization: Bearer <SLIPWAY_API_TOKEN>``;
3. the ``x-ms-client-principal`` header of the linked Static Web App, only when
   ``SLIPWAY_TRUST_CLIENT_PRINCIPAL`` says the platform guarantees nobody else can send it; the
   user's role is the higher of the Static Web App's roles and Slipway's own assignments
   (``SLIPWAY_ADMINS``, ``SLIPWAY_EDITORS``, ``SLIPWAY_READERS``), so the first admin needs
   no invitation;
4. the development principal of ``slipway dev`` on loopback (``SLIPWAY_DEV_PRINCIPAL``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum


class Role(IntEnum):
    """Ordered so that a higher role includes every lower one."""

    READER = 1
    EDITOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> Role | None:
        try:
            return cls[label.strip().upper()]
        except KeyError:
            return None


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``role`` is None for a signed-in user with no Slipway role."""

    name: str
    provider: str
    role: Role | None

    def may(self, required: Role) -> bool:
        return self.role is not None and self.role >= required

    def to_json(self) -> dict[str, object]:
        granted = [r.label for r in Role if self.may(r)]
        return {"name": self.name, "provider": self.provider, "roles": granted}


class AuthenticationFailed(Exception):
    """The request carried credentials, but they are wrong or unreadable."""


# Header names, lower-case as ASGI presents them.
CLIENT_PRINCIPAL_HEADER = "x-ms-client-principal"
AUTHORIZATION_HEADER = "authorization"

AUTOMATION_PRINCIPAL = Principal(name="function-key", provider="functionkey", role=Role.ADMIN)
TOKEN_PRINCIPAL = Principal(name="api-token", provider="token", role=Role.ADMIN)
DEVELOPMENT_PRINCIPAL = Principal(name="developer", provider="development", role=Role.ADMIN)

# A Static Web Apps client principal is a few hundred bytes; refuse anything absurd unread.
_MAX_CLIENT_PRINCIPAL = 16 * 1024


@dataclass(frozen=True)
class RoleAssignments:
    """Roles given by address: exact addresses, or ``*@domain`` for everyone of a domain."""

    admins: tuple[str, ...] = ()
    editors: tuple[str, ...] = ()
    readers: tuple[str, ...] = ()

    @staticmethod
    def parse(raw: str) -> tuple[str, ...]:
        """A comma-separated list; ValueError naming an entry that is not an address."""
        entries = tuple(part.strip().lower() for part in raw.split(",") if part.strip())
        for entry in entries:
            local, at, domain = entry.partition("@")
            if not at or not local or "." not in domain or " " in entry or (local != "*" and "*" in local):
                raise ValueError(f"{entry!r} is not an address or *@domain")
        return entries

    def role_of(self, address: str) -> Role | None:
        wanted = address.strip().lower()
        domain = "*@" + wanted.partition("@")[2]
        for role, entries in (
            (Role.ADMIN, self.admins),
            (Role.EDITOR, self.editors),
            (Role.READER, self.readers),
        ):
            if wanted in entries or ("@" in wanted and domain in entries):
                return role
        return None


@dataclass(frozen=True)
class AuthPolicy:
    """Which ways of proving a principal this deployment accepts."""

    api_token: str = ""
    trust_client_principal: bool = False
    dev_principal: bool = False
    assignments: RoleAssignments = field(default_factory=RoleAssignments)

    def authenticate(self, headers: Mapping[str, str], *, key_verified: bool = False) -> Principal | None:
        """The caller's principal, None when the request proves none.

        Raises ``AuthenticationFailed`` for credentials that are present but wrong, so a
        mistyped token is reported as such rather than silently falling back to another way.
        """
        if key_verified:
            return AUTOMATION_PRINCIPAL
        authorization = headers.get(AUTHORIZATION_HEADER, "")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthenticationFailed("Authorization header must be 'Bearer <token>'")
            if not self.api_token:
                raise AuthenticationFailed("bearer tokens are not enabled on this deployment")
            if not hmac.compare_digest(token.strip().encode(), self.api_token.encode()):
                raise AuthenticationFailed("the bearer token is not valid")
            return TOKEN_PRINCIPAL
        encoded = headers.get(CLIENT_PRINCIPAL_HEADER, "")
        if encoded and self.trust_client_principal:
            principal = parse_client_principal(encoded)
            assigned = self.assignments.role_of(principal.name)
            if assigned is not None and (principal.role is None or assigned > principal.role):
                return Principal(principal.name, principal.provider, assigned)
            return principal
        if self.dev_principal:
            return DEVELOPMENT_PRINCIPAL
        return None


def parse_client_principal(encoded: str) -> Principal:
    """Read the base64 JSON principal that Static Web Apps forwards to its linked backend."""
    if len(encoded) > _MAX_CLIENT_PRINCIPAL:
        raise AuthenticationFailed("x-ms-client-principal header is too large")
    try:
        data = json.loads(base64.b64decode(encoded, validate=False))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise AuthenticationFailed("x-ms-client-principal header is not base64-encoded JSON") from None
    if not isinstance(data, dict):
        raise AuthenticationFailed("x-ms-client-principal header must encode a JSON object")
    roles = data.get("userRoles") or []
    if not isinstance(roles, list):
        raise AuthenticationFailed("x-ms-client-principal userRoles must be a list")
    granted = [r for r in (Role.from_label(str(label)) for label in roles) if r is not None]
    name = str(data.get("userDetails") or data.get("userId") or "unknown")
    provider = str(data.get("identityProvider") or "unknown")
    return Principal(name=name, provider=provider, role=max(granted) if granted else None)
