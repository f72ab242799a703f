"""Orchestrators and activities that exercise the local Durable harness, as a real Functions app.

The harness tests run these through the real ``azure-functions-durable`` replay code, so
every Durable pattern Slipway relies on (chaining, fan-out, retries, timers, events,
sub-orchestrations, continue-as-new) is checked against the SDK's own expectations.
Activities that need coordination with a test (barriers, attempt counters) keep it in
``PROBES``, which a test resets before use.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

bp = df.Blueprint()


@dataclass
class Probes:
    """Shared state between activities (which run in worker threads) and the test."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    attempts: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    barrier: threading.Barrier | None = None
    release: threading.Event = field(default_factory=threading.Event)
    active: int = 0
    peak: int = 0

    def reset(self) -> None:
        with self.lock:
            self.attempts.clear()
            self.barrier = None
            self.release = threading.Event()
            self.active = 0
            self.peak = 0


PROBES = Probes()


class BackoffRetryOptions(df.RetryOptions):
    """RetryOptions with the extension's backoff fields, which the Python SDK does not send itself."""

    def __init__(
        self,
        first_retry_interval_in_milliseconds: int,
        max_number_of_attempts: int,
        *,
        backoff_coefficient: float,
        max_retry_interval_in_milliseconds: int | None = None,
        retry_timeout_in_milliseconds: int | None = None,
    ) -> None:
        super().__init__(first_retry_interval_in_milliseconds, max_number_of_attempts)
        self._backoff = backoff_coefficient
        self._max_interval = max_retry_interval_in_milliseconds
        self._timeout = retry_timeout_in_milliseconds

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(super().to_json())
        data["backoffCoefficient"] = self._backoff
        if self._max_interval is not None:
            data["maxRetryIntervalInMilliseconds"] = self._max_interval
        if self._timeout is not None:
            data["retryTimeoutInMilliseconds"] = self._timeout
        return data


# ----------------------------------------------------------------------------- activities


@bp.activity_trigger(input_name="text")
def append_letter(text: str) -> str:
    return text + chr(ord(text[-1]) + 1) if text else "A"


@bp.activity_trigger(input_name="payload")
def echo(payload: Any) -> Any:
    return payload


@bp.activity_trigger(input_name="payload")
async def async_double(payload: int) -> int:
    return payload * 2


@bp.activity_trigger(input_name="index")
def meet_at_barrier(index: int) -> dict[str, Any]:
    """Returns only if all fan-out branches are inside at once: proof they overlap in time."""
    with PROBES.lock:
        barrier = PROBES.barrier
    if barrier is None:
        raise RuntimeError("the test did not set PROBES.barrier")
    barrier.wait()
    return {"index": index, "thread": threading.current_thread().name}


@bp.activity_trigger(input_name="index")
def track_concurrency(index: int) -> int:
    with PROBES.lock:
        PROBES.active += 1
        PROBES.peak = max(PROBES.peak, PROBES.active)
    time.sleep(0.05)
    with PROBES.lock:
        PROBES.active -= 1
    return index


@bp.activity_trigger(input_name="job")
def flaky(job: dict[str, Any]) -> str:
    """Fails the first ``job['failures']`` times it is called for ``job['key']``."""
    with PROBES.lock:
        PROBES.attempts[job["key"]] += 1
        attempt = PROBES.attempts[job["key"]]
    if attempt <= job["failures"]:
        raise ConnectionError(f"attempt {attempt} of {job['key']} failed")
    return f"{job['key']} succeeded on attempt {attempt}"


@bp.activity_trigger(input_name="message")
def explode(message: str) -> None:
    raise ValueError(message)


@bp.activity_trigger(input_name="payload")
def wait_for_release(payload: Any) -> Any:
    """Blocks until the test sets ``PROBES.release`` (or 5 s pass)."""
    PROBES.release.wait(timeout=5)
    return payload


@bp.activity_trigger(input_name="moment")
def sleep_past(moment: str) -> str:
    """Returns once the wall clock is past ``moment`` (an ISO-8601 instant)."""
    delay = (datetime.fromisoformat(moment) - datetime.now(UTC)).total_seconds()
    time.sleep(max(0.0, delay) + 0.02)
    return moment


# ----------------------------------------------------------------------------- orchestrators


@bp.orchestration_trigger(context_name="context")
def chain(context: df.DurableOrchestrationContext):
    first = yield context.call_activity("append_letter", context.get_input())
    second = yield context.call_activity("append_letter", first)
    third = yield context.call_activity("append_letter", second)
    doubled = yield context.call_activity("async_double", len(third))
    return {"letters": third, "doubled_length": doubled}


@bp.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    count = context.get_input()
    results = yield context.task_all([context.call_activity("meet_at_barrier", i) for i in range(count)])
    return results


