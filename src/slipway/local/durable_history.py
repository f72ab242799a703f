"""The Durable Task wire formats the local harness speaks: history events in, actions out.

The Python Durable SDK replays an orchestrator over a history the Durable extension builds
(Durable Task Framework events serialized as JSON) and answers with the actions the
orchestrator asked for. The harness in :mod:`slipway.local.durable` has to produce that
history byte-for-byte in the shapes the SDK parses, read the actions back, and judge them
the way DTFx does (sequence numbers, non-determinism). Those formats and rules live here so
the harness itself can read as the scheduling logic it is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum, IntEnum
from typing import Any

from azure.durable_functions.models.actions.ActionType import ActionType
from azure.durable_functions.models.history.HistoryEventType import HistoryEventType
from dateutil.parser import isoparse

__all__ = [
    "ActionType",
    "HistoryEventType",
    "Leaf",
    "LeafKind",
    "OrchestrationStatusCode",
    "RetryPolicy",
    "ScheduledLeaf",
    "event",
    "flatten_actions",
    "format_status_time",
    "format_timestamp",
    "nondeterminism_message",
    "parse_timestamp",
    "parse_token",
    "replay_matches",
    "status_history",
]

# The SDK's own datetime format (azure.durable_functions.constants.DATETIME_STRING_FORMAT);
# DTFx writes seven fractional digits, but dateutil (which the SDK parses with) takes six.
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class OrchestrationStatusCode(IntEnum):
    """DTFx ``OrchestrationStatus``: the raw history stores these numbers, the status API the names."""

    Running = 0
    Completed = 1
    ContinuedAsNew = 2
    Failed = 3
    Canceled = 4
    Terminated = 5
    Pending = 6
    Suspended = 7


def format_timestamp(moment: datetime) -> str:
    """A UTC instant as the history carries it (``2026-11-01T10:00:00.000000Z``)."""
    return moment.astimezone(UTC).strftime(_TIMESTAMP_FORMAT)


def format_status_time(moment: datetime) -> str:
    """A UTC instant as the status API shows it (.NET ``ToString("s") + "Z"``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO-8601 instant from an action or event; naive values are taken as UTC."""
    parsed = isoparse(text)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def event(
    event_type: HistoryEventType, *, timestamp: datetime, event_id: int = -1, **fields: Any
) -> dict[str, Any]:
    """One history event in the extension's JSON shape; ``IsPlayed`` is set when it is sent."""
    return {
        "EventType": int(event_type),
        "EventId": event_id,
        "IsPlayed": False,
        "Timestamp": format_timestamp(timestamp),
        **fields,
    }


class LeafKind(Enum):
    """What an orchestrator action asks for, as DTFx tells them apart."""

    ACTIVITY = "activity"
    TIMER = "timer"
    SUB_ORCHESTRATION = "sub-orchestration"
    EXTERNAL_EVENT = "external event"
    CONTINUE_AS_NEW = "continue-as-new"
    UNSUPPORTED = "unsupported"


_KIND_BY_ACTION: dict[int, LeafKind] = {
    ActionType.CALL_ACTIVITY: LeafKind.ACTIVITY,
    ActionType.CALL_ACTIVITY_WITH_RETRY: LeafKind.ACTIVITY,
    ActionType.CREATE_TIMER: LeafKind.TIMER,
    ActionType.CALL_SUB_ORCHESTRATOR: LeafKind.SUB_ORCHESTRATION,
    ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY: LeafKind.SUB_ORCHESTRATION,
    ActionType.WAIT_FOR_EXTERNAL_EVENT: LeafKind.EXTERNAL_EVENT,
    ActionType.CONTINUE_AS_NEW: LeafKind.CONTINUE_AS_NEW,
}

# The DTFx action class each kind becomes, for messages that match what Azure reports.
_DTFX_ACTION_NAME = {
    LeafKind.ACTIVITY: "ScheduleTaskOrchestratorAction",
    LeafKind.TIMER: "CreateTimerOrchestratorAction",
    LeafKind.SUB_ORCHESTRATION: "CreateSubOrchestrationAction",
}


@dataclass(frozen=True)
class Leaf:
    """One non-compound action from the orchestrator's answer (WhenAll/WhenAny unwrapped)."""

    kind: LeafKind
    action: Mapping[str, Any]

    @property
    def action_type(self) -> int:
        return int(self.action["actionType"])

    @property
    def name(self) -> str:
        return str(self.action.get("functionName") or self.action.get("externalEventName") or "")

    @property
    def input_text(self) -> str | None:
        """The JSON text the SDK serialized the input to (``None`` when absent)."""
        value = self.action.get("input")
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value)

    @property
    def instance_id(self) -> str | None:
        value = self.action.get("instanceId")
        return str(value) if value else None

    @property
    def fire_at(self) -> datetime:
        return parse_timestamp(str(self.action["fireAt"]))

    @property
    def is_canceled(self) -> bool:
        return bool(self.action.get("isCanceled"))

    @property
    def retry_options(self) -> Mapping[str, Any] | None:
        options = self.action.get("retryOptions")
        return options if isinstance(options, Mapping) else None

    @property
    def consumes_sequence_number(self) -> bool:
        """Whether DTFx gives this action the next sequence number (external events are keyed by name)."""
        return self.kind in (LeafKind.ACTIVITY, LeafKind.TIMER, LeafKind.SUB_ORCHESTRATION)

    def describe(self) -> str:
        if self.kind is LeafKind.TIMER:
            return f"timer firing at {self.action.get('fireAt')}"
        if self.kind is LeafKind.UNSUPPORTED:
            return f"action of type {_action_type_name(self.action_type)}"
        return f"{self.kind.value} '{self.name}'"


