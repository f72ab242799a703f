"""Live logs as Server-Sent Events, for workflow runs and deployments alike.

``read(after, limit)`` returns a page ``{"lines", "next", "status", "complete"}``; the stream
sends each line as an ``line`` event whose id is its number (so ``EventSource`` reconnects with
``Last-Event-ID`` and misses nothing), a ``status`` event when the status changes, and ``end``
once the page says the log is complete.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Container
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from slipway.api.buffered import is_buffered

# A stream ends after this long; EventSource reconnects with Last-Event-ID.
STREAM_SECONDS = 300
_POLL_SECONDS = 0.5
_PING_SECONDS = 15

LogPage = Callable[[int, int], dict[str, Any]]


async def log_response(
    request: Request,
    read: LogPage,
    *,
    after: int,
    limit: int,
    last_event_id: str | None,
    final: Container[str],
) -> StreamingResponse | dict[str, Any]:
    """One page of lines as JSON; with ``Accept: text/event-stream`` the live stream, from
    ``Last-Event-ID`` when the browser reconnects, unless a buffering adapter serves the API
    (then the page: a stream would hold a worker for ``STREAM_SECONDS`` and arrive at once)."""
    if "text/event-stream" not in request.headers.get("accept", "") or is_buffered(request):
        return await asyncio.to_thread(read, after, limit)
    start = int(last_event_id) if last_event_id and last_event_id.isdigit() else after
    await asyncio.to_thread(read, start, 1)  # an unknown id is a 404 before the stream opens
    return StreamingResponse(
        _events(read, start, request, final),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _events(read: LogPage, after: int, request: Request, final: Container[str]) -> AsyncIterator[bytes]:
    started = time.monotonic()
    last_ping = started
    status = None
    yield b": stream open\n\n"
    while time.monotonic() - started < STREAM_SECONDS:
        page = await asyncio.to_thread(read, after, 1000)
        for line in page["lines"]:
            yield f"id: {line['seq']}\nevent: line\ndata: {json.dumps(line)}\n\n".encode()
        after = page["next"]
        if page["status"] != status:
            status = page["status"]
            yield f"event: status\ndata: {json.dumps({'status': status})}\n\n".encode()
        if page["complete"]:
            yield f"id: {after}\nevent: end\ndata: {json.dumps({'status': status})}\n\n".encode()
            return
        if await request.is_disconnected():
            return
        if time.monotonic() - last_ping > _PING_SECONDS:
            last_ping = time.monotonic()
            yield b": ping\n\n"
        if not page["lines"] or page["status"] in final:
            await asyncio.sleep(_POLL_SECONDS)