@bp.orchestration_trigger(context_name="context")
def fan_out_tracked(context: df.DurableOrchestrationContext):
    count = context.get_input()
    return (yield context.task_all([context.call_activity("track_concurrency", i) for i in range(count)]))


@bp.orchestration_trigger(context_name="context")
def retry_until_success(context: df.DurableOrchestrationContext):
    job = context.get_input()
    options = df.RetryOptions(first_retry_interval_in_milliseconds=60_000, max_number_of_attempts=5)
    return (yield context.call_activity_with_retry("flaky", options, job))


@bp.orchestration_trigger(context_name="context")
def retry_with_backoff(context: df.DurableOrchestrationContext):
    settings = context.get_input()
    options = BackoffRetryOptions(
        1000,
        settings["attempts"],
        backoff_coefficient=2,
        max_retry_interval_in_milliseconds=settings.get("max_interval_ms"),
        retry_timeout_in_milliseconds=settings.get("timeout_ms"),
    )
    try:
        return (yield context.call_activity_with_retry("flaky", options, settings["job"]))
    except Exception as error:
        return {"gave_up": str(error)}


@bp.orchestration_trigger(context_name="context")
def retries_in_fan_out(context: df.DurableOrchestrationContext):
    """Retries, plain activities and a timer interleaved, so sequence numbers must line up exactly."""
    options = df.RetryOptions(first_retry_interval_in_milliseconds=5_000, max_number_of_attempts=4)
    tasks = [
        context.call_activity_with_retry("flaky", options, {"key": "left", "failures": 2}),
        context.call_activity("echo", "middle"),
        context.call_activity_with_retry("flaky", options, {"key": "right", "failures": 1}),
    ]
    results = yield context.task_all(tasks)
    yield context.create_timer(context.current_utc_datetime + timedelta(minutes=1))
    last = yield context.call_activity_with_retry("flaky", options, {"key": "last", "failures": 3})
    return [*results, last]


@bp.orchestration_trigger(context_name="context")
def retry_timer_meets_user_timer(context: df.DurableOrchestrationContext):
    """A retry timer and a user timer fire at the same instant.

    The user timer resumes the orchestrator, which schedules a new activity, and the retry
    timer makes the SDK allocate the next attempt: both take sequence numbers, and the SDK
    gives them out in the order the two events appear in the history.
    """
    options = df.RetryOptions(first_retry_interval_in_milliseconds=60_000, max_number_of_attempts=3)
    retried = context.call_activity_with_retry("flaky", options, {"key": "sync", "failures": 1})
    timer = context.create_timer(context.current_utc_datetime + timedelta(seconds=60))
    yield context.task_any([retried, timer])
    echoed = yield context.call_activity("echo", "after the timer")
    outcome = yield retried
    return [echoed, outcome]


@bp.orchestration_trigger(context_name="context")
def fallback_on_failure(context: df.DurableOrchestrationContext):
    try:
        yield context.call_activity("explode", "disk full")
    except Exception as error:
        recovered = yield context.call_activity("echo", "fallback")
        return {"result": recovered, "error": str(error)}
    return {"result": "unreachable"}


@bp.orchestration_trigger(context_name="context")
def uncaught_failure(context: df.DurableOrchestrationContext):
    yield context.call_activity("explode", "no route to host")
    return "unreachable"


@bp.orchestration_trigger(context_name="context")
def calls_missing_activity(context: df.DurableOrchestrationContext):
    try:
        yield context.call_activity("no_such_activity", None)
    except Exception as error:
        return str(error)
    return "unreachable"


@bp.orchestration_trigger(context_name="context")
def durable_http_call(context: df.DurableOrchestrationContext):
    response = yield context.call_http("GET", "https://example.invalid/status")
    return response


@bp.orchestration_trigger(context_name="context")
def activity_races_timer(context: df.DurableOrchestrationContext):
    deadline = context.current_utc_datetime + timedelta(hours=1)
    timeout = context.create_timer(deadline)
    work = context.call_activity("echo", "work done")
    winner = yield context.task_any([work, timeout])
    if winner == work:
        timeout.cancel()
        return work.result
    return "timed out"


@bp.orchestration_trigger(context_name="context")
def approval_or_timeout(context: df.DurableOrchestrationContext):
    timeout = context.create_timer(context.current_utc_datetime + timedelta(minutes=30))
    approval = context.wait_for_external_event("approval")
    winner = yield context.task_any([approval, timeout])
    if winner == approval:
        timeout.cancel()
        return {"approved": approval.result}
    return {"approved": None, "timed_out_at": context.current_utc_datetime.isoformat()}


