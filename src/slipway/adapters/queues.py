"""Storage queues behind a small interface, encoded the way the Functions host expects.

host.json sets ``messageEncoding: base64`` for queue triggers, so every message Slipway
sends is base64 text. Received messages are returned as they are on the wire: a consumer
(the local runner) decodes them as the host would, so a message that is not valid base64
fails in the function's delivery, not in the receive of a whole batch.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, QueueServiceClient

from slipway.adapters.responses import response_versions


@dataclass(frozen=True)
class ReceivedMessage:
    """A message taken from a queue; ``pop_receipt`` is needed to delete or update it."""

    id: str
    wire_text: str
    dequeue_count: int
    pop_receipt: str
    insertion_time: datetime | None
    expiration_time: datetime | None
    next_visible_on: datetime | None

    def decoded_body(self) -> bytes:
        """The content as the sender gave it; ValueError when it is not base64."""
        return decode_wire(self.wire_text)


def encode_wire(body: bytes) -> str:
    return base64.b64encode(body).decode("ascii")


def decode_wire(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("message is not valid base64 (host.json messageEncoding is base64)") from None


class QueueBus:
    """Send, receive and delete messages; a queue is created on first use."""

    def __init__(self, service: QueueServiceClient) -> None:
        self._service = service
        self._queues: dict[str, QueueClient] = {}
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return self._service.url

    def _queue(self, name: str, **create_options: Any) -> QueueClient:
        with self._lock:
            client = self._queues.get(name)
            if client is None:
                client = self._service.get_queue_client(name)
                with contextlib.suppress(ResourceExistsError):
                    client.create_queue(**create_options)
                self._queues[name] = client
            return client

    def send_message(
        self, queue: str, payload: Mapping[str, Any] | str | bytes, *, visibility_timeout: int | None = None
    ) -> str:
        """Enqueue ``payload`` (a dict is sent as JSON); returns the message id."""
        if isinstance(payload, bytes):
            body = payload
        elif isinstance(payload, str):
            body = payload.encode("utf-8")
        else:
            body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        return self.send_wire(queue, encode_wire(body), visibility_timeout=visibility_timeout)

    def send_wire(self, queue: str, wire_text: str, *, visibility_timeout: int | None = None) -> str:
        """Enqueue text exactly as given (e.g. a message copied to a poison queue)."""
        sent = self._queue(queue).send_message(wire_text, visibility_timeout=visibility_timeout)
        return str(sent.id)

    def receive_messages(
        self, queue: str, *, max_messages: int, visibility_timeout: int
    ) -> list[ReceivedMessage]:
        # max_messages bounds the whole iteration, not one page, in azure-storage-queue 12.x.
        received = self._queue(queue).receive_messages(
            max_messages=max_messages, visibility_timeout=visibility_timeout
        )
        return [
            ReceivedMessage(
                id=str(m.id),
                wire_text=str(m.content or ""),
                dequeue_count=int(m.dequeue_count or 0),
                pop_receipt=str(m.pop_receipt),
                insertion_time=m.inserted_on,
                expiration_time=m.expires_on,
                next_visible_on=m.next_visible_on,
            )
            for m in received
        ]

    def delete_message(self, queue: str, message: ReceivedMessage) -> None:
        self._queue(queue).delete_message(message.id, message.pop_receipt)

    def update_visibility(self, queue: str, message: ReceivedMessage, *, visibility_timeout: int) -> None:
        """Make a message visible again after ``visibility_timeout`` seconds (a retry delay)."""
        self._queue(queue).update_message(
            message.id, message.pop_receipt, visibility_timeout=visibility_timeout
        )

    def peek_messages(self, queue: str, *, max_messages: int = 32) -> list[str]:
        """The wire text of up to ``max_messages`` messages, without taking them."""
        return [str(m.content or "") for m in self._queue(queue).peek_messages(max_messages=max_messages)]

    def probe(self, queue: str) -> dict[str, str]:
        """Read the queue's properties; returns which server and API version answered."""
        captured: dict[str, str] = {}
        # One retry only: a readiness probe must report a dead service, not wait it out.
        self._queue(queue, retry_total=1).get_queue_properties(
            raw_response_hook=response_versions(captured), retry_total=1
        )
        return captured

    def approximate_count(self, queue: str) -> int:
        return int(self._queue(queue).get_queue_properties().approximate_message_count or 0)
