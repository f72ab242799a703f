"""Serving an app's HTTP functions over one port, as the host routes them.

Native HTTP functions are matched by their route template under the route prefix and
called with a ``func.HttpRequest``, exactly as the worker calls them. Everything else goes
straight to the FastAPI app behind the ASGI catch-all (so streaming responses stream
locally; under the host the ASGI middleware buffers them).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import azure.functions as func

from slipway.local.invocation import binding, invoke

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# The host's default request size limit (http.maxRequestBodySize is 100 MB).
MAX_BODY_BYTES = 100 * 1024 * 1024


def route_pattern(prefix: str, template: str) -> re.Pattern[str]:
    """Compile an ASP.NET-style route template (``{x}``, ``{x?}``, ``{x:int}``, ``{*x}``)."""
    parts = []
    for segment in f"{prefix}/{template}".strip("/").split("/"):
        match = re.fullmatch(r"\{(\*)?([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]*)?(\?)?\}", segment)
        if not match:
            parts.append("/" + re.escape(segment))
        elif match.group(1):
            parts.append(f"(?:/(?P<{match.group(2)}>.*))?")
        elif match.group(3):
            parts.append(f"(?:/(?P<{match.group(2)}>[^/]*))?")
        else:
            parts.append(f"/(?P<{match.group(2)}>[^/]+)")
    return re.compile("^" + "".join(parts) + "/?$", re.IGNORECASE)


@dataclass(frozen=True)
class HttpRoute:
    function: func.Function
    pattern: re.Pattern[str]
    methods: frozenset[str]
    needs_key: bool
    request_name: str


def native_routes(
    functions: Sequence[func.Function], *, route_prefix: str, asgi_function: str
) -> list[HttpRoute]:
    routes = []
    for function in functions:
        trigger = binding(function, "httpTrigger")
        if trigger is None or function.get_function_name() == asgi_function:
            continue
        methods = frozenset(m.upper() for m in trigger.get("methods") or ("GET", "POST"))
        routes.append(
            HttpRoute(
                function=function,
                pattern=route_pattern(route_prefix, trigger.get("route") or function.get_function_name()),
                methods=methods,
                needs_key=str(trigger.get("authLevel", "function")).lower() != "anonymous",
                request_name=trigger["name"],
            )
        )
    return routes


async def _send_plain(send: Send, status: int, body: bytes, content_type: str = "application/json") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class HttpDispatcher:
    """ASGI app: native HTTP functions by route, the rest to ``fallback`` (the FastAPI app)."""

    def __init__(
        self, routes: list[HttpRoute], fallback: Any, *, function_key: str, function_directory: str
    ) -> None:
        self._routes = routes
        self._fallback = fallback
        self._key = function_key
        self._directory = function_directory

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self._routes:
                match = route.pattern.match(scope["path"])
                if match and scope["method"].upper() in route.methods:
                    await self._call_native(route, match, scope, receive, send)
                    return
        await self._fallback(scope, receive, send)

    def _key_accepted(self, headers: dict[str, str], query: dict[str, str]) -> bool:
        if not self._key:
            # Like Core Tools on a developer machine: keys are not enforced locally.
            return True
        offered = headers.get("x-functions-key") or query.get("code") or ""
        return hmac.compare_digest(offered.encode(), self._key.encode())

    async def _call_native(
        self, route: HttpRoute, match: re.Match[str], scope: dict[str, Any], receive: Receive, send: Send
    ) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        if route.needs_key and not self._key_accepted(headers, query):
            await _send_plain(send, 401, b"")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                await _send_plain(send, 413, b"")
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        host = headers.get("host", "localhost")
        url = f"{scope.get('scheme', 'http')}://{host}{scope['path']}"
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        request = func.HttpRequest(
            method=scope["method"].upper(),
            url=url,
            headers=headers,
            params=query,
            route_params={k: v for k, v in match.groupdict().items() if v is not None},
            body=b"".join(chunks),
        )
        response = await invoke(
            route.function, {route.request_name: request}, function_directory=self._directory
        )
        if not isinstance(response, func.HttpResponse):
            response = func.HttpResponse(
                status_code=204 if response is None else 200, body=None if response is None else str(response)
            )
        raw_headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()
        ]
        if response.mimetype and not any(k == b"content-type" for k, _ in raw_headers):
            content_type = response.mimetype + (f"; charset={response.charset}" if response.charset else "")
            raw_headers.append((b"content-type", content_type.encode("latin-1")))
        await send({"type": "http.response.start", "status": response.status_code, "headers": raw_headers})
        await send({"type": "http.response.body", "body": response.get_body() or b""})