@bp.orchestration_trigger(context_name="context")
def real_time_race(context: df.DurableOrchestrationContext):
    timeout = context.create_timer(context.current_utc_datetime + timedelta(milliseconds=100))
    slow = context.call_activity("wait_for_release", "slow result")
    winner = yield context.task_any([slow, timeout])
    return "timer" if winner == timeout else "activity"


@bp.orchestration_trigger(context_name="context")
def blocked_on_activity(context: df.DurableOrchestrationContext):
    result = yield context.call_activity("wait_for_release", "late result")
    return result


@bp.orchestration_trigger(context_name="context")
def long_sleep(context: df.DurableOrchestrationContext):
    yield context.create_timer(context.current_utc_datetime + timedelta(days=10))
    return context.current_utc_datetime.isoformat()


@bp.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext):
    settings = context.get_input()
    named = yield context.call_sub_orchestrator("chain", "A", instance_id=settings["child_id"])
    unnamed = yield context.call_sub_orchestrator("chain", "X")
    return {"named": named, "unnamed": unnamed}


@bp.orchestration_trigger(context_name="context")
def parent_of_failing_child(context: df.DurableOrchestrationContext):
    try:
        yield context.call_sub_orchestrator("uncaught_failure", None)
    except Exception as error:
        return {"child_failed": str(error)}
    return {"child_failed": None}


@bp.orchestration_trigger(context_name="context")
def parent_retrying_child(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(first_retry_interval_in_milliseconds=2_000, max_number_of_attempts=3)
    return (
        yield context.call_sub_orchestrator_with_retry(
            "flaky_child", options, {"key": "child", "failures": 2}
        )
    )


@bp.orchestration_trigger(context_name="context")
def flaky_child(context: df.DurableOrchestrationContext):
    job = context.get_input()
    return (yield context.call_activity("flaky", {"key": job["key"], "failures": job["failures"]}))


@bp.orchestration_trigger(context_name="context")
def wait_for_approval(context: df.DurableOrchestrationContext):
    context.set_custom_status({"stage": "warming up"})
    warm = yield context.call_activity("echo", "warm")
    context.set_custom_status({"stage": "waiting for approval"})
    decision = yield context.wait_for_external_event("approval")
    context.set_custom_status({"stage": "done"})
    return {"warm": warm, "decision": decision}


@bp.orchestration_trigger(context_name="context")
def oversized_status(context: df.DurableOrchestrationContext):
    context.set_custom_status(context.get_input())
    yield context.call_activity("echo", "never scheduled")
    return "unreachable"


@bp.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext):
    state = context.get_input()
    if state["count"] >= state["stop_at"]:
        return state
    yield context.call_activity("echo", state["count"])
    context.continue_as_new({"count": state["count"] + 1, "stop_at": state["stop_at"]})
    return None


@bp.orchestration_trigger(context_name="context")
def deadline_by_wall_clock(context: df.DurableOrchestrationContext):
    """Decides with ``datetime.now()`` and ``uuid4()``, so a replay takes another branch. Don't do this.

    Before the deadline it starts a step that lasts past the deadline; when that step's result
    is replayed, the wall clock says otherwise and the replay schedules a different activity.
    """
    settings = context.get_input()
    deadline = datetime.fromisoformat(settings["deadline"])
    slow = datetime.now(UTC) < deadline
    token = str(uuid.uuid4())
    if slow:
        first = yield context.call_activity("sleep_past", settings["deadline"])
    else:
        first = yield context.call_activity("echo", 0)
    echoed = yield context.call_activity("echo", token)
    return {"slow": slow, "first": first, "token": token, "echoed": echoed}


@bp.orchestration_trigger(context_name="context")
def deadline_by_orchestration_clock(context: df.DurableOrchestrationContext):
    """The same decision made replay-safe with ``current_utc_datetime`` and ``new_uuid``."""
    settings = context.get_input()
    deadline = datetime.fromisoformat(settings["deadline"])
    slow = context.current_utc_datetime < deadline
    token = context.new_uuid()
    if slow:
        first = yield context.call_activity("sleep_past", settings["deadline"])
    else:
        first = yield context.call_activity("echo", 0)
    echoed = yield context.call_activity("echo", token)
    return {"slow": slow, "first": first, "token": token, "echoed": echoed}


# ----------------------------------------------------------------------------- client side


@bp.queue_trigger(arg_name="message", queue_name="durable-fixture-runs", connection="AzureWebJobsStorage")
@bp.durable_client_input(client_name="client")
async def start_from_queue(message: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    """Queue-trigger code as Slipway writes it: the message names the run, the client starts it."""
    job = message.get_json()
    await client.start_new("chain", job["run_id"], job["letter"])


app = func.FunctionApp()
app.register_functions(bp)
