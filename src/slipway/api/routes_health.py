"""Health routes: liveness (public), readiness and details (reader)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from slipway.api.security import Reader
from slipway.health import HealthService

router = APIRouter(prefix="/api/health", tags=["health"])


def _health(request: Request) -> HealthService:
    return request.app.state.services.health


@router.get("", summary="Liveness: the process answers; touches no dependency")
def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: storage reachable, folders writable with free space")
def ready(request: Request, _: Reader) -> JSONResponse:
    checks = _health(request).check_ready()
    failed = [c for c in checks if not c.ok]
    body = {
        "status": "ready" if not failed else "unavailable",
        "checks": [c.to_json(with_info=False) for c in checks],
    }
    if failed:
        body["error"] = {
            "code": "not_ready",
            "message": "; ".join(f"{c.name}: {c.detail}" for c in failed),
        }
    return JSONResponse(body, status_code=503 if failed else 200)


@router.get("/detailed", summary="Every dependency with latency and version information")
def detailed(request: Request, _: Reader) -> JSONResponse:
    checks, runtime = _health(request).check_detailed()
    failed = [c for c in checks if not c.ok]
    body = {
        "status": "ready" if not failed else "degraded",
        "runtime": runtime,
        "checks": [c.to_json(with_info=True) for c in checks],
    }
    return JSONResponse(body, status_code=200)
