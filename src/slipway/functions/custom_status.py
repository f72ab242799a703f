"""How big the Durable extension finds an orchestration's custom status.

The Python SDK sends the custom status inside the orchestrator's JSON answer; the extension
parses it into a ``JToken``, writes it again with ``ToString(Formatting.None)`` (Newtonsoft:
no spaces, non-ASCII characters as they are, only ``"``, ``\\``, control characters and
U+0085/U+2028/U+2029 escaped) and counts ``Encoding.Unicode.GetByteCount`` of that text, 2 bytes
per UTF-16 code unit. Over ``LIMIT_KB`` the orchestration fails (``MessagePayloadDataConverter``).
"""

from __future__ import annotations

import json
from typing import Any

LIMIT_KB = 16
# Newtonsoft escapes these three beyond what json.dumps(ensure_ascii=False) escapes.
_NEWTONSOFT_EXTRA_ESCAPES = ("\u0085", "\u2028", "\u2029")


def utf16_size(status: Any) -> int:
    """The bytes the extension counts for ``status``."""
    text = json.dumps(status, separators=(",", ":"), ensure_ascii=False)
    units = len(text.encode("utf-16-le")) // 2
    units += 5 * sum(text.count(char) for char in _NEWTONSOFT_EXTRA_ESCAPES)  # "\u2028" is 6 units
    return 2 * units
