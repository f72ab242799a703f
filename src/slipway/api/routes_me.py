"""Who the caller is, as the API sees them (the UI uses it to enable what the role allows)."""

from __future__ import annotations

from fastapi import APIRouter

from slipway.api.security import Reader

router = APIRouter(prefix="/api", tags=["identity"])


@router.get("/me", summary="The caller's principal and roles")
def me(principal: Reader) -> dict[str, object]:
    return principal.to_json()
