"""The Durable extension's HTTP API, served over the local harness for the real durable client.

Queue-triggered functions get a ``durableClient`` binding: a JSON document with the
extension's URLs, from which the SDK's ``DurableOrchestrationClient`` makes plain HTTP calls
(``POST orchestrators/{name}``, ``GET instances/{id}``, ``POST .../raiseEvent/{event}``,
``POST .../terminate``, ``DELETE instances?createdTimeFrom=...`` to purge). Serving those endpoints over a :class:`DurableHarness` lets the
local runner hand the app's own queue-trigger code the real client, unchanged. Status codes
and bodies follow the extension's ``HttpApiHandler`` because the client decides what to raise
from them (see each handler).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from slipway.local.durable import (
    TERMINAL_STATUSES,
    DurableHarness,
    InstanceAlreadyRunningError,
    InstanceGoneError,
    InstanceNotFoundError,
    InvalidInstanceIdError,
    OrchestratorNotFoundError,
)
from slipway.local.durable_history import parse_timestamp

__all__ = ["DEFAULT_PREFIXES", "client_binding_json", "create_rpc_app", "management_urls"]

# Where the extension listens: its local RPC endpoint, and the public webhook path that the
# management URLs (create_check_status_response) point at.
DEFAULT_PREFIXES: tuple[str, ...] = ("/durabletask", "/runtime/webhooks/durabletask")

_INSTANCE_PLACEHOLDER = "INSTANCEID"
_RUNNING_STATUSES = frozenset({"Running", "Pending", "ContinuedAsNew", "Suspended"})


def client_binding_json(
    rpc_base_url: str,
    task_hub: str,
    *,
    connection_name: str = "Storage",
    webhook_base_url: str | None = None,
) -> str:
    """The ``durableClient`` binding value the host passes to a function, pointing at this API.

    ``rpc_base_url`` is where :func:`create_rpc_app` is served, including one of its prefixes
    (e.g. ``http://127.0.0.1:7072/durabletask/``). ``webhook_base_url`` is what the management
    URLs handed to users start with; by default the same server.
    """
    rpc = rpc_base_url if rpc_base_url.endswith("/") else rpc_base_url + "/"
    base = (webhook_base_url or rpc).rstrip("/")
    creation = f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]"
    binding = {
        "taskHubName": task_hub,
        "creationUrls": {
            "createNewInstancePostUri": creation,
            "createAndWaitOnNewInstancePostUri": (
                f"{creation}?timeout={{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}"
            ),
        },
        "managementUrls": management_urls(base, _INSTANCE_PLACEHOLDER, task_hub, connection_name),
        "baseUrl": base,
        "requiredQueryStringParameters": "",
        "rpcBaseUrl": rpc,
        "httpBaseUrl": "",
    }
    return json.dumps(binding)


def management_urls(
    base_url: str, instance_id: str, task_hub: str, connection_name: str = "Storage"
) -> dict[str, str]:
    """The extension's HttpManagementPayload for one instance (the 202 body of a start)."""
    base = base_url.rstrip("/")
    query = f"taskHub={quote(task_hub, safe='')}&connection={quote(connection_name, safe='')}"
    # The placeholder is substituted by the SDK client, so it must stay literal in the binding.
    instance_path = instance_id if instance_id == _INSTANCE_PLACEHOLDER else quote(instance_id, safe="")
    instance = f"{base}/instances/{instance_path}"
    return {
        "id": instance_id,
        "statusQueryGetUri": f"{instance}?{query}",
        "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{query}",
        "terminatePostUri": f"{instance}/terminate?reason={{text}}&{query}",
        "rewindPostUri": f"{instance}/rewind?reason={{text}}&{query}",
        "purgeHistoryDeleteUri": f"{instance}?{query}",
        "restartPostUri": f"{instance}/restart?{query}",
        "suspendPostUri": f"{instance}/suspend?reason={{text}}&{query}",
        "resumePostUri": f"{instance}/resume?reason={{text}}&{query}",
    }


def create_rpc_app(harness: DurableHarness, *, prefixes: Sequence[str] = DEFAULT_PREFIXES) -> Starlette:
    """An ASGI app answering the durable client's calls from ``harness``, under each of ``prefixes``."""
    routes: list[Route] = []
    for prefix in prefixes:
        api = _Api(harness, prefix.rstrip("/"))
        p = api.prefix
        routes += [
            Route(f"{p}/orchestrators/{{functionName}}", api.start, methods=["POST"]),
            Route(f"{p}/orchestrators/{{functionName}}/{{instanceId}}", api.start, methods=["POST"]),
            Route(f"{p}/instances", api.list_instances, methods=["GET"]),
            Route(f"{p}/instances/", api.list_instances, methods=["GET"]),
            Route(f"{p}/instances", api.purge_instances, methods=["DELETE"]),
            Route(f"{p}/instances/", api.purge_instances, methods=["DELETE"]),
            Route(f"{p}/instances/{{instanceId}}", api.status, methods=["GET"]),
            Route(f"{p}/instances/{{instanceId}}", api.unsupported, methods=["DELETE"]),
            Route(
                f"{p}/instances/{{instanceId}}/raiseEvent/{{eventName}}", api.raise_event, methods=["POST"]
            ),
            Route(f"{p}/instances/{{instanceId}}/{{operation}}", api.operation, methods=["POST"]),
            Route(f"{p}/entities/{{rest:path}}", api.unsupported, methods=["GET", "POST", "DELETE"]),
        ]
    return Starlette(routes=routes)


class _Api:
    """The handlers for one prefix (the management URLs they return repeat that prefix)."""

    def __init__(self, harness: DurableHarness, prefix: str) -> None:
        self.harness = harness
        self.prefix = prefix

    def _base_url(self, request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}{self.prefix}"

    async def start(self, request: Request) -> Response:
        """202 with the management URLs; 400 for an unknown function or bad id; 500 if it is running.

        The 500 is what Azure answers for a duplicate of a running instance (DTFx's
        InvalidOperationException is not mapped to anything better), and the SDK client raises
        ``Exception(<the error body>)`` for it.
        """
        name = request.path_params["functionName"]
        instance_id = request.path_params.get("instanceId") or None
        body = await request.body()
        raw_input: Any = None
        if body.strip():
            try:
                raw_input = json.loads(body)
            except ValueError as exc:
                return _error(400, "Invalid JSON content", exc, "Newtonsoft.Json.JsonReaderException")
        try:
            instance_id = self.harness.start_new_raw(name, instance_id, raw_input)
        except (OrchestratorNotFoundError, InvalidInstanceIdError) as exc:
            return _error(
                400, "One or more of the arguments submitted is incorrect", exc, "System.ArgumentException"
            )
        except InstanceAlreadyRunningError as exc:
            return _error(
                500,
                "Something went wrong while processing your request",
                exc,
                "System.InvalidOperationException",
            )
        payload = management_urls(self._base_url(request), instance_id, self.harness.task_hub)
        headers = {"Location": payload["statusQueryGetUri"], "Retry-After": "10"}
        return JSONResponse(payload, status_code=202, headers=headers)

    async def status(self, request: Request) -> Response:
        """202 while running, 200 when finished (500 for failures only if asked), 404 if unknown."""
        query = request.query_params
        instance_id = request.path_params["instanceId"]
        status = self.harness.get_status(
            instance_id,
            show_history=_flag(query.get("showHistory"), default=False),
            show_history_output=_flag(query.get("showHistoryOutput"), default=False),
            show_input=_flag(query.get("showInput"), default=True),
        )
        if status is None:
            # An empty body: the client then returns a falsy DurableOrchestrationStatus.
            return Response(status_code=404)
        headers: dict[str, str] = {}
        runtime_status = status["runtimeStatus"]
        if runtime_status in _RUNNING_STATUSES:
            code = 202
            headers = {"Location": str(request.url), "Retry-After": "5"}
        elif runtime_status == "Failed" and _flag(
            query.get("returnInternalServerErrorOnFailure"), default=False
        ):
            code = 500
        else:
            code = 200
        return JSONResponse(status, status_code=code, headers=headers)

    async def list_instances(self, request: Request) -> Response:
        """All statuses matching the query, paged with ``top`` and ``x-ms-continuation-token``."""
        query = request.query_params
        try:
            wanted, created_from, created_to = _instance_filter(query)
        except ValueError as exc:
            return _error(
                400, "One or more of the arguments submitted is incorrect", exc, "System.ArgumentException"
            )
        statuses = self.harness.list_statuses(
            runtime_statuses=wanted,
            created_from=created_from,
            created_to=created_to,
            instance_id_prefix=query.get("instanceIdPrefix"),
            show_input=_flag(query.get("showInput"), default=True),
        )
        start = _int(request.headers.get("x-ms-continuation-token"), 0)
        top = _int(query.get("top"), 0)
        end = start + top if top > 0 else len(statuses)
        headers = {"x-ms-continuation-token": str(end) if end < len(statuses) else "null"}
        return JSONResponse(statuses[start:end], status_code=200, headers=headers)

    async def purge_instances(self, request: Request) -> Response:
        """``purge_instance_history_by``: 200 ``{"instancesDeleted": n}``, 404 when none was, 400
        without ``createdTimeFrom`` (the extension's HandleDeleteHistoryWithFiltersRequestAsync)."""
        try:
            wanted, created_from, created_to = _instance_filter(request.query_params)
        except ValueError as exc:
            return _error(
                400, "One or more of the arguments submitted is incorrect", exc, "System.ArgumentException"
            )
        if created_from is None:
            return JSONResponse("Please provide value for 'createdTimeFrom' parameter.", status_code=400)
        deleted = self.harness.purge_instances(
            created_from=created_from, created_to=created_to, runtime_statuses=wanted
        )
        if deleted == 0:
            return Response(status_code=404)
        return JSONResponse({"instancesDeleted": deleted}, status_code=200)

    async def raise_event(self, request: Request) -> Response:
        """202 once queued; 404 unknown; 410 finished; 400 unless the body is JSON."""
        instance_id = request.path_params["instanceId"]
        status = self.harness.get_status(instance_id, show_input=False)
        if status is None:
            return Response(status_code=404)
        if status["runtimeStatus"] in TERMINAL_STATUSES:
            return Response(status_code=410)
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return _error(400, "Only application/json request content is supported")
        body = await request.body()
        try:
            data = json.loads(body) if body.strip() else None
        except ValueError as exc:
            return _error(400, "Invalid JSON content", exc, "Newtonsoft.Json.JsonReaderException")
        try:
            self.harness.raise_event_raw(instance_id, request.path_params["eventName"], data)
        except InstanceNotFoundError:
            return Response(status_code=404)
        except InstanceGoneError:
            return Response(status_code=410)
        return Response(status_code=202)

    async def operation(self, request: Request) -> Response:
        """``terminate`` (202; 404 unknown; 410 finished); the other operations are not offered locally."""
        if request.path_params["operation"].lower() != "terminate":
            return await self.unsupported(request)
        try:
            self.harness.terminate(request.path_params["instanceId"], request.query_params.get("reason"))
        except InstanceNotFoundError:
            return Response(status_code=404)
        except InstanceGoneError:
            return Response(status_code=410)
        return Response(status_code=202)

    async def unsupported(self, request: Request) -> Response:
        """Rewind, restart, suspend, resume, purging one instance and entities: a clear 501
        instead of a silent 404."""
        return _error(
            501, f"The local durable harness does not implement {request.method} {request.url.path}."
        )


def _error(
    status_code: int, message: str, exc: BaseException | None = None, exception_type: str | None = None
) -> Response:
    """ASP.NET's CreateErrorResponse body, which the SDK client reads ``ExceptionMessage`` from."""
    body: dict[str, Any] = {"Message": message}
    if exc is not None:
        body["ExceptionMessage"] = str(exc)
        body["ExceptionType"] = exception_type or type(exc).__name__
        body["StackTrace"] = None
    return JSONResponse(body, status_code=status_code)


def _flag(value: str | None, *, default: bool) -> bool:
    """.NET ``bool.TryParse``: ``true``/``false`` in any case, anything else keeps the default."""
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return default


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _instance_filter(query: Any) -> tuple[list[str] | None, datetime | None, datetime | None]:
    """The client API's instance filter: ``runtimeStatus`` (repeated or comma-separated),
    ``createdTimeFrom``, ``createdTimeTo``; ValueError for a malformed time."""
    wanted = [part for value in query.getlist("runtimeStatus") for part in value.split(",") if part]
    return wanted or None, _time(query.get("createdTimeFrom")), _time(query.get("createdTimeTo"))


def _time(value: str | None) -> datetime | None:
    return parse_timestamp(value) if value else None
