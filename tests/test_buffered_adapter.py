"""Under the Functions host the API is served through ``func.AsgiMiddleware``, which buffers whole
responses: here the catch-all function is called with a ``func.HttpRequest`` as the worker calls
it, and nothing streams (live logs answer one JSON page, the archive is bounded)."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from typing import Any

import azure.functions as func
import pytest

from slipway.bootstrap import build_services
from slipway.config import load_settings
from slipway.functions import create_function_app
from slipway.functions.http import ASGI_FUNCTION


class _Context:
    invocation_id = "test-invocation"
    function_name = ASGI_FUNCTION
    function_directory = "."
    trace_context = None
    retry_context = None
    thread_local_storage = None


@pytest.fixture
def host(base_env: dict[str, str]) -> Any:
    app = create_function_app({**base_env, "SLIPWAY_DEV_PRINCIPAL": "true", "SLIPWAY_ARCHIVE_MAX_MB": "1"})
    function = next(f for f in app.get_functions() if f.get_function_name() == ASGI_FUNCTION)
    handler = function.get_user_function()

    def call(path: str, headers: dict[str, str] | None = None) -> func.HttpResponse:
        request = func.HttpRequest("GET", f"http://localhost{path}", headers=headers or {}, body=b"")
        return asyncio.run(asyncio.wait_for(handler(request, _Context()), timeout=20))

    return call


def test_a_log_stream_request_answers_at_once_with_a_json_page(host: Any, base_env: dict[str, str]) -> None:
    # A queued run of the example workflow seeded into the empty workspace: its log never
    # completes here (nothing runs it), so a stream would stay open for STREAM_SECONDS.
    started = build_services(load_settings(base_env)).workflows.start_run("hello", {}, "test")
    before = time.monotonic()
    response = host(f"/api/runs/{started['id']}/logs", {"Accept": "text/event-stream"})
    assert time.monotonic() - before < 10
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["X-Slipway-Streaming"] == "buffered"
    page = response.get_body()
    assert b'"lines"' in page and b'"complete"' in page


def test_an_archive_over_the_limit_is_refused_with_413_naming_the_limit(
    host: Any, base_env: dict[str, str]
) -> None:
    workspace = base_env["SLIPWAY_WORKSPACE_DIR"]
    with open(f"{workspace}/big.bin", "wb") as big:
        big.write(b"\0" * (1024 * 1024 + 1))
    response = host("/api/workspace/archive")
    assert response.status_code == 413
    assert b"over 1 MB (SLIPWAY_ARCHIVE_MAX_MB)" in response.get_body()


def test_an_archive_under_the_limit_is_a_valid_zip(host: Any, base_env: dict[str, str]) -> None:
    workspace = base_env["SLIPWAY_WORKSPACE_DIR"]
    with open(f"{workspace}/notes.txt", "w") as notes:
        notes.write("kept\n")
    response = host("/api/workspace/archive")
    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.get_body())) as archive:
        assert archive.read("notes.txt") == b"kept\n"
