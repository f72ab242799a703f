"""Timer triggers, fired on their NCRONTAB schedules as the Functions host fires them.

The host's schedules have six fields, seconds first (``{second} {minute} {hour} {day}
{month} {day-of-week}``); each field takes ``*``, numbers, ranges ``a-b``, steps ``*/n`` or
``a-b/n`` and lists. Names of months and days are not supported here (Slipway uses none).
Schedules are in UTC, as the host's are without WEBSITE_TIME_ZONE.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func

from slipway.local.hostconfig import resolve_app_settings
from slipway.local.invocation import binding, client_input, timer_input
from slipway.local.tasks import run_until_stopped
from slipway.local.worker import Worker

log = logging.getLogger("slipway.local.timers")

_FIELDS = (
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day", 1, 31),
    ("month", 1, 12),
    ("weekday", 0, 6),
)


class ScheduleError(ValueError):
    """A schedule the runner cannot read; the message names the field."""


def _parse_field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                start, end = low, high
            elif "-" in body:
                first, last = body.split("-", 1)
                start, end = int(first), int(last)
            else:
                start = int(body)
                end = high if step_text else start
        except ValueError:
            raise ScheduleError(f"the {name} field {text!r} is not a number, range, step or *") from None
        if step < 1 or not (low <= start <= high and low <= end <= high) or start > end:
            raise ScheduleError(f"the {name} field {text!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday, as in NCRONTAB

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        parts = expression.split()
        if len(parts) != 6:
            raise ScheduleError(f"{expression!r} has {len(parts)} fields; NCRONTAB needs 6, seconds first")
        return cls(
            *(_parse_field(p, name, low, high) for p, (name, low, high) in zip(parts, _FIELDS, strict=True))
        )

    def _day_matches(self, moment: datetime) -> bool:
        weekday = (moment.weekday() + 1) % 7
        return moment.month in self.months and moment.day in self.days and weekday in self.weekdays

    def next_after(self, moment: datetime) -> datetime:
        """The first time strictly after ``moment`` that the schedule names."""
        current = moment.replace(microsecond=0) + timedelta(seconds=1)
        limit = moment + timedelta(days=366 * 5)
        while current <= limit:
            if not self._day_matches(current):
                current = (current + timedelta(days=1)).replace(hour=0, minute=0, second=0)
            elif current.hour not in self.hours:
                current = (current + timedelta(hours=1)).replace(minute=0, second=0)
            elif current.minute not in self.minutes:
                current = (current + timedelta(minutes=1)).replace(second=0)
            elif current.second not in self.seconds:
                current += timedelta(seconds=1)
            else:
                return current
        raise ScheduleError("the schedule never fires")


@dataclass(frozen=True)
class TimerTrigger:
    function: func.Function
    schedule: Schedule
    argument: str
    run_on_startup: bool
    client_name: str | None = None


def timer_triggers(functions: Sequence[func.Function], env: Mapping[str, str]) -> list[TimerTrigger]:
    found = []
    for function in functions:
        trigger = binding(function, "timerTrigger")
        if trigger is not None:
            schedule = Schedule.parse(resolve_app_settings(trigger["schedule"], env))
            client = binding(function, "durableClient")
            found.append(
                TimerTrigger(
                    function,
                    schedule,
                    trigger["name"],
                    bool(trigger.get("runOnStartup")),
                    client["name"] if client else None,
                )
            )
    return found


class TimerRunner:
    """Fires each timer trigger on its schedule until ``stop`` is set."""

    def __init__(
        self,
        triggers: list[TimerTrigger],
        *,
        worker: Worker,
        durable_client_json: Callable[[], str] | None = None,
    ) -> None:
        self._triggers = triggers
        self._worker = worker
        self._client_json = durable_client_json

    async def run(self, stop: asyncio.Event) -> None:
        await run_until_stopped([self._loop(trigger, stop) for trigger in self._triggers], stop)

    async def _loop(self, trigger: TimerTrigger, stop: asyncio.Event) -> None:
        if trigger.run_on_startup:
            await self._fire(trigger, past_due=False)
        while not stop.is_set():
            now = datetime.now(UTC)
            due = trigger.schedule.next_after(now)
            try:
                await asyncio.wait_for(stop.wait(), timeout=(due - now).total_seconds())
                return
            except TimeoutError:
                pass
            # Past due when the previous run kept us beyond the next occurrence, as the host says.
            await self._fire(trigger, past_due=datetime.now(UTC) - due > timedelta(seconds=1))

    async def _fire(self, trigger: TimerTrigger, *, past_due: bool) -> None:
        name = trigger.function.get_function_name()
        inputs: dict[str, Any] = {trigger.argument: timer_input(past_due=past_due)}
        if trigger.client_name:
            if self._client_json is None:
                raise RuntimeError(f"{name} needs a Durable client and the runner has none")
            inputs[trigger.client_name] = client_input(self._client_json())
        try:
            (await self._worker.invoke(name, inputs)).raise_if_failed()
        except Exception:
            # The host logs a failed timer run and waits for the next occurrence; so does the runner.
            log.exception("timer function failed", extra={"function": name})
