"""Deployment and site routes: deploy, follow, cancel, retry, roll back, bind to a branch."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from slipway.api.bodies import read_body_capped
from slipway.api.errors import ApiError
from slipway.api.security import Admin, Reader
from slipway.api.streams import log_response
from slipway.deploy.records import FINAL
from slipway.deploy.service import MAX_REQUEST_BYTES, DeploymentService

router = APIRouter(prefix="/api", tags=["deployments"])

_SITE = r"^[a-z0-9][a-z0-9-]{0,38}[a-z0-9]$"


def _service(request: Request) -> DeploymentService:
    return request.app.state.services.deployments


async def _json_body(request: Request, *, optional: bool = False) -> Any:
    body = await read_body_capped(request, MAX_REQUEST_BYTES, "the request")
    if not body.strip():
        if optional:
            return None
        raise ApiError(422, "invalid_request", "the body must be a JSON object")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", f"the body is not JSON: {exc}") from None


def _accepted(deployment: dict[str, Any]) -> JSONResponse:
    url = f"/api/deployments/{deployment['id']}"
    return JSONResponse(
        {"deployment": deployment, "status_url": url}, status_code=202, headers={"Location": url}
    )


@router.post("/deployments", status_code=202, summary="Queue a deployment of a site (admin)")
async def create_deployment(request: Request, principal: Admin) -> JSONResponse:
    payload = await _json_body(request)
    return _accepted(await asyncio.to_thread(_service(request).request, payload, principal.name))


@router.get("/deployments", summary="Deployment history, newest first (of one site with ?site=)")
def list_deployments(
    request: Request,
    _: Reader,
    site: Annotated[str | None, Query(pattern=_SITE)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, object]:
    return {"deployments": _service(request).list(site, limit)}


@router.get("/deployments/{deployment_id}", summary="A deployment: status, steps, durations, estimate")
def get_deployment(deployment_id: str, request: Request, _: Reader) -> dict[str, object]:
    return _service(request).get(deployment_id)


@router.get(
    "/deployments/{deployment_id}/logs",
    summary="Log lines after ?after=N; with Accept: text/event-stream, a live stream (SSE)",
    response_model=None,
)
async def deployment_logs(
    deployment_id: str,
    request: Request,
    _: Reader,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse | dict[str, object]:
    service = _service(request)
    return await log_response(
        request,
        lambda start, size: service.logs(deployment_id, start, size),
        after=after,
        limit=limit,
        last_event_id=last_event_id,
        final=FINAL,
    )


@router.post(
    "/deployments/{deployment_id}/cancel",
    status_code=202,
    summary="Cancel a deployment that has not started publishing (kills its build)",
)
def cancel_deployment(deployment_id: str, request: Request, principal: Admin) -> dict[str, object]:
    return _service(request).cancel(deployment_id, principal.name)


@router.post("/deployments/{deployment_id}/retry", status_code=202, summary="Deploy the same inputs again")
def retry_deployment(deployment_id: str, request: Request, principal: Admin) -> JSONResponse:
    return _accepted(_service(request).retry(deployment_id, principal.name))


@router.get("/sites", summary="Sites with their state, live deployment and branch binding")
def list_sites(request: Request, _: Reader) -> dict[str, object]:
    return {"sites": _service(request).sites()}


@router.get("/sites/{site}", summary="One site")
def get_site(site: str, request: Request, _: Reader) -> dict[str, object]:
    return _service(request).site(site)


@router.post(
    "/sites/{site}/rollback",
    status_code=202,
    summary='Republish an earlier artifact without building: {"deployment_id"} or the last good one',
)
async def rollback_site(site: str, request: Request, principal: Admin) -> JSONResponse:
    payload = await _json_body(request, optional=True)
    return _accepted(await asyncio.to_thread(_service(request).rollback, site, payload, principal.name))


@router.put(
    "/sites/{site}/binding", summary="Deploy the site on every push to a branch of the connected repository"
)
async def bind_site(site: str, request: Request, _: Admin) -> dict[str, object]:
    payload = await _json_body(request)
    return await asyncio.to_thread(_service(request).bind, site, payload)


@router.delete("/sites/{site}/binding", summary="Stop deploying the site on push")
def unbind_site(site: str, request: Request, _: Admin) -> dict[str, object]:
    return _service(request).unbind(site)
