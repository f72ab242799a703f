"""Serving an app's HTTP functions over one port, as the host routes them.

Every HTTP function, the ASGI catch-all included, is matched by its route template under the
route prefix (literal routes before the catch-all, as the host orders them) and invoked
through the worker with the request as the host sends it: the whole body read first (up to
the host's 100 MB), the whole response returned at once. So the FastAPI app behind the
catch-all buffers here exactly as under the host (``func.AsgiMiddleware`` collects the
response before answering): nothing streams.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

import azure.functions as func

from slipway.local.invocation import binding, http_answer, http_request_input
from slipway.local.worker import Worker, WorkerRestarted

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# The host's default request size limit (http.maxRequestBodySize is 100 MB).
MAX_BODY_BYTES = 100 * 1024 * 1024


def _joined(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Repeated names as one, their values joined with "," (ASP.NET's StringValues.ToString)."""
    joined: dict[str, str] = {}
    for name, value in pairs:
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    return joined


def _segments(prefix: str, template: str) -> list[str]:
    """The route's segments: the host trims slashes around the prefix and the template alike."""
    return [part for part in f"{prefix}/{template}".split("/") if part]


def route_pattern(prefix: str, template: str) -> re.Pattern[str]:
    """Compile an ASP.NET-style route template (``{x}``, ``{x?}``, ``{x:int}``, ``{*x}``)."""
    parts = []
    for segment in _segments(prefix, template):
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
    # A template that is a catch-all from its first segment on (``{*x}``): tried after the rest.
    catch_all: bool


def http_routes(functions: Sequence[func.Function], *, route_prefix: str) -> list[HttpRoute]:
    """Every HTTP function's route; catch-all templates (``{*x}``) after the literal ones."""
    routes = []
    for function in functions:
        trigger = binding(function, "httpTrigger")
        if trigger is None:
            continue
        methods = frozenset(m.upper() for m in trigger.get("methods") or ("GET", "POST"))
        template = trigger.get("route") or function.get_function_name()
        routes.append(
            HttpRoute(
                function=function,
                pattern=route_pattern(route_prefix, template),
                methods=methods,
                needs_key=str(trigger.get("authLevel", "function")).lower() != "anonymous",
                request_name=trigger["name"],
                catch_all=next(iter(_segments(route_prefix, template)), "").startswith("{*"),
            )
        )
    return sorted(routes, key=lambda route: route.catch_all)


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
    """ASGI app: each request to the HTTP function whose route and method match, else 404."""

    def __init__(self, routes: list[HttpRoute], *, worker: Worker, function_key: str) -> None:
        self._routes = routes
        self._worker = worker
        self._key = function_key

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        if scope["type"] != "http":
            # The host serves no WebSockets to Python functions.
            return
        for route in self._routes:
            match = route.pattern.match(scope["path"])
            if match and scope["method"].upper() in route.methods:
                await self._call(route, match, scope, receive, send)
                return
        await _send_plain(send, 404, b"")

    def _key_accepted(self, headers: dict[str, str], query: dict[str, str]) -> bool:
        if not self._key:
            # Like Core Tools on a developer machine: keys are not enforced locally.
            return True
        offered = headers.get("x-functions-key") or query.get("code") or ""
        return hmac.compare_digest(offered.encode(), self._key.encode())

    async def _call(
        self, route: HttpRoute, match: re.Match[str], scope: dict[str, Any], receive: Receive, send: Send
    ) -> None:
        headers = _joined((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"])
        # The host's ToRpcHttp: repeated keys joined with ",", empty values left out.
        pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        query = {k: v for k, v in _joined(pairs).items() if v}
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
        # The path as it came, still percent-encoded: a decoded "%23" or "%3F" would cut the URL.
        raw_path = scope.get("raw_path") or quote(scope["path"]).encode("ascii")
        url = f"{scope.get('scheme', 'http')}://{host}{raw_path.decode('latin-1')}"
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        data = http_request_input(
            method=scope["method"].upper(),
            url=url,
            headers=headers,
            query=query,
            params={k: v for k, v in match.groupdict().items() if v is not None},
            body=b"".join(chunks),
        )
        name = route.function.get_function_name()
        try:
            answer = http_answer(await self._worker.invoke(name, {route.request_name: data}))
        except WorkerRestarted:
            await _send_plain(send, 500, b"")
            return
        response_headers = list(answer.headers)
        if not any(k == b"content-length" for k, _ in response_headers):
            # The host sends the whole body at once, with its length.
            response_headers.append((b"content-length", str(len(answer.body)).encode("ascii")))
        await send({"type": "http.response.start", "status": answer.status, "headers": response_headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else answer.body})
