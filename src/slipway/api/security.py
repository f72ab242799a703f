"""Route guards: each API route declares the least role it needs, once, in its signature.

``requires(Role.EDITOR)`` is a FastAPI dependency that answers 401 when the request proves
no principal and 403 when the principal's role is too low. The tests walk every route and
check that each one (but the public ones) carries exactly one guard.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from slipway.api.errors import ApiError
from slipway.auth import AuthenticationFailed, AuthPolicy, Principal, Role

# The function-key protected automation function; the host checked the key before calling it.
AUTOMATION_FUNCTION = "automation_api"
# Scope key set by the automation function's ASGI wrapper; clients cannot set scope keys.
KEY_VERIFIED_SCOPE = "slipway.key_verified"

_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="slipway"'}


def authenticate_request(policy: AuthPolicy, request: Request) -> Principal:
    key_verified = bool(request.scope.get(KEY_VERIFIED_SCOPE))
    try:
        principal = policy.authenticate(request.headers, key_verified=key_verified)
    except AuthenticationFailed as exc:
        raise ApiError(401, "unauthenticated", str(exc), headers=_BEARER_CHALLENGE) from None
    if principal is None:
        raise ApiError(
            401,
            "unauthenticated",
            "sign in through the Slipway web app, or send 'Authorization: Bearer <token>'",
            headers=_BEARER_CHALLENGE,
        )
    return principal


class RoleGuard:
    """The dependency behind ``requires``; ``role`` is read by the route-coverage tests."""

    def __init__(self, role: Role) -> None:
        self.role = role

    def __call__(self, request: Request) -> Principal:
        policy: AuthPolicy = request.app.state.services.auth
        principal = authenticate_request(policy, request)
        if not principal.may(self.role):
            held = principal.role.label if principal.role else "no Slipway role"
            raise ApiError(
                403,
                "forbidden",
                f"{request.method} {request.url.path} needs the {self.role.label} role; {principal.name} has {held}",
            )
        return principal


_GUARDS = {role: RoleGuard(role) for role in Role}

Reader = Annotated[Principal, Depends(_GUARDS[Role.READER])]
Editor = Annotated[Principal, Depends(_GUARDS[Role.EDITOR])]
Admin = Annotated[Principal, Depends(_GUARDS[Role.ADMIN])]
