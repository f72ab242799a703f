"""Workspace routes: the folder tree, files with ETags, folders, moves, the zip, the journal."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from slipway.api.bodies import read_body_capped
from slipway.api.buffered import is_buffered
from slipway.api.security import Editor, Reader
from slipway.workspace.mode import WorkspaceMode
from slipway.workspace.paths import parse_path
from slipway.workspace.service import WorkspaceService
from slipway.workspace.store import Entry

router = APIRouter(prefix="/api/workspace", tags=["workspace"])

# Files are served as data, never as pages of this origin: a script saved in the workspace
# must not run with the session of whoever opens its URL.
_SAFE_FILE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}


def _workspace(request: Request) -> WorkspaceService:
    return request.app.state.services.workspace


class FolderRequest(BaseModel):
    path: str = Field(min_length=1, max_length=4096, description="workspace-relative folder path")


class MoveRequest(BaseModel):
    source: str = Field(alias="from", min_length=1, max_length=4096)
    target: str = Field(alias="to", min_length=1, max_length=4096)


@router.get("/tree", summary="Every folder and file with size, mtime, ETag; the workspace mode")
def tree(request: Request, _: Reader) -> Response:
    service = _workspace(request)
    mode, entries = service.tree()
    rendered = request.app.state.tree_json.render(mode, service.store.max_file_bytes, entries)
    return Response(rendered, media_type="application/json")


class TreeJson:
    """The last tree answer, reused while the store hands back the very same entry objects.

    The store keeps one Entry per file version, so an unchanged workspace yields identical
    objects; holding the previous list keeps their identities from being reused.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[WorkspaceMode, int, list[Entry], bytes] | None = None

    def render(self, mode: WorkspaceMode, max_file_bytes: int, entries: list[Entry]) -> bytes:
        with self._lock:
            last = self._last
        if (
            last is not None
            and last[0] == mode
            and last[1] == max_file_bytes
            and len(last[2]) == len(entries)
            and all(a is b for a, b in zip(last[2], entries, strict=True))
        ):
            return last[3]
        body = {**mode.to_json(), "max_file_bytes": max_file_bytes, "entries": [e.to_json() for e in entries]}
        rendered = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        with self._lock:
            self._last = (mode, max_file_bytes, entries, rendered)
        return rendered


@router.get("/files/{path:path}", summary="A file's bytes, with its ETag and whether it is text")
def read_file(
    path: str,
    request: Request,
    _: Reader,
    if_none_match: Annotated[str | None, Header()] = None,
    download: bool = False,
) -> Response:
    content = _workspace(request).read_file(parse_path(path))
    etag = content.entry.etag or ""
    headers = {
        "ETag": etag,
        "X-Slipway-Text": "true" if content.entry.text else "false",
        **_SAFE_FILE_HEADERS,
    }
    if if_none_match is not None and etag in (tag.strip() for tag in if_none_match.split(",")):
        return Response(status_code=304, headers=headers)
    if download:
        name = path.rsplit("/", 1)[-1]
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name, safe='')}"
    media = "text/plain; charset=utf-8" if content.entry.text else "application/octet-stream"
    return Response(content.data, media_type=media, headers=headers)


@router.put("/files/{path:path}", summary="Create (If-None-Match: *) or update (If-Match) a file")
async def write_file(
    path: str,
    request: Request,
    principal: Editor,
    if_match: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    parts = parse_path(path)
    service = _workspace(request)
    data = await read_body_capped(request, service.store.max_file_bytes, path)
    result = await run_in_threadpool(
        service.write_file, principal.name, parts, data, if_match=if_match, if_none_match=if_none_match
    )
    return JSONResponse(
        result.entry.to_json(),
        status_code=201 if result.created else 200,
        headers={"ETag": result.entry.etag or ""},
    )


@router.delete("/files/{path:path}", summary="Delete a file, or a folder (recursive=true if not empty)")
def delete(
    path: str,
    request: Request,
    principal: Editor,
    recursive: bool = False,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    _workspace(request).delete(principal.name, parse_path(path), recursive=recursive, if_match=if_match)
    return Response(status_code=204)


@router.post("/folders", status_code=201, summary="Make a folder (and missing parents)")
def make_folder(body: FolderRequest, request: Request, principal: Editor) -> dict[str, object]:
    return _workspace(request).make_folder(principal.name, parse_path(body.path)).to_json()


@router.post("/move", summary="Rename or move a file or folder; never replaces an existing entry")
def move(body: MoveRequest, request: Request, principal: Editor) -> dict[str, object]:
    entry = _workspace(request).move(principal.name, parse_path(body.source), parse_path(body.target))
    return entry.to_json()


@router.get(
    "/archive",
    summary="The whole workspace as a zip, streamed",
    description=(
        "Streamed when the API is served directly. Under the Functions host, whose ASGI bridge "
        "buffers whole responses (`X-Slipway-Streaming: buffered`), the zip is built first and "
        "refused with 413 when it would exceed SLIPWAY_ARCHIVE_MAX_MB."
    ),
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The zip"},
        413: {"description": "Under the Functions host: the zip would exceed SLIPWAY_ARCHIVE_MAX_MB"},
    },
)
def archive(
    request: Request,
    _: Reader,
    compression: Annotated[
        Literal["none", "deflate"], Query(description="deflate: smaller, slower")
    ] = "none",
) -> StreamingResponse:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    deflate = compression == "deflate"
    if is_buffered(request):
        limit = request.app.state.services.settings.archive_max_bytes
        body: Iterator[bytes] = _workspace(request).bounded_archive(deflate=deflate, max_bytes=limit)
    else:
        body = _workspace(request).archive(deflate=deflate)
    return StreamingResponse(
        body,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="workspace-{stamp}.zip"'},
    )


@router.get("/journal", summary="The latest workspace changes, newest first")
def journal(
    request: Request, _: Reader, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> dict[str, object]:
    return {"entries": [entry.to_json() for entry in _workspace(request).journal(limit)]}
