"""Workflow run bindings: the runs queue, the run orchestration and its activities.

``POST /api/workflows/{name}/runs`` queues a start message; the queue trigger starts the
orchestration ``workflow_run`` with the run id as its instance id, so a redelivered message
finds the instance and starts nothing. The orchestrator asks ``workflow_plan`` for the plan,
then walks it: each step attempt is one ``workflow_step`` activity, steps whose dependencies
are met run together, a timer races each attempt (the plan gives every step a ``timeout``:
its own, or the longest the host's ``functionTimeout`` allows), failed attempts wait
(doubling) before the next, and the ``cancel`` event ends the walk at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from slipway.bootstrap import Services
from slipway.engine.progress import PlanWalk
from slipway.engine.service import CANCEL, parse_message
from slipway.functions import custom_status
from slipway.functions.offload import run_long
from slipway.names import RUNS_QUEUE, poison_queue

log = logging.getLogger("slipway.functions.workflows")

ORCHESTRATOR = "workflow_run"
PLAN_ACTIVITY = "workflow_plan"
STEP_ACTIVITY = "workflow_step"
RECORD_ACTIVITY = "workflow_record"
FINISH_ACTIVITY = "workflow_finish"
CANCEL_EVENT = "cancel"
# How long a canceled run waits for its running steps to stop (commands are killed within
# about 4 s: the cancel flag is read every second, then SIGTERM, then SIGKILL after 3 s).
CANCEL_GRACE_SECONDS = 6
# Every minute: runs whose orchestration vanished (a local runner restarted) or ignored a cancel.
REAPER_SCHEDULE = "30 * * * * *"
# Storage hiccups in the bookkeeping activities are retried; a step's own retries are the
# workflow's business (exponential, below).
_BOOKKEEPING_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=2000, max_number_of_attempts=5)
# Per-step progress is reported while its custom status is at most 14 KB by the extension's
# measure: 2 KB below the limit for the final status word and the host's reparse of the JSON.
_PROGRESS_BUDGET_BYTES = (custom_status.LIMIT_KB - 2) * 1024


def workflows_blueprint(services: Services) -> df.Blueprint:
    blueprint = df.Blueprint()
    engine = services.workflows

    @blueprint.queue_trigger(arg_name="msg", queue_name=RUNS_QUEUE, connection="AzureWebJobsStorage")
    @blueprint.durable_client_input(client_name="client")
    async def workflow_run_requested(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
        message = parse_message(msg.get_body())
        run_id = message["run_id"]
        status = await client.get_status(run_id)
        exists = getattr(status, "runtime_status", None) is not None
        if message["action"] == CANCEL:
            if getattr(status, "runtime_status", None) in (
                df.OrchestrationRuntimeStatus.Running,
                df.OrchestrationRuntimeStatus.Pending,
            ):
                await client.raise_event(run_id, CANCEL_EVENT, None)
            return
        if exists or not await asyncio.to_thread(engine.run_to_start, run_id):
            return  # a redelivered message: the run started (or ended) already
        try:
            await client.start_new(ORCHESTRATOR, run_id, {"run_id": run_id})
        except Exception:
            # A concurrent delivery of the same message started it between our check and now.
            status = await client.get_status(run_id)
            if getattr(status, "runtime_status", None) is None:
                raise

    @blueprint.queue_trigger(
        arg_name="msg", queue_name=poison_queue(RUNS_QUEUE), connection="AzureWebJobsStorage"
    )
    def workflow_run_poisoned(msg: func.QueueMessage) -> None:
        try:
            message = parse_message(msg.get_body())
        except ValueError:
            log.warning("unreadable message in the runs poison queue dropped")
            return
        if message["action"] == "start":
            engine.mark_unstartable(
                message["run_id"],
                "the run could not be started: its start message failed 5 times (see the logs)",
            )

    @blueprint.timer_trigger(schedule=REAPER_SCHEDULE, arg_name="timer", run_on_startup=False)
    @blueprint.durable_client_input(client_name="client")
    async def workflow_reaper(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
        now = datetime.now(UTC)
        for row in await asyncio.to_thread(engine.unfinished_runs):
            status = await client.get_status(row["run_id"])
            runtime = getattr(status, "runtime_status", None)
            name = runtime.value if runtime is not None else None
            if await asyncio.to_thread(engine.reap, row, name, now) == "terminate":
                await client.terminate(row["run_id"], "cancel requested and not acted on in time")
                await asyncio.to_thread(engine.reap, row, "Terminated", now)

    @blueprint.orchestration_trigger(context_name="context")
    def workflow_run(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
        run_id: str = context.get_input()["run_id"]
        try:
            plan: dict[str, Any] = yield context.call_activity_with_retry(
                PLAN_ACTIVITY, _BOOKKEEPING_RETRY, run_id
            )
        except Exception as exc:
            plan = {"status": "failed", "error": f"the run could not be planned: {_reason(exc)}"}
        if plan["status"] != "ready":
            yield context.call_activity_with_retry(
                FINISH_ACTIVITY, _BOOKKEEPING_RETRY,
                {"run_id": run_id, "status": plan["status"], "error": plan.get("error"), "steps": {}},
            )  # fmt: skip
            return {"status": plan["status"]}
        cancel = context.wait_for_external_event(CANCEL_EVENT)
        steps = PlanWalk(plan["steps"])
        handlers = PlanWalk(plan["on_failure"], sequential=True)
        outcome = yield from _walk(context, run_id, steps, cancel, None)
        status, error = "succeeded", None
        if outcome == "canceled":
            status, error = "canceled", "canceled while running"
            steps.finish_unstarted("canceled")
            handlers.finish_unstarted("skipped")
        elif steps.failure is not None:
            status = "failed"
            error = f"step {steps.failure['step']} failed: {steps.failure['error']}"
            steps.finish_unstarted("skipped")
            if (yield from _walk(context, run_id, handlers, cancel, steps.failure)) == "canceled":
                status, error = "canceled", "canceled while its on_failure handlers ran"
                handlers.finish_unstarted("canceled")
        else:
            handlers.finish_unstarted("skipped")
        final = {**steps.summary(), **handlers.summary()}
        context.set_custom_status({**_progress(steps), "status": status})
        yield context.call_activity_with_retry(
            FINISH_ACTIVITY, _BOOKKEEPING_RETRY,
            {"run_id": run_id, "status": status, "error": error, "steps": final},
        )  # fmt: skip
        return {"status": status, "error": error}

    @blueprint.activity_trigger(input_name="runid")
    async def workflow_plan(runid: str) -> dict[str, Any]:
        # Off the worker's threads: on an instance that has not built the run's Python
        # environment yet, planning installs its packages first.
        return await run_long(
            "steps",
            engine.plan,
            runid,
            deadline_seconds=float(services.settings.host_limits.step_seconds),
            on_deadline=lambda: {"status": "failed", "error": "the run could not be planned in time"},
        )

    @blueprint.activity_trigger(input_name="request")
    async def workflow_step(request: dict) -> dict[str, Any]:
        # Async, its work on a pool of its own: a long step must not hold a worker thread.
        timeout = request.get("timeout")
        return await run_long(
            "steps",
            services.step_executor.run_attempt,
            request,
            deadline_seconds=float(timeout) if timeout else None,
            on_deadline=lambda: {"ok": False, "error": f"timed out after {float(timeout):g} s"},
        )

    @blueprint.activity_trigger(input_name="request")
    def workflow_record(request: dict) -> None:
        engine.record(request)

    @blueprint.activity_trigger(input_name="request")
    def workflow_finish(request: dict) -> dict[str, Any]:
        return engine.finish(request)

    return blueprint


def _walk(
    context: df.DurableOrchestrationContext,
    run_id: str,
    walk: PlanWalk,
    cancel: Any,
    failure: dict[str, str] | None,
) -> Generator[Any, Any, str]:
    """Run ``walk``'s steps to the end; "canceled" when the cancel event arrived, else "done"."""
    pending: dict[Any, tuple[str, str]] = {}
    attempts: dict[str, Any] = {}
    deadlines: dict[str, Any] = {}

    def start(name: str) -> None:
        attempt = walk.start(name)
        timeout = walk.specs[name]["timeout"]
        # ``timeout``: the attempt's time limit in seconds, so the activity can stop itself too.
        request = {"run_id": run_id, "step": name, "attempt": attempt, "failure": failure, "timeout": timeout}
        task = context.call_activity(STEP_ACTIVITY, request)
        pending[task] = (name, "attempt")
        attempts[name] = task
        if timeout:  # a plan made before every step had one may hold None
            timer = context.create_timer(context.current_utc_datetime + timedelta(seconds=timeout))
            pending[timer] = (name, "timeout")
            deadlines[name] = timer

    while True:
        for name in walk.ready():
            start(name)
        if not pending:
            return "done"
        context.set_custom_status(_progress(walk))
        winner = yield context.task_any([cancel, *pending])
        if winner is cancel:
            return (yield from _stop(context, pending))
        name, kind = pending.pop(winner)
        delay: float | None = None
        if kind == "backoff":
            start(name)
            continue
        if kind == "attempt":
            attempts.pop(name, None)
            timer = deadlines.pop(name, None)
            if timer is not None:
                pending.pop(timer, None)
                if not timer.is_completed:
                    timer.cancel()
            result = winner.result
            if isinstance(result, dict) and result.get("ok"):
                walk.succeeded(name)
                continue
            if isinstance(result, dict) and result.get("canceled"):
                # The step saw the cancel before the orchestration's event arrived.
                return (yield from _stop(context, pending))
            error = result.get("error") if isinstance(result, dict) else _reason(result)
            delay = walk.attempt_failed(name, str(error))
        else:  # the attempt's timeout fired first; its late result will be ignored
            pending.pop(attempts.pop(name), None)
            deadlines.pop(name, None)
            attempt = walk.state[name]["attempt"]
            error = f"timed out after {walk.specs[name]['timeout']:g} s (attempt {attempt})"
            if walk.specs[name].get("timeout_note"):
                error += f": {walk.specs[name]['timeout_note']}"
            delay = walk.attempt_failed(name, error, timed_out=True)
            yield context.call_activity_with_retry(
                RECORD_ACTIVITY, _BOOKKEEPING_RETRY,
                {"run_id": run_id, "step": name, "attempt": attempt, "error": error,
                 "status": "retrying" if delay is not None else "timed_out"},
            )  # fmt: skip
        if delay is not None:
            timer = context.create_timer(context.current_utc_datetime + timedelta(seconds=delay))
            pending[timer] = (name, "backoff")


