"""What the platform and a step's process say to each other: one JSON object per line.

The platform writes the request, then any ``stop``, to the child's stdin. The child writes
events to file descriptor :data:`EVENTS_FD`: ``log`` and ``cmd`` lines, the ``described``
workflow or its ``load_error``, the step's ``result``, the processes it ``killed`` and its
``exit``. Its stdout and stderr are the step's own output, read as they are.
"""

from __future__ import annotations

import json
import os
from typing import Any

EVENTS_FD = 3
# A request carries params, outputs of earlier steps and secrets; nothing larger belongs here.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


def send(fd: int, message: dict[str, Any]) -> None:
    """Write one message whole (a pipe write may be partial when the reader is slow)."""
    data = memoryview(encode(message))
    while data:
        written = os.write(fd, data)
        data = data[written:]


class LineReader:
    """Lines from a pipe, as many as have arrived (a request and a stop may come in one read)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = b""
        self.closed = False

    def read(self) -> list[dict[str, Any]]:
        """Read what is there (call when ``fd`` is readable); the complete messages."""
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.closed = True
        self._buffer += chunk
        if len(self._buffer) > MAX_MESSAGE_BYTES:
            raise ValueError("a message is larger than the limit")
        *lines, self._buffer = self._buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]
