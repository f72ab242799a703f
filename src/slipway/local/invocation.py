"""The host's side of an invocation: the inputs it sends the worker, and how it reads the answer.

The worker (:mod:`slipway.local.worker`) converts these with the app's ``azure.functions``
converters, exactly as under the host; this module only shapes the messages the host would
send: a queue message as string (or bytes) data with its delivery metadata, a timer's JSON,
the Durable client's binding JSON, an HTTP request as ``RpcHttp``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import azure.functions as func

from slipway.local.worker import PROTOS, Invocation, TypedData


def binding(function: func.Function, binding_type: str) -> dict[str, Any] | None:
    """The JSON of the function's first binding of ``binding_type``, if any."""
    for item in json.loads(function.get_function_json())["bindings"]:
        if item.get("type") == binding_type:
            return dict(item)
    return None


def text_or_bytes(body: bytes) -> Any:
    """A message body as the host passes it: a string when it is UTF-8, bytes otherwise."""
    try:
        return TypedData(string=body.decode("utf-8"))
    except UnicodeDecodeError:
        return TypedData(bytes=body)


def _time(value: datetime | None) -> Any:
    return TypedData(json=json.dumps(value.isoformat() if value else None))


def queue_metadata(
    *,
    message_id: str,
    dequeue_count: int,
    pop_receipt: str,
    insertion_time: datetime | None,
    expiration_time: datetime | None,
    next_visible: datetime | None,
) -> dict[str, Any]:
    """The queue trigger's metadata, as the host's QueueTriggerBindingStrategy names it."""
    return {
        "Id": TypedData(string=message_id),
        "DequeueCount": TypedData(json=str(dequeue_count)),
        "PopReceipt": TypedData(string=pop_receipt),
        "InsertionTime": _time(insertion_time),
        "ExpirationTime": _time(expiration_time),
        "NextVisibleTime": _time(next_visible),
    }


def timer_input(*, past_due: bool) -> Any:
    return TypedData(
        json=json.dumps({"Schedule": {"AdjustForDST": True}, "ScheduleStatus": None, "IsPastDue": past_due})
    )


def client_input(client_json: str) -> Any:
    return TypedData(string=client_json)


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def http_answer(answer: Invocation) -> HttpAnswer:
    """The host's response for an HTTP invocation: a failure is a bare 500, as the host sends."""
    value = answer.value
    if not answer.ok or value is None or value.WhichOneof("data") != "http":
        return HttpAnswer(500, [], b"")
    http = value.http
    headers = [
        (str(k).lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in (http.headers or {}).items()
    ]
    body = http.body
    kind = body.WhichOneof("data") if body is not None else None
    raw = getattr(body, kind) if kind else b""
    data = raw if isinstance(raw, bytes) else str(raw).encode("utf-8")
    for cookie in getattr(http, "cookies", None) or []:
        headers.append((b"set-cookie", f"{cookie.name}={cookie.value}".encode("latin-1")))
    return HttpAnswer(int(http.status_code or 200), headers, data)


def http_request_input(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    params: Mapping[str, str],
    body: bytes,
) -> Any:
    """An HTTP trigger's input (``RpcHttpBodyOnly``: the body as bytes)."""
    return TypedData(
        http=PROTOS.RpcHttp(
            method=method,
            url=url,
            headers=dict(headers),
            query=dict(query),
            params=dict(params),
            body=TypedData(bytes=body),
        )
    )
