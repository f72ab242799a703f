"""Durable orchestrations of a real Functions app, run without the Functions host.

`make dev` and the tests need orchestrations to behave as they do in Azure, and there is no
Functions host or Durable extension on a developer's machine. This harness plays the
extension's and the Durable Task Framework's part: it keeps each instance's history, feeds
the orchestrator function the same JSON the extension sends (episode by episode, replaying
from the start each time through the SDK's own replay code), reads back the actions, gives
them DTFx sequence numbers, runs activities, timers, retries and sub-orchestrations, and
delivers their results as the history events DTFx would append. It copies Azure's behaviour,
including the awkward parts (the docstrings below name them); where it departs from Azure,
the code says so and why.

Two ways to drive it: :meth:`DurableHarness.run_until_idle` (tests: with a
:class:`VirtualClock`, timers fire by moving virtual time forward, so a retry with
minute-long delays takes milliseconds while the history records the real ``FireAt`` times)
and :meth:`DurableHarness.serve` (the local runner: real clock, runs until stopped).
"""

from __future__ import annotations

import asyncio
import concurrent.futures.thread
import contextvars
import functools
import heapq
import inspect
import itertools
import json
import logging
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import azure.functions as func
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus
from azure.durable_functions.models.utils.df_serialization import df_dumps
from azure.functions.durable_functions import ActivityTriggerConverter
from azure.functions.meta import Datum

from slipway.functions.catalog import indexed_functions, trigger_type
from slipway.local.durable_history import (
    HistoryEventType,
    Leaf,
    LeafKind,
    OrchestrationStatusCode,
    RetryPolicy,
    ScheduledLeaf,
    event,
    flatten_actions,
    format_status_time,
    format_timestamp,
    nondeterminism_message,
    parse_token,
    replay_matches,
    status_history,
)
from slipway.local.worker import TypedData, Worker, WorkerRestarted

__all__ = [
    "TERMINAL_STATUSES",
    "Clock",
    "DurableHarness",
    "DurableHarnessError",
    "InstanceAlreadyRunningError",
    "InstanceGoneError",
    "InstanceNotFoundError",
    "InvalidInstanceIdError",
    "OrchestratorNotFoundError",
    "RuntimeStatus",
    "SystemClock",
    "VirtualClock",
]

log = logging.getLogger("slipway.local.durable")

RuntimeStatus = OrchestrationRuntimeStatus

TERMINAL_STATUSES: frozenset[str] = frozenset(
    {RuntimeStatus.Completed.value, RuntimeStatus.Failed.value, RuntimeStatus.Terminated.value}
)

# The extension's default ``overridableExistingInstanceStates`` (NonRunningStates): starting an
# instance id that is in one of these states is refused; any other state is replaced.
_NOT_OVERRIDABLE = frozenset(
    {RuntimeStatus.Pending, RuntimeStatus.Running, RuntimeStatus.ContinuedAsNew, RuntimeStatus.Suspended}
)

_OUT_OF_PROC_MARKER = "\n\n$OutOfProcData$:"
_PLUMBING_FILES = frozenset({__file__, concurrent.futures.thread.__file__})
_MAX_INSTANCE_ID_LENGTH = 256
_MAX_CUSTOM_STATUS_KB = 16

# What the extension tells the Python SDK about itself (OrchestrationTriggerAttributeBindingProvider):
# schema V2 for old SDKs, V3 for current ones, and the Azure Storage backend's 6-day timer limit,
# which makes the SDK split longer timers into 3-day pieces.
_CONTEXT_CONSTANTS: dict[str, Any] = {
    "upperSchemaVersion": 1,
    "upperSchemaVersionNew": 2,
    "longRunningTimerIntervalDuration": "3.00:00:00",
    "maximumShortTimerDuration": "6.00:00:00",
    "defaultHttpAsyncRequestSleepTimeMillseconds": 30000,
}


class Clock(Protocol):
    """Where the harness reads the time: episode timestamps and timer due times come from it."""

    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


class SystemClock:
    """The wall clock; timers really wait."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class VirtualClock:
    """A clock that only moves when told to, or when the harness is idle and a timer is due.

    With it, :meth:`DurableHarness.run_until_idle` jumps to the earliest pending timer instead
    of sleeping, so the histories keep realistic ``FireAt`` values at no cost in test time.
    """

    def __init__(self, start: datetime | None = None) -> None:
        moment = start or datetime.now(UTC)
        if moment.tzinfo is None:
            raise ValueError("VirtualClock needs a timezone-aware start")
        self._now = moment.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance_to(self, moment: datetime) -> None:
        """Move to ``moment``; a moment in the past leaves the clock where it is."""
        with self._lock:
            if moment > self._now:
                self._now = moment

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._now += max(delta, timedelta(0))


class DurableHarnessError(Exception):
    """Base of the errors the harness's client-side operations raise."""


class OrchestratorNotFoundError(DurableHarnessError, LookupError):
    """No orchestrator function has this name (the extension answers 400 to the client)."""


class InvalidInstanceIdError(DurableHarnessError, ValueError):
    """The instance id breaks the extension's rules (leading ``@``, ``/ \\ # ?``, control characters, length)."""


class InstanceAlreadyRunningError(DurableHarnessError):
    """Start refused: an instance with this id is pending or running (DTFx dedupe statuses)."""

    def __init__(self, instance_id: str, status: str) -> None:
        self.instance_id = instance_id
        self.status = status
        # DTFx's Azure Storage backend's own words, which the client sees in the error body.
        super().__init__(f"An Orchestration instance with the status {status} already exists.")


class InstanceNotFoundError(DurableHarnessError, LookupError):
    """No instance has this id (HTTP 404 at the extension's API)."""


class InstanceGoneError(DurableHarnessError):
    """The instance already completed, failed or was terminated (HTTP 410 at the extension's API)."""


@dataclass(frozen=True)
class _ParentLink:
    instance_id: str
    execution_id: str
    task_id: int
    name: str


@dataclass
class _Retry:
    """One ``*_with_retry`` call, driven as DTFx's RetryInterceptor drives it."""

    kind: LeafKind
    name: str
    input_text: str | None
    explicit_instance_id: str | None
    policy: RetryPolicy
    first_attempt_at: datetime
    task_id: int
    attempt: int = 1
    timer_id: int | None = None
    expired: bool = False
    last_reason: str | None = None
    last_details: str | None = None


@dataclass
class _Instance:
    instance_id: str
    name: str
    execution_id: str
    input: Any
    created: datetime
    last_updated: datetime
    parent: _ParentLink | None = None
    status: OrchestrationRuntimeStatus = RuntimeStatus.Pending
    custom_status: Any = None
    output: Any = None
    failure_details: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    inbox: deque[dict[str, Any]] = field(default_factory=deque)
    scheduled: list[ScheduledLeaf] = field(default_factory=list)
    next_id: int = 0
    retries_by_task: dict[int, _Retry] = field(default_factory=dict)
    retries_by_timer: dict[int, _Retry] = field(default_factory=dict)
    canceled_timers: set[int] = field(default_factory=set)
    busy: bool = False

    @property
    def terminal(self) -> bool:
        return self.status.value in TERMINAL_STATUSES


