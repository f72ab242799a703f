"""The one place where failures become HTTP answers, always ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from slipway.errors import DomainError
from slipway.gitsync.service import GitSyncError
from slipway.workspace import errors
from slipway.workspace.errors import WorkspaceError

log = logging.getLogger("slipway.api")


class ApiError(Exception):
    """An error with its HTTP status and a stable machine-readable code."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    428: "precondition_required",
    429: "too_many_requests",
    503: "unavailable",
}


# Each workspace failure has one status, here and nowhere else.
_WORKSPACE_STATUS: dict[type[WorkspaceError], int] = {
    errors.PathRejected: 400,
    errors.NotFound: 404,
    errors.AlreadyExists: 409,
    errors.NameConflict: 409,
    errors.NotAFile: 409,
    errors.FolderNotEmpty: 409,
    errors.WorkspaceReadOnly: 409,
    errors.EtagMismatch: 412,
    errors.FileTooLarge: 413,
    errors.ArchiveTooLarge: 413,
    errors.PreconditionRequired: 428,
    errors.WorkspaceUnavailable: 503,
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GitSyncError)
    async def _gitsync_error(_: Request, exc: GitSyncError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(DomainError)
    async def _domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(WorkspaceError)
    async def _workspace_error(_: Request, exc: WorkspaceError) -> JSONResponse:
        return error_response(_WORKSPACE_STATUS.get(type(exc), 500), exc.code, exc.message)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_"))
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, code, message, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for item in exc.errors():
            location = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "request"
            problems.append(f"{location}: {item.get('msg', 'invalid')}")
        return error_response(422, "invalid_request", "; ".join(problems) or "invalid request")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the log (App Insights); the caller gets no internals.
        log.exception("unhandled error", extra={"method": request.method, "path": request.url.path})
        return error_response(500, "internal_error", "internal error; the server log has the details")
