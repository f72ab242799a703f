"""Request bodies read with a limit: refused as soon as they pass it, never buffered beyond."""

from __future__ import annotations

from fastapi import Request

from slipway.workspace.errors import FileTooLarge


async def read_body_capped(request: Request, limit: int, what: str) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise FileTooLarge(f"{what} would be {declared} bytes; the limit is {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise FileTooLarge(f"{what} is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
