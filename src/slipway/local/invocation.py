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
from datetime import UTC, datetime
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


def _time(value: datetime) -> Any:
    return TypedData(json=json.dumps(value.isoformat()))


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
    metadata = {
        "Id": TypedData(string=message_id),
        "DequeueCount": TypedData(json=str(dequeue_count)),
        "PopReceipt": TypedData(string=pop_receipt),
    }
    # A time the message does not carry is left out, as the host leaves it out.
    for name, value in (
        ("InsertionTime", insertion_time),
        ("ExpirationTime", expiration_time),
        ("NextVisibleTime", next_visible),
    ):
        if value is not None:
            metadata[name] = _time(value)
    return metadata


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
        headers.append((b"set-cookie", _set_cookie(cookie).encode("latin-1")))
    return HttpAnswer(int(http.status_code or 200), headers, data)


_SAME_SITE = {1: "Lax", 2: "Strict", 3: "None"}


def _set_cookie(cookie: Any) -> str:
    """An RpcHttpCookie written back as the host writes it: a Set-Cookie header with its attributes."""

    def given(field: str) -> Any:
        nullable = getattr(cookie, field, None)
        return getattr(nullable, "value", None) if nullable is not None else None

    parts = [f"{cookie.name}={cookie.value}"]
    if given("domain"):
        parts.append(f"domain={given('domain')}")
    if given("path"):
        parts.append(f"path={given('path')}")
    expires = given("expires")
    if expires is not None:
        moment = datetime.fromtimestamp(getattr(expires, "seconds", 0), tz=UTC)
        parts.append(f"expires={moment:%a, %d %b %Y %H:%M:%S} GMT")
    if given("max_age") is not None:
        parts.append(f"max-age={int(given('max_age'))}")
    if given("secure"):
        parts.append("secure")
    same_site = _SAME_SITE.get(int(getattr(cookie, "same_site", 0) or 0))
    if same_site:
        parts.append(f"samesite={same_site}")
    if given("http_only"):
        parts.append("httponly")
    return "; ".join(parts)


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
