"""GitHub routes: status, connect (with a dry run), disconnect, sync now, the sync journal."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, SecretStr

from slipway.api.bodies import read_body_capped
from slipway.api.security import Admin, Reader
from slipway.gitsync.service import GitSyncService
from slipway.gitsync.webhook import MAX_BODY_BYTES

router = APIRouter(prefix="/api/github", tags=["github"])


def _gitsync(request: Request) -> GitSyncService:
    return request.app.state.services.gitsync


class ConnectRequest(BaseModel):
    repository: str = Field(min_length=1, max_length=300, description="owner/name or a github.com URL")
    branch: str = Field(default="main", min_length=1, max_length=200)
    token: SecretStr = Field(
        description="a personal access token that can read contents (and manage webhooks)"
    )
    dry_run: bool = False


@router.get("", summary="The connection: repository, branch, webhook, last sync")
def status(request: Request, _: Reader) -> dict[str, object]:
    return _gitsync(request).status()


@router.post("/connect", summary="Connect a repository (dry_run: what the first sync would change)")
def connect(body: ConnectRequest, request: Request, principal: Admin) -> dict[str, object]:
    return _gitsync(request).connect(
        principal.name, body.repository, body.branch, body.token.get_secret_value(), dry_run=body.dry_run
    )


@router.post("/disconnect", summary="Disconnect: remove the webhook and secrets; files stay, editing resumes")
def disconnect(request: Request, principal: Admin) -> dict[str, object]:
    return _gitsync(request).disconnect(principal.name)


@router.post(
    "/sync",
    status_code=202,
    summary="Queue a full sync now (repairs a drifted workspace); says what it waits for",
)
def sync_now(request: Request, _: Admin) -> dict[str, object]:
    return _gitsync(request).request_sync("manual")


@router.post("/sync/cancel", summary="Cancel the running sync (at its next phase) and drop the waiting ones")
def cancel_sync(request: Request, principal: Admin) -> dict[str, object]:
    return _gitsync(request).cancel_sync(principal.name)


@router.get("/syncs", summary="The sync journal, newest first; `next` is the cursor of the page after")
def syncs(
    request: Request,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[str | None, Query(max_length=40, pattern=r"^[0-9]{13}-[0-9a-f]{1,12}$")] = None,
) -> dict[str, object]:
    records, cursor = _gitsync(request).sync_page(limit, after)
    return {"entries": [record.to_json() for record in records], "next": cursor}


@router.post("/webhook", summary="GitHub push webhook (HMAC-signed; no principal)")
async def webhook(request: Request) -> JSONResponse:
    # The native `github_webhook` function serves this path under the Functions host; this
    # route gives the same answer should the ASGI catch-all ever receive the request instead.
    body = await read_body_capped(request, MAX_BODY_BYTES, "the webhook body")
    # Storage calls: off the event loop, which every async function of the worker shares.
    answer = await asyncio.to_thread(
        request.app.state.services.webhook.handle, {k.lower(): v for k, v in request.headers.items()}, body
    )
    return JSONResponse(answer.body, status_code=answer.status)
