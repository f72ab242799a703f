"""Native HTTP functions beside the ASGI catch-all.

``automation_api`` is the way in for scripts and CI: it has the FUNCTION auth level, so the
host rejects a request without a valid function (or host) key before Slipway sees it. It
serves the same API under ``/api/automation/...`` with the admin role. Its route has a
literal prefix the FastAPI app never serves, so it cannot be shadowed by, or shadow, the
catch-all ``/{*route}``: a request that reaches the FastAPI app under that prefix without
passing through this function gets a 404, never admin rights.
"""

from __future__ import annotations

from typing import Any

import azure.functions as func

from slipway.api.buffered import BufferedAdapter
from slipway.api.security import AUTOMATION_FUNCTION, KEY_VERIFIED_SCOPE

ASGI_FUNCTION = "http_app_func"
AUTOMATION_ROUTE_PREFIX = "automation"
_API_PREFIX = "/api"


class KeyVerifiedApi:
    """Wraps the API so requests arriving here run as key-verified, under the normal paths."""

    def __init__(self, api: Any) -> None:
        self._api = api

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = dict(scope)
            prefix = f"{_API_PREFIX}/{AUTOMATION_ROUTE_PREFIX}"
            path: str = scope["path"]
            if path == prefix or path.startswith(prefix + "/"):
                scope["path"] = _API_PREFIX + path[len(prefix) :]
                scope["raw_path"] = scope["path"].encode("utf-8")
                scope[KEY_VERIFIED_SCOPE] = True
        await self._api(scope, receive, send)


def automation_blueprint(api: Any) -> func.Blueprint:
    blueprint = func.Blueprint()
    middleware = func.AsgiMiddleware(BufferedAdapter(KeyVerifiedApi(api)))

    @blueprint.function_name(AUTOMATION_FUNCTION)
    @blueprint.route(
        route=f"api/{AUTOMATION_ROUTE_PREFIX}/{{*path}}",
        methods=[m for m in func.HttpMethod],
        auth_level=func.AuthLevel.FUNCTION,
    )
    async def automation_api(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        return await middleware.handle_async(req, context)

    return blueprint