@dataclass(frozen=True)
class _ActivityWork:
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input_text: str | None


@dataclass(order=True)
class _TimerEntry:
    fire_at: datetime
    order: int
    instance_id: str = field(compare=False)
    execution_id: str = field(compare=False)
    timer_id: int = field(compare=False)


@dataclass(frozen=True)
class _Outcome:
    """What one call of the orchestrator function answered."""

    state: Mapping[str, Any] | None
    error: str | None = None
    details: str | None = None


@dataclass(frozen=True)
class _Episode:
    """One episode taken from an instance's inbox: what the orchestrator is called with, and
    what applying its answer needs (the execution it belongs to: continue-as-new starts another)."""

    instance: _Instance
    execution_id: str
    function: func.Function
    payload: dict[str, Any]
    now: datetime
    started: dict[str, Any]
    batch: list[dict[str, Any]]


class DurableHarness:
    """Runs the orchestrators and activities of ``app`` through the real Durable SDK replay code.

    The client-side operations (:meth:`start_new`, :meth:`raise_event`, :meth:`terminate`,
    :meth:`get_status`, ...) are thread-safe and may be called from any thread or coroutine,
    also while :meth:`serve` runs on another loop; they only queue work and wake the driver.
    Nothing runs until :meth:`run_until_idle` or :meth:`serve` drives the harness.
    """

    def __init__(
        self,
        app: func.FunctionRegister,
        *,
        clock: Clock | None = None,
        max_parallel_activities: int = 8,
        max_parallel_orchestrators: int = 8,
        task_hub: str = "SlipwayLocal",
        worker: Worker | None = None,
        carry_over: str = "after",
    ) -> None:
        """``worker``: invoke orchestrators and activities through the real worker's dispatch
        (the local runner); without one, episodes run on the driver's loop and activities on a
        pool of their own, which keeps virtual-clock tests deterministic.

        ``carry_over``: which events raised in the episode that continued as new reach the
        next generation. "after" (DTFx in-process) carries those the orchestrator had not
        reached; "episode" carries every one of that episode, the one it consumed included:
        a stricter assumption than any backend documents, for tests of orchestrators that
        must be right whatever an out-of-process shim carries over."""
        if carry_over not in ("after", "episode"):
            raise ValueError("carry_over is 'after' or 'episode'")
        self._carry_over = carry_over
        if max_parallel_activities < 1:
            raise ValueError("max_parallel_activities must be at least 1")
        self.task_hub = task_hub
        self._worker = worker
        self._max_orchestrators = max(1, max_parallel_orchestrators)
        self._clock: Clock = clock or SystemClock()
        self._max_parallel = max_parallel_activities
        self._orchestrators, self._activities = _durable_functions(app)
        self._lock = threading.RLock()
        self._instances: dict[str, _Instance] = {}
        self._ready: dict[str, None] = {}
        self._activity_queue: deque[_ActivityWork] = deque()
        self._timers: list[_TimerEntry] = []
        self._timer_order = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._driving = False

    @property
    def clock(self) -> Clock:
        return self._clock

    # ----------------------------------------------------------------- client side

    def start_new(self, name: str, instance_id: str | None = None, input: Any = None) -> str:
        """Start orchestrator ``name``, as ``DurableOrchestrationClient.start_new`` would.

        ``input`` is serialized the way the SDK client serializes it (``df_dumps``), so the
        orchestrator's ``get_input()`` and the status's ``input`` look as they do in Azure
        (the status shows the JSON text, a string). Returns the instance id (a new GUID when
        none is given). A pending or running instance with the same id makes this raise
        :class:`InstanceAlreadyRunningError`; a finished one is replaced by a fresh instance.
        """
        return self.start_new_raw(name, instance_id, None if input is None else df_dumps(input))

    def start_new_raw(self, name: str, instance_id: str | None, raw_input: Any) -> str:
        """Start an instance with ``raw_input`` being the JSON value the extension's HTTP API received."""
        with self._lock:
            if name.lower() not in self._orchestrators:
                raise OrchestratorNotFoundError(self._unknown_orchestrator_message(name))
            if instance_id:
                _check_instance_id(instance_id)
            else:
                instance_id = uuid.uuid4().hex
            existing = self._instances.get(instance_id)
            if existing is not None and existing.status in _NOT_OVERRIDABLE:
                raise InstanceAlreadyRunningError(instance_id, existing.status.value)
            self._create_instance(instance_id, name, raw_input, parent=None)
        self._notify()
        return instance_id

    def raise_event(self, instance_id: str, name: str, data: Any = None) -> None:
        """Raise event ``name`` as ``DurableOrchestrationClient.raise_event`` would.

        The SDK client sends ``json.dumps(data)`` as a JSON body, which the extension stores as
        a JSON *string*: the orchestrator's ``wait_for_external_event`` therefore yields the
        JSON text of ``data``, not ``data`` itself (azure-functions-durable-python#295). Events
        raised before the orchestrator waits for them are kept until it does.
        """
        self.raise_event_raw(instance_id, name, json.dumps(data))

    def raise_event_raw(self, instance_id: str, name: str, raw_data: Any) -> None:
        """Raise an event whose data is the JSON value the extension's HTTP API received."""
        if not name:
            raise ValueError("event name must be a non-empty string")
        with self._lock:
            instance = self._existing_active(instance_id)
            instance.inbox.append(
                event(
                    HistoryEventType.EVENT_RAISED,
                    timestamp=self._clock.now(),
                    Name=name,
                    Input=_serialize_token(raw_data),
                )
            )
            self._ready[instance_id] = None
        self._notify()

    def terminate(self, instance_id: str, reason: str | None) -> None:
        """Terminate a pending or running instance: it ends Terminated with ``reason`` as its output.

        Like DTFx, the termination is processed by the driver (the status changes on its next
        turn), the orchestrator code is not run again, and results that arrive later are dropped.
        """
        with self._lock:
            instance = self._existing_active(instance_id)
            instance.inbox.append(
                event(HistoryEventType.EXECUTION_TERMINATED, timestamp=self._clock.now(), Input=reason)
            )
            self._ready[instance_id] = None
        self._notify()

    def get_status(
        self,
        instance_id: str,
        *,
        show_history: bool = False,
        show_history_output: bool = False,
        show_input: bool = True,
    ) -> dict[str, Any] | None:
        """The instance's status in the extension's status JSON shape, or ``None`` if unknown."""
        with self._lock:
            instance = self._instances.get(instance_id)
            if instance is None:
                return None
            return self._status_json(instance, show_history, show_history_output, show_input)

    def list_statuses(
        self,
        *,
        runtime_statuses: Collection[str] | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        instance_id_prefix: str | None = None,
        show_input: bool = False,
    ) -> list[dict[str, Any]]:
        """The statuses of all instances matching every given condition, oldest first."""
        with self._lock:
            found = sorted(self._instances.values(), key=lambda item: item.created)
            return [
                self._status_json(instance, False, False, show_input)
                for instance in found
                if _matches(instance, runtime_statuses, created_from, created_to)
                and (instance_id_prefix is None or instance.instance_id.startswith(instance_id_prefix))
            ]

    def history(self, instance_id: str) -> list[dict[str, Any]]:
        """The raw history of the instance's current execution, as sent to the orchestrator."""
        with self._lock:
            instance = self._instances.get(instance_id)
            if instance is None:
                raise InstanceNotFoundError(f"No instance with ID '{instance_id}' found.")
            return json.loads(json.dumps(instance.history))

    async def wait_for_status(
        self,
        instance_id: str,
        timeout: float,
        statuses: Collection[str] = TERMINAL_STATUSES,
        *,
        poll_interval: float = 0.02,
    ) -> dict[str, Any]:
        """Wait until the instance reaches one of ``statuses`` (terminal ones by default).

        Something else must drive the harness meanwhile (:meth:`serve` on this or another loop).
        Raises :class:`TimeoutError` with the last status seen.
        """
        deadline = time.monotonic() + timeout
        while True:
            status = self.get_status(instance_id)
            if status is not None and status["runtimeStatus"] in statuses:
                return status
            if time.monotonic() >= deadline:
                raise TimeoutError(f"instance {instance_id!r} did not reach {sorted(statuses)}: {status}")
            await asyncio.sleep(poll_interval)

    # ----------------------------------------------------------------- driving

    async def run_until_idle(self) -> None:
        """Drive all work until nothing can progress.

        Waits for running activities; with a :class:`VirtualClock`, jumps to the next pending
        timer when nothing else is left, with a real clock, waits for it. Returns when every
        instance is finished or waits for something only the outside can give (an event).
        """
        await self._drive(stop=None)

    async def serve(self, stop: asyncio.Event) -> None:
        """Drive the harness until ``stop`` is set, waiting for new work when idle (local runner).

        Activities still running when it stops are run again by the next :meth:`serve` or
        :meth:`run_until_idle`, as DTFx redelivers abandoned work items.
        """
        await self._drive(stop=stop)

    async def _drive(self, *, stop: asyncio.Event | None) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._driving:
                raise RuntimeError("the durable harness is already being driven")
            self._driving = True
            self._loop = loop
            self._wake = asyncio.Event()
        wake = self._wake
        executor = ThreadPoolExecutor(max_workers=self._max_parallel, thread_name_prefix="durable-activity")
        slots = asyncio.Semaphore(self._max_parallel)
        episode_slots = asyncio.Semaphore(self._max_orchestrators)
        running: dict[asyncio.Task[None], _ActivityWork] = {}
        episodes: set[asyncio.Task[None]] = set()
        virtual = isinstance(self._clock, VirtualClock)
        try:
            while stop is None or not stop.is_set():
                wake.clear()
                for work in self._take_activity_work():
                    task = loop.create_task(self._run_activity(work, executor, slots))
                    running[task] = work
                    task.add_done_callback(lambda done: (running.pop(done, None), wake.set()))
                self._fire_due_timers()
                if self._worker is not None:
                    # Episodes are invocations of the orchestrator function, dispatched by the worker.
                    for instance_id in self._take_ready():
                        episode = loop.create_task(self._run_episode_dispatched(instance_id, episode_slots))
                        episodes.add(episode)
                        episode.add_done_callback(lambda done: (episodes.discard(done), wake.set()))
                elif self._run_ready_episodes():
                    # Let new activities start and other coroutines on this loop (an RPC app) run.
                    await asyncio.sleep(0)
                    continue
                with self._lock:
                    if self._activity_queue or (self._ready and self._worker is None):
                        continue
                next_fire = self._next_timer()
                if running or episodes:
                    await _wait(wake, stop, None if virtual else _seconds_until(next_fire, self._clock))
                elif next_fire is not None:
                    if virtual:
                        assert isinstance(self._clock, VirtualClock)
                        self._clock.advance_to(next_fire)
                        continue
                    await _wait(wake, stop, _seconds_until(next_fire, self._clock))
                elif stop is None:
                    return
                else:
                    await _wait(wake, stop, None)
        finally:
            unfinished = [work for task, work in running.items() if not task.done()]
            for task in [*running, *episodes]:
                task.cancel()
            await asyncio.gather(*list(running), *episodes, return_exceptions=True)
            with self._lock:
                self._activity_queue.extendleft(reversed(unfinished))
                self._driving = False
                self._loop = None
                self._wake = None
            executor.shutdown(wait=False, cancel_futures=True)

    def _notify(self) -> None:
        """Wake the driver, from its own loop or from any other thread."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is loop:
            wake.set()
        else:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:
                # The driver's loop closed in between; the work stays queued for the next drive.
                log.debug("durable driver loop is closed; work stays queued")

    def _take_activity_work(self) -> list[_ActivityWork]:
        with self._lock:
            taken = list(self._activity_queue)
            self._activity_queue.clear()
            return taken

    def _take_ready(self) -> list[str]:
        with self._lock:
            ready = [i for i in self._ready if not (i in self._instances and self._instances[i].busy)]
            for instance_id in ready:
                del self._ready[instance_id]
            return ready

    def _run_ready_episodes(self) -> bool:
        with self._lock:
            ready = list(self._ready)
            self._ready.clear()
        for instance_id in ready:
            self._run_episode(instance_id)
        return bool(ready)

    # ----------------------------------------------------------------- timers

    def _fire_due_timers(self) -> None:
        now = self._clock.now()
        with self._lock:
            while self._timers and self._timers[0].fire_at <= now:
                entry = heapq.heappop(self._timers)
                instance = self._live_instance(entry.instance_id, entry.execution_id)
                if instance is None or entry.timer_id in instance.canceled_timers:
                    continue
                instance.inbox.append(
                    event(
                        HistoryEventType.TIMER_FIRED,
                        timestamp=now,
                        TimerId=entry.timer_id,
                        FireAt=format_timestamp(entry.fire_at),
                    )
                )
                self._ready[instance.instance_id] = None

    def _next_timer(self) -> datetime | None:
        """When the earliest timer that still matters is due; canceled and orphaned ones are dropped."""
        with self._lock:
            while self._timers:
                head = self._timers[0]
                instance = self._live_instance(head.instance_id, head.execution_id)
                if instance is not None and head.timer_id not in instance.canceled_timers:
                    return head.fire_at
                heapq.heappop(self._timers)
            return None

    def _timer_work(self, instance: _Instance, timer_id: int, fire_at: datetime) -> Callable[[], None]:
        """Arm a timer once the episode is recorded; it belongs to the execution current right now."""
        entry = _TimerEntry(
            fire_at, next(self._timer_order), instance.instance_id, instance.execution_id, timer_id
        )
        return functools.partial(heapq.heappush, self._timers, entry)

    # ----------------------------------------------------------------- activities

    async def _run_activity(
        self, work: _ActivityWork, executor: ThreadPoolExecutor, slots: asyncio.Semaphore
    ) -> None:
        async with slots:
            try:
                outcome = await self._invoke_activity(work, executor)
            except WorkerRestarted:
                # A platform failure, not the activity's: the extension aborts the work item and
                # DTFx delivers it again (OutOfProcMiddleware's IsPlatformLevelException).
                log.warning(
                    "activity %s of %s is delivered again after a worker restart", work.name, work.instance_id
                )
                with self._lock:
                    self._activity_queue.append(work)
                self._notify()
                return
        with self._lock:
            self._deliver(work.instance_id, work.execution_id, outcome)
        self._notify()

    async def _invoke_activity(self, work: _ActivityWork, executor: ThreadPoolExecutor) -> dict[str, Any]:
        function = self._activities.get(work.name.lower())
        if function is None:
            # The extension's TaskNonexistentActivityShim wording. For Python apps Azure never
            # gets that far (the scheduling call fails silently and the orchestration waits
            # forever); failing the task instead tells the developer what is wrong.
            reason = (
                f"Activity function '{work.name}' failed: Activity function '{work.name}' does not exist."
            )
            known = ", ".join(f"'{name}'" for name in sorted(self._activity_names())) or "none"
            return self._task_failed(work, reason, f"Known activity functions: {known}.")
        if self._worker is not None:
            return await self._invoke_activity_dispatched(work, function)
        trigger = function.get_trigger()
        user = function.get_user_function()
        try:
            value = (
                None
                if work.input_text is None
                else ActivityTriggerConverter.decode(Datum(work.input_text, "json"), trigger_metadata=None)
            )
            arguments = {trigger.name: value}
            if inspect.iscoroutinefunction(user):
                result = await user(**arguments)
            else:
                context = contextvars.copy_context()
                call = functools.partial(context.run, user, **arguments)
                result = await asyncio.get_running_loop().run_in_executor(executor, call)
            encoded = ActivityTriggerConverter.encode(result, expected_type=None)
        except Exception as exc:
            log.info("activity %s of %s failed: %s", work.name, work.instance_id, exc)
            reason = f"Activity function '{work.name}' failed: {type(exc).__name__}: {exc}"
            return self._task_failed(work, reason, _user_traceback(exc))
        return event(
            HistoryEventType.TASK_COMPLETED,
            timestamp=self._clock.now(),
            TaskScheduledId=work.task_id,
            Result=encoded.value,
        )

    async def _invoke_activity_dispatched(
        self, work: _ActivityWork, function: func.Function
    ) -> dict[str, Any]:
        """The activity as the extension hands it to the worker: its input as JSON TypedData."""
        assert self._worker is not None
        name = function.get_function_name()
        data = TypedData(json="null" if work.input_text is None else work.input_text)
        answer = await self._worker.invoke(name, {function.get_trigger().name: data})
        if not answer.ok:
            log.info("activity %s of %s failed: %s", work.name, work.instance_id, answer.message)
            return self._task_failed(
                work, f"Activity function '{work.name}' failed: {answer.message}", answer.stack_trace
            )
        return event(
            HistoryEventType.TASK_COMPLETED,
            timestamp=self._clock.now(),
            TaskScheduledId=work.task_id,
            Result=answer.json_value(),
        )

    def _task_failed(self, work: _ActivityWork, reason: str, details: str) -> dict[str, Any]:
        return event(
            HistoryEventType.TASK_FAILED,
            timestamp=self._clock.now(),
            TaskScheduledId=work.task_id,
            Reason=reason,
            Details=details,
        )

    # ----------------------------------------------------------------- episodes

    def _run_episode(self, instance_id: str) -> None:
        episode = self._take_episode(instance_id)
        if episode is None:
            return
        try:
            outcome = _call_orchestrator(episode.function, episode.payload)
        finally:
            with self._lock:
                episode.instance.busy = False
        self._complete_episode(episode, outcome)

    async def _run_episode_dispatched(self, instance_id: str, slots: asyncio.Semaphore) -> None:
        async with slots:
            episode = self._take_episode(instance_id)
            if episode is None:
                return
            outcome: _Outcome | None
            try:
                outcome = await self._call_orchestrator_dispatched(episode.function, episode.payload)
            except WorkerRestarted:
                # Aborted, as the extension aborts the session: the same events replay again.
                log.warning("an episode of %s is replayed again after a worker restart", instance_id)
                with self._lock:
                    episode.instance.inbox.extendleft(reversed(episode.batch))
                    self._ready[instance_id] = None
                outcome = None
            finally:
                with self._lock:
                    episode.instance.busy = False
            if outcome is not None:
                self._complete_episode(episode, outcome)
        self._notify()

    async def _call_orchestrator_dispatched(
        self, function: func.Function, payload: Mapping[str, Any]
    ) -> _Outcome:
        """The episode as the extension sends it: the context JSON as string TypedData."""
        assert self._worker is not None
        name = function.get_function_name()
        data = TypedData(string=json.dumps(payload))
        answer = await self._worker.invoke(name, {function.get_trigger().name: data})
        if answer.ok:
            return _Outcome(json.loads(answer.json_value() or "null"))
        return _outcome_of_failure(answer.message, answer.stack_trace)

    def _take_episode(self, instance_id: str) -> _Episode | None:
        """Under the lock: the next batch and the payload, or None when there is nothing to replay."""
        with self._lock:
            instance = self._instances.get(instance_id)
            if instance is None or instance.busy or not instance.inbox:
                return
            if instance.terminal:
                instance.inbox.clear()
                return
            now = self._clock.now()
            started = event(HistoryEventType.ORCHESTRATOR_STARTED, timestamp=now)
            termination = next(
                (
                    item
                    for item in instance.inbox
                    if item["EventType"] == HistoryEventType.EXECUTION_TERMINATED
                ),
                None,
            )
            if termination is not None:
                self._terminate_now(instance, now, started, termination)
                return
            batch = self._take_batch(instance)
            function = self._orchestrators.get(instance.name.lower())
            if function is None:
                instance.history.extend([started, *batch])
                self._finish(
                    instance, now, [], RuntimeStatus.Failed, self._unknown_orchestrator_message(instance.name)
                )
                return
            instance.busy = True
            return _Episode(
                instance,
                instance.execution_id,
                function,
                self._payload(instance, started, batch),
                now,
                started,
                batch,
            )

    def _complete_episode(self, episode: _Episode, outcome: _Outcome) -> None:
        instance, instance_id = episode.instance, episode.instance.instance_id
        now, started, batch = episode.now, episode.started, episode.batch
        with self._lock:
            # start_new refuses running ids, so the instance cannot have been replaced meanwhile;
            # checked anyway, because a stale episode must never touch a newer execution.
            if self._live_instance(instance_id, episode.execution_id) is not instance:
                return
            try:
                self._apply(instance, now, started, batch, outcome)
            except Exception as exc:
                # A bug here must not leave the instance silently stuck.
                log.exception("durable harness failed to apply an episode of %s", instance_id)
                self._finish(instance, now, [], RuntimeStatus.Failed, f"Local durable harness error: {exc!r}")
            if instance.inbox:
                self._ready[instance_id] = None

    def _take_batch(self, instance: _Instance) -> list[dict[str, Any]]:
        """The next events to deliver in one episode.

        The SDK allocates sequence numbers for retry timers and re-attempts while it processes
        the failure or timer event, before user code resumes; the harness can only match that
        if such an event comes first in its episode, so each one starts a new episode.
        """
        batch = [instance.inbox.popleft()]
        while instance.inbox and not self._allocates_ids(instance, instance.inbox[0]):
            batch.append(instance.inbox.popleft())
        return batch

    @staticmethod
    def _allocates_ids(instance: _Instance, item: Mapping[str, Any]) -> bool:
        kind = item["EventType"]
        if kind in (HistoryEventType.TASK_FAILED, HistoryEventType.SUB_ORCHESTRATION_INSTANCE_FAILED):
            return item["TaskScheduledId"] in instance.retries_by_task
        if kind == HistoryEventType.TIMER_FIRED:
            return item["TimerId"] in instance.retries_by_timer
        return False

    def _payload(
        self, instance: _Instance, started: dict[str, Any], batch: list[dict[str, Any]]
    ) -> dict[str, Any]:
        past = [{**item, "IsPlayed": True} for item in instance.history]
        return {
            "history": [*past, started, *batch],
            "input": instance.input,
            "instanceId": instance.instance_id,
            "isReplaying": bool(past),
            "parentInstanceId": instance.parent.instance_id if instance.parent else None,
            **_CONTEXT_CONSTANTS,
        }

    def _apply(
        self,
        instance: _Instance,
        now: datetime,
        started: dict[str, Any],
        batch: list[dict[str, Any]],
        outcome: _Outcome,
    ) -> None:
        instance.history.extend([started, *batch])
        scheduled: list[dict[str, Any]] = []
        work: list[Callable[[], None]] = []
        for item in batch:
            self._drive_retries(instance, item, now, scheduled, work)

        state = outcome.state
        if state is None:
            self._finish(
                instance,
                now,
                scheduled,
                RuntimeStatus.Failed,
                _failure_output(instance.name, outcome.error),
                details=outcome.details,
            )
            return
        oversized = _oversized_custom_status(state.get("customStatus"))
        if oversized is not None:
            self._finish(
                instance, now, scheduled, RuntimeStatus.Failed, _failure_output(instance.name, oversized)
            )
            return
        instance.custom_status = state.get("customStatus")
        leaves = flatten_actions(state.get("actions") or [])
        sequenced = [leaf for leaf in leaves if leaf.consumes_sequence_number]
        mismatch = self._first_mismatch(instance, sequenced)
        if mismatch is not None:
            self._finish(instance, now, scheduled, RuntimeStatus.Failed, mismatch)
            return
        unsupported = next((leaf for leaf in leaves if leaf.kind is LeafKind.UNSUPPORTED), None)
        if unsupported is not None:
            message = f"The local durable harness does not support the {unsupported.describe()}."
            self._finish(
                instance, now, scheduled, RuntimeStatus.Failed, _failure_output(instance.name, message)
            )
            return
        for record, leaf in zip(instance.scheduled, sequenced, strict=False):
            if record.kind is LeafKind.TIMER and leaf.is_canceled:
                instance.canceled_timers.add(record.sequence_id)
        for leaf in sequenced[len(instance.scheduled) :]:
            self._schedule(instance, leaf, now, scheduled, work)

        continued = next((leaf for leaf in leaves if leaf.kind is LeafKind.CONTINUE_AS_NEW), None)
        if outcome.error is not None:
            self._finish(
                instance,
                now,
                scheduled,
                RuntimeStatus.Failed,
                _failure_output(instance.name, outcome.error),
                details=outcome.details,
            )
        elif state.get("isDone") and continued is not None:
            self._continue_as_new(instance, now, continued.input_text)
        elif state.get("isDone"):
            self._finish(instance, now, scheduled, RuntimeStatus.Completed, state.get("output"))
        else:
            instance.status = RuntimeStatus.Running
            instance.last_updated = now
            instance.history.extend(scheduled)
            instance.history.append(event(HistoryEventType.ORCHESTRATOR_COMPLETED, timestamp=now))
        # As in DTFx, work an orchestrator scheduled in its last episode is still sent out;
        # whatever it reports back later is dropped because the execution is over.
        for start in work:
            start()

    def _first_mismatch(self, instance: _Instance, sequenced: list[Leaf]) -> str | None:
        """DTFx's replay check: every recorded task must come back at its sequence position."""
        for index, record in enumerate(instance.scheduled):
            actual = sequenced[index] if index < len(sequenced) else None
            if actual is None or not replay_matches(record, actual):
                return nondeterminism_message(record, actual)
        return None

    def _allocate(self, instance: _Instance) -> int:
        sequence_id = instance.next_id
        instance.next_id += 1
        return sequence_id

    def _schedule(
        self,
        instance: _Instance,
        leaf: Leaf,
        now: datetime,
        scheduled: list[dict[str, Any]],
        work: list[Callable[[], None]],
    ) -> None:
        sequence_id = self._allocate(instance)
        options = leaf.retry_options
        if leaf.kind is LeafKind.TIMER:
            fire_at = leaf.fire_at
            scheduled.append(
                event(
                    HistoryEventType.TIMER_CREATED,
                    timestamp=now,
                    event_id=sequence_id,
                    FireAt=format_timestamp(fire_at),
                )
            )
            instance.scheduled.append(ScheduledLeaf(LeafKind.TIMER, "", sequence_id))
            if leaf.is_canceled:
                instance.canceled_timers.add(sequence_id)
            else:
                work.append(self._timer_work(instance, sequence_id, fire_at))
            return
        child_id = None
        if leaf.kind is LeafKind.SUB_ORCHESTRATION:
            child_id = leaf.instance_id or _generated_child_id(instance, sequence_id)
        instance.scheduled.append(ScheduledLeaf(leaf.kind, leaf.name, sequence_id, child_id))
        if options is not None:
            retry = _Retry(
                kind=leaf.kind,
                name=leaf.name,
                input_text=leaf.input_text,
                explicit_instance_id=leaf.instance_id,
                policy=RetryPolicy.from_json(options),
                first_attempt_at=now,
                task_id=sequence_id,
            )
            instance.retries_by_task[sequence_id] = retry
        self._schedule_attempt(
            instance, leaf.kind, leaf.name, leaf.input_text, sequence_id, child_id, now, scheduled, work
        )

    def _schedule_attempt(
        self,
        instance: _Instance,
        kind: LeafKind,
        name: str,
        input_text: str | None,
        sequence_id: int,
        child_id: str | None,
        now: datetime,
        scheduled: list[dict[str, Any]],
        work: list[Callable[[], None]],
    ) -> None:
        if kind is LeafKind.ACTIVITY:
            scheduled.append(
                event(
                    HistoryEventType.TASK_SCHEDULED,
                    timestamp=now,
                    event_id=sequence_id,
                    Name=name,
                    Version="",
                    Input=input_text,
                )
            )
            activity = _ActivityWork(
                instance.instance_id, instance.execution_id, sequence_id, name, input_text
            )
            work.append(functools.partial(self._activity_queue.append, activity))
        else:
            assert child_id is not None
            scheduled.append(
                event(
                    HistoryEventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
                    timestamp=now,
                    event_id=sequence_id,
                    Name=name,
                    Version="",
                    InstanceId=child_id,
                    Input=input_text,
                )
            )
            link = _ParentLink(instance.instance_id, instance.execution_id, sequence_id, instance.name)
            work.append(functools.partial(self._start_child, link, name, child_id, input_text))

    def _drive_retries(
        self,
        instance: _Instance,
        item: Mapping[str, Any],
        now: datetime,
        scheduled: list[dict[str, Any]],
        work: list[Callable[[], None]],
    ) -> None:
        """Play DTFx's RetryInterceptor for one delivered event (the SDK mirrors it exactly).

        After a failed attempt: a timer (the retry delay; after the last attempt, DTFx's
        "dummy timer for back-compat" firing at once). When that timer fires: the next attempt
        under a new sequence number, or nothing after the last one, when the SDK hands the
        failure to the orchestrator.
        """
        kind = item["EventType"]
        if kind in (HistoryEventType.TASK_COMPLETED, HistoryEventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED):
            instance.retries_by_task.pop(item["TaskScheduledId"], None)
        elif kind in (HistoryEventType.TASK_FAILED, HistoryEventType.SUB_ORCHESTRATION_INSTANCE_FAILED):
            retry = instance.retries_by_task.pop(item["TaskScheduledId"], None)
            if retry is None:
                return
            retry.last_reason, retry.last_details = item.get("Reason"), item.get("Details")
            fire_at = now
            if retry.attempt < retry.policy.max_attempts:
                timeout = retry.policy.timeout
                if retry.expired or (timeout is not None and now >= retry.first_attempt_at + timeout):
                    retry.expired = True
                else:
                    fire_at = now + retry.policy.delay_after(retry.attempt)
            timer_id = self._allocate(instance)
            retry.timer_id = timer_id
            instance.retries_by_timer[timer_id] = retry
            scheduled.append(
                event(
                    HistoryEventType.TIMER_CREATED,
                    timestamp=now,
                    event_id=timer_id,
                    FireAt=format_timestamp(fire_at),
                )
            )
            work.append(self._timer_work(instance, timer_id, fire_at))
        elif kind == HistoryEventType.TIMER_FIRED:
            retry = instance.retries_by_timer.pop(item["TimerId"], None)
            if retry is None or retry.attempt >= retry.policy.max_attempts:
                return
            retry.attempt += 1
            sequence_id = self._allocate(instance)
            retry.task_id = sequence_id
            instance.retries_by_task[sequence_id] = retry
            child_id = None
            if retry.kind is LeafKind.SUB_ORCHESTRATION:
                child_id = retry.explicit_instance_id or _generated_child_id(instance, sequence_id)
            if not retry.expired:
                self._schedule_attempt(
                    instance,
                    retry.kind,
                    retry.name,
                    retry.input_text,
                    sequence_id,
                    child_id,
                    now,
                    scheduled,
                    work,
                )
                return
            # DTFx stops retrying once retryTimeout has passed, but the SDK counts attempts and
            # would wait forever for the rest; they are recorded as failing at once, unrun,
            # with the last real failure, so the orchestrator sees that failure.
            self._schedule_attempt(
                instance, retry.kind, retry.name, retry.input_text, sequence_id, child_id, now, scheduled, []
            )
            failed_kind = (
                HistoryEventType.TASK_FAILED
                if retry.kind is LeafKind.ACTIVITY
                else HistoryEventType.SUB_ORCHESTRATION_INSTANCE_FAILED
            )
            instance.inbox.append(
                event(
                    failed_kind,
                    timestamp=now,
                    TaskScheduledId=sequence_id,
                    Reason=retry.last_reason,
                    Details=retry.last_details,
                    SlipwayNote="not run: the retry timeout had expired",
                )
            )

    def _start_child(self, link: _ParentLink, name: str, child_id: str, input_text: str | None) -> None:
        parent = self._instances.get(link.instance_id)
        grandparent = parent.parent.instance_id if parent is not None and parent.parent else None
        refusal = None
        if child_id.lower() in {link.instance_id.lower(), (grandparent or "").lower()}:
            refusal = (
                "The instance ID of a sub-orchestration must be different than the instance ID "
                "of a parent orchestration."
            )
        existing = self._instances.get(child_id)
        if existing is not None and existing.status in _NOT_OVERRIDABLE:
            refusal = str(InstanceAlreadyRunningError(child_id, existing.status.value))
        if refusal is not None:
            self._deliver(
                link.instance_id,
                link.execution_id,
                event(
                    HistoryEventType.SUB_ORCHESTRATION_INSTANCE_FAILED,
                    timestamp=self._clock.now(),
                    TaskScheduledId=link.task_id,
                    Reason=refusal,
                    Details=None,
                ),
            )
            return
        self._create_instance(child_id, name, input_text, parent=link)

    def _continue_as_new(self, instance: _Instance, now: datetime, input_text: str | None) -> None:
        # Events that arrive after continue-as-new carry over to the next generation, as in
        # DTFx (TaskOrchestrationExecutor hands an EventRaised it processes once the context
        # HasContinueAsNew to AddEventToNextIteration): those of the last episode that came
        # after the event on which the orchestrator continued as new, and those raised while
        # that episode ran. Events the orchestrator had already seen are dropped with its history.
        if self._carry_over == "episode":
            carried = self._raised_in_last_episode(instance)
        else:
            carried = self._raised_after_continue_as_new(instance)
        carried += [item for item in instance.inbox if item["EventType"] == HistoryEventType.EVENT_RAISED]
        instance.inbox.clear()
        # The new generation starts with a fresh history, as in Azure Storage: nothing of the
        # old one is kept, and results still on their way to it are dropped.
        instance.execution_id = uuid.uuid4().hex
        instance.input = input_text
        instance.output = None
        instance.status = RuntimeStatus.ContinuedAsNew
        instance.last_updated = now
        instance.history = []
        instance.scheduled = []
        instance.next_id = 0
        instance.retries_by_task.clear()
        instance.retries_by_timer.clear()
        instance.canceled_timers.clear()
        instance.inbox.append(self._execution_started(instance, now))
        instance.inbox.extend(carried)
        self._ready[instance.instance_id] = None

    def _raised_in_last_episode(self, instance: _Instance) -> list[dict[str, Any]]:
        history = instance.history
        start = max(
            (
                i
                for i, item in enumerate(history)
                if item["EventType"] == HistoryEventType.ORCHESTRATOR_STARTED
            ),
            default=len(history),
        )
        return [item for item in history[start:] if item["EventType"] == HistoryEventType.EVENT_RAISED]

    def _raised_after_continue_as_new(self, instance: _Instance) -> list[dict[str, Any]]:
        """The EventRaised events of the last episode that the orchestrator never reached.

        The SDK stops reading the history at the event on which the orchestrator continued as
        new; the extension's replay reaches the continue-as-new at that same event and carries
        the events after it. Which event that was is found by replaying growing prefixes of the
        episode (orchestrator code is deterministic), only when an event could be carried.
        """
        history = instance.history
        start = max(
            (
                i
                for i, item in enumerate(history)
                if item["EventType"] == HistoryEventType.ORCHESTRATOR_STARTED
            ),
            default=None,
        )
        function = self._orchestrators.get(instance.name.lower())
        if start is None or function is None:
            return []
        started, batch = history[start], history[start + 1 :]
        raised = [i for i, item in enumerate(batch) if item["EventType"] == HistoryEventType.EVENT_RAISED]
        past = [{**item, "IsPlayed": True} for item in history[:start]]
        for length in range(1, raised[-1] + 1 if raised else 0):
            payload = {
                **self._payload(instance, started, batch[:length]),
                "history": [*past, started, *batch[:length]],
                "isReplaying": bool(past),
            }
            state = _call_orchestrator(function, payload).state
            if state is not None and state.get("isDone"):
                return [batch[i] for i in raised if i >= length]
        return []

    def purge_instances(
        self,
        *,
        created_from: datetime,
        created_to: datetime | None = None,
        runtime_statuses: Collection[str] | None = None,
    ) -> int:
        """Delete finished instances created in ``[created_from, created_to]``; how many went.

        As ``DurableOrchestrationClient.purge_instance_history_by`` through the extension:
        ``created_to`` defaults to now, ``runtime_statuses`` narrows the statuses, and only
        completed, failed and terminated instances are ever purged (the Azure Storage backend
        ignores other statuses in the filter), so a running orchestration is never lost.
        """
        with self._lock:
            until = created_to or self._clock.now()
            doomed = [
                instance.instance_id
                for instance in self._instances.values()
                if instance.terminal and _matches(instance, runtime_statuses, created_from, until)
            ]
            for instance_id in doomed:
                del self._instances[instance_id]
                self._ready.pop(instance_id, None)
            return len(doomed)

    def _terminate_now(
        self, instance: _Instance, now: datetime, started: dict[str, Any], termination: dict[str, Any]
    ) -> None:
        starts = [item for item in instance.inbox if item["EventType"] == HistoryEventType.EXECUTION_STARTED]
        instance.inbox.clear()
        instance.history.extend([started, *starts, termination])
        self._finish(instance, now, [], RuntimeStatus.Terminated, parse_token(termination.get("Input")))

    def _finish(
        self,
        instance: _Instance,
        now: datetime,
        scheduled: list[dict[str, Any]],
        status: OrchestrationRuntimeStatus,
        output: Any,
        *,
        details: str | None = None,
    ) -> None:
        instance.status = status
        instance.output = output
        instance.failure_details = details
        instance.last_updated = now
        instance.inbox.clear()
        # DTFx stores a completed orchestration's output serialized, a failure message or a
        # termination reason as the plain text it is.
        if status is RuntimeStatus.Completed or not isinstance(output, str):
            result = _serialize_token(output)
        else:
            result = output
        completed = event(
            HistoryEventType.EXECUTION_COMPLETED,
            timestamp=now,
            OrchestrationStatus=int(OrchestrationStatusCode[status.value]),
            Result=result,
        )
        if status is RuntimeStatus.Failed:
            completed["FailureDetails"] = {
                "ErrorType": "OrchestrationFailure",
                "ErrorMessage": output,
                "StackTrace": details,
            }
        instance.history.extend(
            [*scheduled, completed, event(HistoryEventType.ORCHESTRATOR_COMPLETED, timestamp=now)]
        )
        if status is RuntimeStatus.Failed:
            log.warning("orchestration %s (%s) failed: %s", instance.instance_id, instance.name, output)
        self._report_to_parent(instance, now)

    def _report_to_parent(self, instance: _Instance, now: datetime) -> None:
        link = instance.parent
        if link is None:
            return
        if instance.status is RuntimeStatus.Completed:
            outcome = event(
                HistoryEventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
                timestamp=now,
                TaskScheduledId=link.task_id,
                Result=_serialize_token(instance.output),
            )
        else:
            reason = instance.output if isinstance(instance.output, str) else json.dumps(instance.output)
            outcome = event(
                HistoryEventType.SUB_ORCHESTRATION_INSTANCE_FAILED,
                timestamp=now,
                TaskScheduledId=link.task_id,
                Reason=reason,
                Details=instance.failure_details,
            )
        self._deliver(link.instance_id, link.execution_id, outcome)

    # ----------------------------------------------------------------- bookkeeping

    def _create_instance(
        self, instance_id: str, name: str, raw_input: Any, parent: _ParentLink | None
    ) -> None:
        now = self._clock.now()
        instance = _Instance(
            instance_id=instance_id,
            name=name,
            execution_id=uuid.uuid4().hex,
            input=raw_input,
            created=now,
            last_updated=now,
            parent=parent,
        )
        instance.inbox.append(self._execution_started(instance, now))
        self._instances[instance_id] = instance
        self._ready[instance_id] = None

    def _execution_started(self, instance: _Instance, now: datetime) -> dict[str, Any]:
        link = instance.parent
        parent = None
        if link is not None:
            parent = {
                "Name": link.name,
                "Version": "",
                "OrchestrationInstance": {"InstanceId": link.instance_id, "ExecutionId": link.execution_id},
                "TaskScheduleId": link.task_id,
            }
        return event(
            HistoryEventType.EXECUTION_STARTED,
            timestamp=now,
            Name=instance.name,
            Input=_serialize_token(instance.input),
            Version="",
            OrchestrationInstance={"InstanceId": instance.instance_id, "ExecutionId": instance.execution_id},
            ParentInstance=parent,
            Tags=None,
        )

    def _deliver(self, instance_id: str, execution_id: str, item: dict[str, Any]) -> None:
        instance = self._live_instance(instance_id, execution_id)
        if instance is None:
            return
        instance.inbox.append(item)
        self._ready[instance_id] = None

    def _live_instance(self, instance_id: str, execution_id: str) -> _Instance | None:
        """The instance if it still runs the given execution (not finished, not restarted)."""
        instance = self._instances.get(instance_id)
        if instance is None or instance.execution_id != execution_id or instance.terminal:
            return None
        return instance

    def _existing_active(self, instance_id: str) -> _Instance:
        instance = self._instances.get(instance_id)
        if instance is None:
            raise InstanceNotFoundError(f"No instance with ID '{instance_id}' found.")
        if instance.terminal:
            raise InstanceGoneError(f"Instance with ID {instance_id} is gone: either completed or failed")
        return instance

    def _status_json(
        self, instance: _Instance, show_history: bool, show_history_output: bool, show_input: bool
    ) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": instance.name,
            "instanceId": instance.instance_id,
            "runtimeStatus": instance.status.value,
            "input": instance.input if show_input else None,
            "customStatus": instance.custom_status,
            "output": instance.output,
            "createdTime": format_status_time(instance.created),
            "lastUpdatedTime": format_status_time(instance.last_updated),
        }
        if show_history:
            status["historyEvents"] = status_history(
                instance.history, show_output=show_history_output, show_input=show_input
            )
        return status

    def _activity_names(self) -> list[str]:
        return [_durable_name(function, "activity") for function in self._activities.values()]

    def _unknown_orchestrator_message(self, name: str) -> str:
        known = [_durable_name(function, "orchestration") for function in self._orchestrators.values()]
        message = f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function. Additional info: "
        if known:
            return (
                message
                + "The following are the known orchestrator functions: '"
                + "', '".join(sorted(known))
                + "'."
            )
        return message + "No orchestrator functions are currently registered!"


