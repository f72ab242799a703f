"""The Functions host's time limit, read from host.json, and what it leaves a step or a build.

``functionTimeout`` in host.json bounds every invocation, activities included. An invocation
that passes it is not just failed: the host restarts the worker process, and every other
invocation running on it dies too (Azure/azure-functions-host#8720). So Slipway ends its own
work first: a workflow step attempt and a deploy build may run for at most the host's limit
less :data:`BOOKKEEPING_SECONDS`, the time kept for what follows them in the same invocation
(the log flush, the step or deployment record).

host.json lives in the app root, the folder of ``function_app.py`` (``AzureWebJobsScriptRoot``
under the host). When it sets no ``functionTimeout`` (or cannot be found) the host's default
applies; Slipway runs on Elastic Premium or Dedicated plans only (it needs a custom container
and an Azure Files mount, which Consumption plans do not offer), where that default is 30
minutes. ``-1`` means unbounded (Premium and Dedicated allow it); a step then still stops at
:data:`MAX_STEP_SECONDS`, the SDK's own upper bound.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

HOST_JSON = "host.json"
BOOKKEEPING_SECONDS = 120.0
# The host's default functionTimeout on the Premium and Dedicated plans Slipway runs on.
DEFAULT_FUNCTION_TIMEOUT_SECONDS = 30 * 60.0
# The SDK's upper bound on a step's timeout (slipway.sdk refuses more when a step is declared).
MAX_STEP_SECONDS = 24 * 3600.0
UNBOUNDED = "-1"

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?$")


class HostLimitError(ValueError):
    """host.json's functionTimeout is not a TimeSpan, or leaves no time for a step."""


def parse_function_timeout(value: object) -> float | None:
    """Seconds of a ``functionTimeout`` value (``hh:mm:ss``, ``d.hh:mm:ss``, optional
    fraction), or None for ``-1`` (unbounded)."""
    text = str(value).strip() if isinstance(value, str | int) else ""
    if text == UNBOUNDED:
        return None
    match = _TIMESPAN.match(text)
    if match is not None:
        days, hours, minutes, seconds, fraction = match.groups()
        if int(hours) < 24 and int(minutes) < 60 and int(seconds) < 60:
            total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
            total += float(f"0.{fraction}") if fraction else 0.0
            if total > 0:
                return total
    raise HostLimitError(
        f"functionTimeout {value!r} is not a positive TimeSpan such as 00:05:00 or 1.00:00:00, "
        "nor -1 (unbounded)"
    )


@dataclass(frozen=True)
class HostLimits:
    """The host's ``functionTimeout`` (None: unbounded) and where it came from."""

    function_timeout: float | None = DEFAULT_FUNCTION_TIMEOUT_SECONDS
    source: str = "the host's default functionTimeout of 00:30:00 (host.json sets none)"

    @property
    def step_seconds(self) -> float:
        """The longest one step attempt, or one deploy build, may run."""
        if self.function_timeout is None:
            return MAX_STEP_SECONDS
        return min(MAX_STEP_SECONDS, self.function_timeout - BOOKKEEPING_SECONDS)

    def explain(self) -> str:
        """Why :attr:`step_seconds` is what it is, for error messages and logs."""
        if self.function_timeout is None:
            return f"{self.source} is unbounded; a step still stops at {MAX_STEP_SECONDS:g} s"
        return f"{self.source} less {BOOKKEEPING_SECONDS:g} s kept for bookkeeping"


def read_host_limits(app_root: Path) -> HostLimits:
    """The limits in ``app_root``'s host.json; the plan's default when it is not there or sets
    no functionTimeout. Raises :class:`HostLimitError` for a malformed file or value."""
    path = app_root / HOST_JSON
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return HostLimits(source=f"the host's default functionTimeout of 00:30:00 ({path} not found)")
    except (OSError, ValueError) as exc:
        raise HostLimitError(f"{path} cannot be read as JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("functionTimeout") is None:
        return HostLimits(source=f"the host's default functionTimeout of 00:30:00 ({path} sets none)")
    value = raw["functionTimeout"]
    try:
        seconds = parse_function_timeout(value)
    except HostLimitError as exc:
        raise HostLimitError(f"{path}: {exc}") from None
    limits = HostLimits(seconds, f"host.json's functionTimeout of {value}")
    if seconds is not None and limits.step_seconds < 1:
        raise HostLimitError(
            f"{path}: functionTimeout {value} leaves no time for a workflow step or a build: "
            f"Slipway keeps {BOOKKEEPING_SECONDS:g} s of it for bookkeeping, so set more than that"
        )
    return limits
