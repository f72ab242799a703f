"""The mark of an adapter that buffers whole responses, as ``azure.functions.AsgiMiddleware`` does.

Under the Functions host the ASGI bridge collects the entire response before the host sends it
("Chunked bodies not supported"), so a stream would hold a worker until it ended and then arrive
all at once. The Functions bindings wrap the API in ``BufferedAdapter``; routes that would stream
(the live logs, the workspace archive) ask ``is_buffered`` and answer in one piece instead, and
every response says so in ``X-Slipway-Streaming: buffered`` so the web UI polls from the start.
Served directly by an ASGI server (uvicorn, tests), nothing is marked and streams stream.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

BUFFERED_SCOPE = "slipway.buffered"
STREAMING_HEADER = "X-Slipway-Streaming"
_HEADER = (STREAMING_HEADER.lower().encode("latin-1"), b"buffered")


class BufferedAdapter:
    """Marks every HTTP request as served through a buffering adapter."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def marked_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), _HEADER]}
            await send(message)

        await self._app({**scope, BUFFERED_SCOPE: True}, receive, marked_send)


def is_buffered(request: Request) -> bool:
    return bool(request.scope.get(BUFFERED_SCOPE))
