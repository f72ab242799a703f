"""The parts of host.json the local runner honours, read the way the host reads them."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from slipway.hostlimits import HostLimitError, parse_function_timeout

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?$")
_APP_SETTING = re.compile(r"%([^%]+)%")


class HostConfigError(ValueError):
    """host.json is missing, malformed, or names an app setting that is not set."""


def parse_timespan(value: str) -> timedelta:
    """A .NET TimeSpan string such as ``00:00:30`` or ``1.02:00:00``."""
    match = _TIMESPAN.match(value.strip())
    if not match:
        raise HostConfigError(f"{value!r} is not a TimeSpan like 00:00:30")
    days, hours, minutes, seconds, fraction = match.groups()
    return timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds),
        microseconds=int((fraction or "0")[:6].ljust(6, "0")),
    )


def resolve_app_settings(value: str, env: Mapping[str, str]) -> str:
    """Replace ``%NAME%`` with the app setting, as the host does for binding expressions."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise HostConfigError(f"app setting {name} is referenced as %{name}% but is not set")
        return env[name]

    return _APP_SETTING.sub(substitute, value)


@dataclass(frozen=True)
class QueueOptions:
    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: timedelta = timedelta(0)
    max_polling_interval: timedelta = timedelta(minutes=1)
    message_encoding: str = "base64"


@dataclass(frozen=True)
class HostConfig:
    # None: "-1", no limit (Premium and Dedicated plans allow it).
    function_timeout: timedelta | None
    route_prefix: str
    queues: QueueOptions
    task_hub: str
    max_concurrent_activities: int
    max_concurrent_orchestrators: int


def load_host_config(app_root: Path, env: Mapping[str, str]) -> HostConfig:
    path = app_root / "host.json"
    try:
        raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HostConfigError(f"{path} does not exist: the app root must hold host.json") from None
    except json.JSONDecodeError as exc:
        raise HostConfigError(f"{path} is not valid JSON: {exc}") from None
    if raw.get("version") != "2.0":
        raise HostConfigError(f'{path}: version must be "2.0"')
    extensions = raw.get("extensions", {})
    queues = extensions.get("queues", {})
    defaults = QueueOptions()
    durable = extensions.get("durableTask", {})
    return HostConfig(
        function_timeout=_function_timeout(raw.get("functionTimeout", "00:30:00")),
        route_prefix=str(extensions.get("http", {}).get("routePrefix", "api")).strip("/"),
        queues=QueueOptions(
            batch_size=int(queues.get("batchSize", defaults.batch_size)),
            new_batch_threshold=int(queues.get("newBatchThreshold", defaults.new_batch_threshold)),
            max_dequeue_count=int(queues.get("maxDequeueCount", defaults.max_dequeue_count)),
            visibility_timeout=parse_timespan(queues.get("visibilityTimeout", "00:00:00")),
            max_polling_interval=parse_timespan(queues.get("maxPollingInterval", "00:01:00")),
            message_encoding=str(queues.get("messageEncoding", "base64")).lower(),
        ),
        task_hub=resolve_app_settings(str(durable.get("hubName", "TestHubName")), env),
        max_concurrent_activities=int(durable.get("maxConcurrentActivityFunctions", 10)),
        max_concurrent_orchestrators=int(durable.get("maxConcurrentOrchestratorFunctions", 10)),
    )


def _function_timeout(value: Any) -> timedelta | None:
    """Read as the app reads it (slipway.hostlimits), so the runner enforces what steps are sized to."""
    try:
        seconds = parse_function_timeout(value)
    except HostLimitError as exc:
        raise HostConfigError(str(exc)) from None
    return None if seconds is None else timedelta(seconds=seconds)