def _matches(
    instance: _Instance,
    runtime_statuses: Collection[str] | None,
    created_from: datetime | None,
    created_to: datetime | None,
) -> bool:
    """Whether ``instance`` passes the client API's filter (statuses case-insensitive, times inclusive)."""
    if runtime_statuses and instance.status.value.lower() not in {s.lower() for s in runtime_statuses}:
        return False
    return (created_from is None or instance.created >= created_from) and (
        created_to is None or instance.created <= created_to
    )


def _call_orchestrator(function: func.Function, payload: Mapping[str, Any]) -> _Outcome:
    """Call the SDK's orchestrator handle with the context JSON, as the worker does."""
    handle = function.get_user_function()
    try:
        answer = handle(json.dumps(payload))
    except Exception as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, BaseException) else exc
        return _outcome_of_failure(str(exc) or type(exc).__name__, _user_traceback(cause))
    return _Outcome(json.loads(answer))


def _outcome_of_failure(message: str, details: str) -> _Outcome:
    """The SDK reports an orchestrator exception by raising "<message>\n\n$OutOfProcData$:<state>",
    the state still carrying the actions; the extension parses it back out."""
    text, marker, state_json = message.partition(_OUT_OF_PROC_MARKER)
    state: Mapping[str, Any] | None = None
    if marker:
        try:
            state = json.loads(state_json)
        except ValueError:
            state = None
    error = (state or {}).get("error") or text
    return _Outcome(state, str(error), details)


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the user's code down, without the harness and thread-pool frames above it."""
    frames = exc.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename in _PLUMBING_FILES:
        frames = frames.tb_next
    return "".join(traceback.format_exception(type(exc), exc, frames))