def _action_type_name(value: int) -> str:
    try:
        return ActionType(value).name
    except ValueError:
        return str(value)


def flatten_actions(actions: Sequence[Any]) -> list[Leaf]:
    """The leaf actions of a V2/V3 answer, in the order the extension replays them.

    ``actions`` is the answer's ``actions`` field: one list holding every action since the
    start, compound WhenAll/WhenAny actions nesting their children.
    """
    leaves: list[Leaf] = []

    def walk(items: Sequence[Any]) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item)
                continue
            action_type = int(item["actionType"])
            if action_type in (ActionType.WHEN_ALL, ActionType.WHEN_ANY):
                walk(item.get("compoundActions") or [])
                continue
            kind = _KIND_BY_ACTION.get(action_type, LeafKind.UNSUPPORTED)
            leaves.append(Leaf(kind, item))

    walk(actions)
    return leaves


@dataclass(frozen=True)
class RetryPolicy:
    """The retry options of a ``*WithRetry`` action, read as the extension's converter reads them.

    The Python SDK only sends the first interval and the attempt count; the extension also
    understands a backoff coefficient, a maximum interval and an overall timeout, so they are
    honoured when present.
    """

    first_interval: timedelta
    max_attempts: int
    backoff_coefficient: float = 1.0
    max_interval: timedelta | None = None
    timeout: timedelta | None = None

    @classmethod
    def from_json(cls, options: Mapping[str, Any]) -> RetryPolicy:
        def milliseconds(key: str) -> timedelta | None:
            value = options.get(key)
            return None if value is None else timedelta(milliseconds=float(value))

        first = milliseconds("firstRetryIntervalInMilliseconds")
        if first is None:
            raise ValueError("retryOptions.firstRetryIntervalInMilliseconds is required")
        return cls(
            first_interval=first,
            max_attempts=int(options.get("maxNumberOfAttempts", 1)),
            backoff_coefficient=float(options.get("backoffCoefficient", 1.0)),
            max_interval=milliseconds("maxRetryIntervalInMilliseconds"),
            timeout=milliseconds("retryTimeoutInMilliseconds"),
        )

    def delay_after(self, failed_attempt: int) -> timedelta:
        """The wait after attempt ``failed_attempt`` (1-based) failed, as DTFx's RetryInterceptor computes it."""
        factor = math.pow(self.backoff_coefficient, failed_attempt - 1)
        delay_ms = self.first_interval / timedelta(milliseconds=1) * factor
        if self.max_interval is not None and delay_ms >= self.max_interval / timedelta(milliseconds=1):
            return self.max_interval
        return timedelta(milliseconds=delay_ms)


@dataclass(frozen=True)
class ScheduledLeaf:
    """What history records for an id-consuming action, for the non-determinism check."""

    kind: LeafKind
    name: str
    sequence_id: int
    instance_id: str | None = None


def nondeterminism_message(expected: ScheduledLeaf, actual: Leaf | None) -> str:
    """DTFx's words for a replay that no longer matches its history (NonDeterministicOrchestrationException)."""
    tail = "Was a change made to the orchestrator code after this instance had already started running?"
    seq = expected.sequence_id
    if expected.kind is LeafKind.ACTIVITY:
        if actual is None:
            detail = (
                f"A previous execution of this orchestration scheduled an activity task with sequence ID {seq} "
                f"and name '{expected.name}' (version ''), but the current replay execution hasn't (yet?) "
                f"scheduled this task. {tail}"
            )
        elif actual.kind is not LeafKind.ACTIVITY:
            detail = (
                f"A previous execution of this orchestration scheduled an activity task with sequence number "
                f"{seq} named '{expected.name}', but the current orchestration replay instead produced a "
                f"{_dtfx_name(actual)} action ({actual.describe()}) with this sequence number. {tail}"
            )
        else:
            detail = (
                f"A previous execution of this orchestration scheduled an activity task with sequence number "
                f"{seq} named '{expected.name}', but the current orchestration replay instead scheduled an "
                f"activity task named '{actual.name}' with this sequence number. {tail}"
            )
    elif expected.kind is LeafKind.TIMER:
        if actual is None:
            detail = (
                f"A previous execution of this orchestration scheduled a timer task with sequence number {seq} "
                f"but the current replay execution hasn't (yet?) scheduled this task. {tail}"
            )
        else:
            detail = (
                f"A previous execution of this orchestration scheduled a timer task with sequence number {seq} "
                f"but the current orchestration replay instead produced a {_dtfx_name(actual)} action "
                f"({actual.describe()}) with this sequence number. {tail}"
            )
    else:
        described = (
            f"A previous execution of this orchestration scheduled a sub-orchestration task with sequence ID "
            f"{seq} and name '{expected.name}' (version '', instance ID '{expected.instance_id}')"
        )
        if actual is None:
            detail = (
                f"{described}, but the current replay execution hasn't (yet?) scheduled this task. {tail}"
            )
        elif actual.kind is not LeafKind.SUB_ORCHESTRATION:
            detail = (
                f"{described}, but the current orchestration replay instead produced a {_dtfx_name(actual)} "
                f"action ({actual.describe()}) at this sequence number. {tail}"
            )
        else:
            detail = (
                f"{described}, but the current orchestration replay instead scheduled a sub-orchestration task "
                f"with name {actual.name} at this sequence number. {tail}"
            )
    return f"Non-Deterministic workflow detected: {detail}"


