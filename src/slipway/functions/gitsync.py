"""GitHub sync bindings: the webhook, the queue trigger, the sync orchestration and its activity.

The webhook only verifies and enqueues. The queue trigger records the request and starts the
singleton orchestration ``workspace-sync`` or, when it runs already, wakes it: one sync at a
time, and pushes arriving during a sync collapse into one more pass to the newest head. Each
generation of the orchestration runs one pass (with its fetch retries) and continues as new for
the next, so its history stays bounded however long pushes keep arriving.

Wake-ups are consumed exactly once whatever the SDK and the extension buffer: a generation
waits only for the event named after itself (``sync_requested-<generation>``, the number the
queue trigger reads from the instance's input), so a wake-up raised twice, carried over by
continue-as-new, or handed again by the SDK to a later wait (azure-functions-durable 1.7
gives a buffered event to every wait for its name) never reaches another generation. A
wake-up that finds its generation gone is not needed: the request it announces is written
before it, and every later generation starts with a pass that reads the requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from slipway.bootstrap import Services
from slipway.functions.offload import run_long
from slipway.names import SYNC_QUEUE

log = logging.getLogger("slipway.functions.gitsync")

SYNC_INSTANCE = "workspace-sync"
WAKE_EVENT = "sync_requested"
# Waits between tries of a pass whose fetch failed (network, GitHub outage).
FETCH_RETRY_SECONDS = (5, 15, 45, 120)
# How long a finished pass waits for more requests before the orchestration ends.
LINGER_SECONDS = 5
# The longest message the status shows; the journal row keeps the whole of it.
_STATUS_MESSAGE_CHARS = 1000
_TRIGGERS = {"push", "manual", "reconcile"}
# Every five minutes, a `git ls-remote` catches pushes whose webhook never arrived.
RECONCILE_SCHEDULE = "0 */5 * * * *"


def parse_request(body: bytes) -> dict[str, str]:
    """A sync queue message, or ValueError (the host retries, then parks it in the poison queue)."""
    message = json.loads(body)
    if not isinstance(message, dict) or message.get("trigger") not in _TRIGGERS:
        raise ValueError(f"not a sync request: expected a JSON object with trigger in {sorted(_TRIGGERS)}")
    delivery = message.get("delivery") or ""
    if not isinstance(delivery, str) or len(delivery) > 100:
        raise ValueError("delivery must be a string of at most 100 characters")
    return {"trigger": message["trigger"], "delivery": delivery}


def gitsync_blueprint(services: Services) -> df.Blueprint:
    blueprint = df.Blueprint()
    gitsync = services.gitsync
    requests = services.sync_requests

    @blueprint.function_name("github_webhook")
    @blueprint.route(route="api/github/webhook", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
    def github_webhook(req: func.HttpRequest) -> func.HttpResponse:
        headers = {k.lower(): v for k, v in req.headers.items()}
        answer = services.webhook.handle(headers, req.get_body())
        return func.HttpResponse(
            json.dumps(answer.body), status_code=answer.status, mimetype="application/json"
        )

    @blueprint.queue_trigger(arg_name="msg", queue_name=SYNC_QUEUE, connection="AzureWebJobsStorage")
    @blueprint.durable_client_input(client_name="client")
    async def gitsync_requested(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
        request = parse_request(msg.get_body())
        await asyncio.to_thread(requests.add, request["trigger"], request["delivery"])
        if await _wake(client):
            return
        try:
            await client.start_new("workspace_sync", SYNC_INSTANCE, None)
        except Exception:
            # Started by a concurrent message between our check and our start: wake that one.
            if not await _wake(client):
                raise

    @blueprint.orchestration_trigger(context_name="context")
    def workspace_sync(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
        generation = generation_of(context.get_input())
        failures = 0
        while True:  # one pass, tried again after a failed fetch
            try:
                outcome: dict[str, Any] = yield context.call_activity("gitsync_pass", None)
            except Exception as exc:
                # An activity that crashed (storage outage, a bug) is retried like a failed fetch;
                # the requests it did not finish stay pending.
                outcome = {"result": "failed", "retryable": True, "more": False, "message": str(exc)[:500]}
            if outcome["retryable"] and failures < len(FETCH_RETRY_SECONDS):
                delay = FETCH_RETRY_SECONDS[failures]
                failures += 1
                context.set_custom_status(
                    {"state": "retrying", "in_seconds": delay, "message": _brief(outcome["message"])}
                )
                yield context.create_timer(context.current_utc_datetime + timedelta(seconds=delay))
                continue
            break
        context.set_custom_status(
            {"state": "idle", "last": {**outcome, "message": _brief(outcome.get("message"))}}
        )
        if not outcome["more"]:
            wake = context.wait_for_external_event(wake_event(generation))
            timer = context.create_timer(context.current_utc_datetime + timedelta(seconds=LINGER_SECONDS))
            winner = yield context.task_any([wake, timer])
            if winner is timer:
                return outcome
            timer.cancel()
        # The next pass in a fresh generation; the requests it serves are in the table.
        context.continue_as_new({"generation": generation + 1})
        return None

    @blueprint.timer_trigger(schedule=RECONCILE_SCHEDULE, arg_name="timer", run_on_startup=False)
    def gitsync_reconcile(timer: func.TimerRequest) -> None:
        gitsync.poll_remote()

    @blueprint.activity_trigger(input_name="request")
    async def gitsync_pass(request: object) -> dict[str, Any]:
        # A first sync of a big repository fetches for minutes: off the worker's thread pool.
        limits = services.settings.host_limits

        def too_long() -> dict[str, Any]:
            message = f"the sync pass did not finish within {limits.step_seconds:g} s ({limits.explain()})"
            return {"result": "failed", "retryable": True, "more": False, "message": message}

        return await run_long(
            "sync", gitsync.run_pass, deadline_seconds=limits.step_seconds, on_deadline=too_long
        )

    return blueprint


def wake_event(generation: int) -> str:
    return f"{WAKE_EVENT}-{generation}"


def generation_of(given: object) -> int:
    """The generation an orchestration input names (0 for none). The input may reach the
    client as the JSON text the SDK serialized, even twice over, or parsed."""
    for _ in range(3):
        if not isinstance(given, str):
            break
        try:
            given = json.loads(given)
        except ValueError:
            return 0
    if isinstance(given, dict):
        value = given.get("generation")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return 0


def _brief(message: object) -> object:
    """A message as the custom status carries it: git's errors can be long, the status may not
    (16 KB of UTF-16 for the whole status, slipway.functions.custom_status)."""
    if isinstance(message, str) and len(message) > _STATUS_MESSAGE_CHARS:
        return message[:_STATUS_MESSAGE_CHARS] + "…"
    return message


async def _wake(client: df.DurableOrchestrationClient) -> bool:
    """Raise the wake-up event if the sync orchestration runs; False when it does not."""
    status = await client.get_status(SYNC_INSTANCE)
    running = getattr(status, "runtime_status", None) in (
        df.OrchestrationRuntimeStatus.Running,
        df.OrchestrationRuntimeStatus.Pending,
        df.OrchestrationRuntimeStatus.ContinuedAsNew,  # between two passes
    )
    if running:
        await client.raise_event(SYNC_INSTANCE, wake_event(generation_of(status.input_)), None)
    return running