def _stop(
    context: df.DurableOrchestrationContext, pending: dict[Any, tuple[str, str]]
) -> Generator[Any, Any, str]:
    """End a canceled walk: timers are dropped, and running attempts get a short grace to see
    the cancel flag, kill their commands and write their last log lines before the run ends."""
    attempts = [task for task, (_, kind) in pending.items() if kind == "attempt" and not task.is_completed]
    for task, (_, kind) in pending.items():
        if kind != "attempt" and not task.is_completed:
            task.cancel()
    if attempts:
        grace = context.create_timer(context.current_utc_datetime + timedelta(seconds=CANCEL_GRACE_SECONDS))
        ended = yield context.task_any([context.task_all(attempts), grace])
        if ended is not grace:
            grace.cancel()
    return "canceled"


def _progress(walk: PlanWalk) -> dict[str, Any]:
    """Each step's state while the custom status fits well under the extension's 16 KB of UTF-16
    (over it the orchestration fails); counts per state for a plan too large for that."""
    progress: dict[str, Any] = {"status": "running", "steps": walk.summary()}
    if custom_status.utf16_size(progress) <= _PROGRESS_BUDGET_BYTES:
        return progress
    summary = progress["steps"]
    counts: dict[str, int] = {}
    for status, _attempt in summary.values():
        counts[status] = counts.get(status, 0) + 1
    return {"status": "running", "counts": counts}


def _reason(exc: object) -> str:
    # A failed activity reaches the orchestrator as Exception("<Reason> \n <Details>").
    return str(exc).split("\n", 1)[0].strip()[:500]