def _dtfx_name(leaf: Leaf) -> str:
    return _DTFX_ACTION_NAME.get(leaf.kind, _action_type_name(leaf.action_type))


def replay_matches(expected: ScheduledLeaf, actual: Leaf) -> bool:
    """DTFx's check: same kind of action, and for tasks the same name (case-insensitive)."""
    if actual.kind is not expected.kind:
        return False
    if expected.kind is LeafKind.TIMER:
        return True
    return actual.name.lower() == expected.name.lower()


def _event_type_name(value: int) -> str:
    return "".join(part.capitalize() for part in HistoryEventType(value).name.split("_"))


def parse_token(text: Any) -> Any:
    """The extension's ParseToJToken: JSON if it parses, the raw string otherwise."""
    if not isinstance(text, str):
        return text
    stripped = text.strip()
    if not stripped:
        return ""
    try:
        return json.loads(stripped)
    except ValueError:
        return text


def status_history(
    events: Sequence[Mapping[str, Any]], *, show_output: bool, show_input: bool
) -> list[dict[str, Any]]:
    """The ``historyEvents`` of a status answer, transformed as the extension's client does.

    Scheduling events are folded into their completions (``FunctionName``, ``ScheduledTime``),
    episode markers are dropped, event types become names and results are shown only on request.
    """
    items = [dict(item) for item in events]
    scheduled: dict[str, tuple[int, dict[str, Any]]] = {}
    dropped: set[int] = set()
    for index, item in enumerate(items):
        kind = HistoryEventType(int(item["EventType"]))
        item["EventType"] = _event_type_name(kind)
        if kind in (HistoryEventType.TASK_SCHEDULED, HistoryEventType.SUB_ORCHESTRATION_INSTANCE_CREATED):
            scheduled[f"{kind.name}_{item['EventId']}"] = (index, item)
            item.pop("Version", None)
        elif kind in (
            HistoryEventType.TASK_COMPLETED,
            HistoryEventType.TASK_FAILED,
            HistoryEventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
            HistoryEventType.SUB_ORCHESTRATION_INSTANCE_FAILED,
        ):
            prefix = (
                HistoryEventType.TASK_SCHEDULED
                if kind in (HistoryEventType.TASK_COMPLETED, HistoryEventType.TASK_FAILED)
                else HistoryEventType.SUB_ORCHESTRATION_INSTANCE_CREATED
            )
            found = scheduled.get(f"{prefix.name}_{item.get('TaskScheduledId')}")
            if found is not None:
                found_index, origin = found
                item["ScheduledTime"] = origin["Timestamp"]
                item["FunctionName"] = origin.get("Name")
                if show_input:
                    item["Input"] = origin.get("Input")
                dropped.add(found_index)
            item.pop("TaskScheduledId", None)
            succeeded = kind in (
                HistoryEventType.TASK_COMPLETED,
                HistoryEventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
            )
            if succeeded:
                if show_output:
                    item["Result"] = parse_token(item.get("Result"))
                else:
                    item.pop("Result", None)
        elif kind is HistoryEventType.EXECUTION_STARTED:
            item["FunctionName"] = item.pop("Name", None)
            for key in ("OrchestrationInstance", "ParentInstance", "Version", "Tags"):
                item.pop(key, None)
        elif kind is HistoryEventType.EXECUTION_COMPLETED:
            item["OrchestrationStatus"] = OrchestrationStatusCode(int(item["OrchestrationStatus"])).name
            if show_output:
                item["Result"] = parse_token(item.get("Result"))
            else:
                item.pop("Result", None)
        elif kind is HistoryEventType.TIMER_FIRED:
            item.pop("TimerId", None)
        elif kind in (HistoryEventType.ORCHESTRATOR_STARTED, HistoryEventType.ORCHESTRATOR_COMPLETED):
            dropped.add(index)
        if not show_input:
            item.pop("Input", None)
        item.pop("EventId", None)
        item.pop("IsPlayed", None)
    return [item for index, item in enumerate(items) if index not in dropped]
