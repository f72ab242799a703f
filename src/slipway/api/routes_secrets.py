"""Workflow secret routes: editors list the names; admins set and delete values.

No route returns a value, and none logs one: the body is parsed here and handed on.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from slipway.api.bodies import read_body_capped
from slipway.api.errors import ApiError
from slipway.api.security import Admin, Editor
from slipway.workflow_secrets import MAX_VALUE_BYTES, NAME_PATTERN, WorkflowSecrets

router = APIRouter(prefix="/api/secrets", tags=["secrets"])

# JSON may spell each character of the value as a 6-byte \uXXXX escape.
_MAX_BODY_BYTES = 6 * MAX_VALUE_BYTES + 1024
# Checked by the service, for its clear message; documented here.
_Name = Annotated[str, Path(description=f"like an environment variable: {NAME_PATTERN}")]
_SET_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["value"],
                    "additionalProperties": False,
                    "properties": {
                        "value": {
                            "type": "string",
                            "minLength": 1,
                            "description": f"UTF-8 text, at most {MAX_VALUE_BYTES} bytes; write-only",
                        }
                    },
                }
            }
        },
    },
}


def _secrets(request: Request) -> WorkflowSecrets:
    return request.app.state.services.workflow_secrets


@router.get("", summary="Workflow secret names (never values), with when each last changed")
def list_secrets(request: Request, _: Editor) -> dict[str, object]:
    return {"secrets": _secrets(request).list_secrets()}


@router.put(
    "/{name}",
    summary='Set or replace a workflow secret: {"value": "..."} (the value is never returned)',
    openapi_extra=_SET_BODY,
)
async def set_secret(name: _Name, request: Request, principal: Admin) -> dict[str, object]:
    secrets = _secrets(request)
    secrets.check_name(name)  # a bad name is refused before the body is read
    body = await read_body_capped(request, _MAX_BODY_BYTES, "the secret request")
    try:
        payload = json.loads(body)
    except ValueError:
        # Not the decoder's message: it can quote the text around the error, i.e. the value.
        raise ApiError(422, "invalid_request", 'the body must be JSON: {"value": "..."}') from None
    if not isinstance(payload, dict) or set(payload) != {"value"}:
        raise ApiError(422, "invalid_request", 'the body must be {"value": "..."}')
    replaced = await asyncio.to_thread(secrets.set_secret, name, payload["value"], actor=principal.name)
    return {"name": name, "replaced": replaced}


@router.delete(
    "/{name}",
    status_code=204,
    summary="Delete a workflow secret (404 when there is none)",
    response_class=Response,
)
def delete_secret(name: _Name, request: Request, principal: Admin) -> Response:
    _secrets(request).delete_secret(name, actor=principal.name)
    return Response(status_code=204)
