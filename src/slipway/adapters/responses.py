"""What a storage response says about the service that sent it (for health details)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def response_versions(captured: dict[str, str]) -> Callable[[Any], None]:
    """A ``raw_response_hook`` recording the ``Server`` header and the ``x-ms-version`` used."""

    def hook(response: Any) -> None:
        headers = response.http_response.headers
        captured["server"] = headers.get("Server", "")
        captured["api_version"] = headers.get("x-ms-version", "")

    return hook
