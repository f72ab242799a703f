"""Workflow and run routes: list workflows, start runs, follow them, cancel them."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from slipway.api.bodies import read_body_capped
from slipway.api.errors import ApiError
from slipway.api.security import Editor, Reader
from slipway.api.streams import log_response
from slipway.engine.runs import RUN_TERMINAL
from slipway.engine.service import MAX_PARAMS_BYTES, WorkflowService

router = APIRouter(prefix="/api", tags=["workflows"])


def _engine(request: Request) -> WorkflowService:
    return request.app.state.services.workflows


@router.get("/workflows", summary="Workflows in /workspace/workflows, with load errors (file:line)")
def list_workflows(request: Request, _: Reader) -> dict[str, object]:
    return {"workflows": _engine(request).list_workflows()}


@router.get("/workflows/{name}", summary="One workflow: parameters, steps, load error")
def get_workflow(name: str, request: Request, _: Reader) -> dict[str, object]:
    return _engine(request).get_workflow(name)


@router.post("/workflows/{name}/runs", status_code=202, summary='Start a run: {"params": {...}}')
async def start_run(name: str, request: Request, principal: Editor) -> JSONResponse:
    body = await read_body_capped(request, MAX_PARAMS_BYTES, "the run request")
    given: Any = None
    if body.strip():
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise ApiError(422, "invalid_request", f"the body is not JSON: {exc}") from None
        if not isinstance(payload, dict) or set(payload) - {"params"}:
            raise ApiError(422, "invalid_request", 'the body must be {"params": {...}}')
        given = payload.get("params")
    run = await asyncio.to_thread(_engine(request).start_run, name, given, principal.name)
    return JSONResponse(
        {"run": run, "status_url": f"/api/runs/{run['id']}"},
        status_code=202,
        headers={"Location": f"/api/runs/{run['id']}"},
    )


@router.get("/runs", summary="Run history, newest first")
def list_runs(
    request: Request,
    _: Reader,
    workflow: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, object]:
    return {"runs": _engine(request).list_runs(workflow, limit)}


@router.get("/runs/{run_id}", summary="A run with its steps (status, attempts, durations, outputs)")
def get_run(run_id: str, request: Request, _: Reader) -> dict[str, object]:
    return _engine(request).get_run(run_id)


@router.post("/runs/{run_id}/cancel", status_code=202, summary="Cancel a run (kills its running commands)")
def cancel_run(run_id: str, request: Request, principal: Editor) -> dict[str, object]:
    return _engine(request).cancel_run(run_id, principal.name)


@router.get(
    "/runs/{run_id}/logs",
    summary="Log lines after ?after=N; with Accept: text/event-stream, a live stream (SSE)",
    response_model=None,
)
async def run_logs(
    run_id: str,
    request: Request,
    _: Reader,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse | dict[str, object]:
    engine = _engine(request)
    return await log_response(
        request,
        lambda start, size: engine.read_logs(run_id, start, size),
        after=after,
        limit=limit,
        last_event_id=last_event_id,
        final=RUN_TERMINAL,
    )