def _oversized_custom_status(custom_status: Any) -> str | None:
    """The extension's refusal of a custom status over 16 KB of UTF-16 JSON, which fails the orchestration.

    As MessagePayloadDataConverter.Serialize does: the status is written again by Newtonsoft
    (compact, non-ASCII kept as is, U+0085/U+2028/U+2029 escaped), its UTF-16 bytes counted, and
    the whole kilobytes, rounded down, compared with 16: 17,407 bytes pass, 17,408 fail.
    """
    if custom_status is None:
        return None
    text = json.dumps(custom_status, separators=(",", ":"), ensure_ascii=False)
    for char in ("\u0085", "\u2028", "\u2029"):
        text = text.replace(char, f"\\u{ord(char):04x}")
    size_kb = len(text.encode("utf-16-le")) // 1024
    if size_kb <= _MAX_CUSTOM_STATUS_KB:
        return None
    return (
        f"The UTF-16 size of the JSON-serialized payload must not exceed {_MAX_CUSTOM_STATUS_KB} KB. "
        f"The current payload size is {size_kb} KB."
    )


def _failure_output(name: str, error: str | None) -> str:
    """The extension's OrchestrationFailureException message, which becomes the status output."""
    return f"Orchestrator function '{name}' failed: {error}"


def _serialize_token(value: Any) -> str | None:
    """How DTFx stores a JSON value in history (``None`` stays absent)."""
    return None if value is None else json.dumps(value)


def _generated_child_id(instance: _Instance, sequence_id: int) -> str:
    # DTFx's TaskOrchestrationContext names unnamed sub-orchestrations "<parent execution id>:<sequence>".
    return f"{instance.execution_id}:{sequence_id}"


def _check_instance_id(instance_id: str) -> None:
    if instance_id.startswith("@"):
        raise InvalidInstanceIdError("Orchestration instance ids must not start with @.")
    if any(char in "/\\#?" or ord(char) < 32 or 127 <= ord(char) < 160 for char in instance_id):
        raise InvalidInstanceIdError(
            "Orchestration instance ids must not contain /, \\, #, ?, or control characters."
        )
    if len(instance_id) > _MAX_INSTANCE_ID_LENGTH:
        raise InvalidInstanceIdError(
            f"Instance ID lengths must not exceed {_MAX_INSTANCE_ID_LENGTH} characters."
        )


def _durable_name(function: func.Function, override: str) -> str:
    """The name orchestrations address a function by: the trigger's override, else the function name."""
    return getattr(function.get_trigger(), override, None) or function.get_function_name()


def _durable_functions(
    app: func.FunctionRegister,
) -> tuple[dict[str, func.Function], dict[str, func.Function]]:
    orchestrators: dict[str, func.Function] = {}
    activities: dict[str, func.Function] = {}
    for function in indexed_functions(app):
        kind = trigger_type(function)
        if kind == "orchestrationTrigger":
            orchestrators[_durable_name(function, "orchestration").lower()] = function
        elif kind == "activityTrigger":
            activities[_durable_name(function, "activity").lower()] = function
    return orchestrators, activities


def _seconds_until(moment: datetime | None, clock: Clock) -> float | None:
    if moment is None:
        return None
    return max(0.0, (moment - clock.now()).total_seconds())


async def _wait(wake: asyncio.Event, stop: asyncio.Event | None, timeout: float | None) -> None:
    """Sleep until woken, stopped or ``timeout`` seconds have passed."""
    waiters = [asyncio.ensure_future(wake.wait())]
    if stop is not None:
        waiters.append(asyncio.ensure_future(stop.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
