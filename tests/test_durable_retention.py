"""Bounded histories and purging, through the real Durable replay code and the real client.

Continue-as-new hands events that arrive after it to the next generation (as DTFx does); the
sync singleton continues as new after every pass, so however many pushes arrive its history
stays small; the retention timer purges finished instances, and only those, over the
extension's HTTP API.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import httpx

from slipway.functions.gitsync import SYNC_INSTANCE, WAKE_EVENT, gitsync_blueprint
from slipway.functions.retention import purge_finished
from slipway.hostlimits import HostLimits
from slipway.local.durable import DurableHarness, VirtualClock
from slipway.local.durable_rpc import client_binding_json, create_rpc_app

bp = df.Blueprint()


@bp.orchestration_trigger(context_name="context")
def relay(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
    """First generation: wait for "go", then continue as new; the second waits for "stop"."""
    if context.get_input() is None:
        yield context.wait_for_external_event("go")
        context.continue_as_new({"generation": 2})
        return None
    stop = yield context.wait_for_external_event("stop")
    return {"stopped": stop}


@bp.orchestration_trigger(context_name="context")
def waits_forever(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
    yield context.wait_for_external_event("never")


@bp.orchestration_trigger(context_name="context")
def ends_at_once(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
    yield context.create_timer(context.current_utc_datetime + timedelta(seconds=1))
    return "done"


def _harness() -> DurableHarness:
    app = func.FunctionApp()
    app.register_functions(bp)
    return DurableHarness(app, clock=VirtualClock())


def test_an_event_in_the_same_episode_after_continue_as_new_reaches_the_next_generation() -> None:
    harness = _harness()
    instance_id = harness.start_new("relay")
    asyncio.run(harness.run_until_idle())
    # Both arrive before the next episode: one batch, and the orchestrator continues as new on
    # "go" before the SDK reads "stop", so DTFx carries "stop" over.
    harness.raise_event(instance_id, "go", None)
    harness.raise_event(instance_id, "stop", "now")
    asyncio.run(harness.run_until_idle())

    status = harness.get_status(instance_id)
    assert status is not None
    assert (status["runtimeStatus"], status["output"]) == ("Completed", {"stopped": '"now"'})


class FakeGitSync:
    """A pass that takes a moment, during which the next push arrives (until ``pushes`` are done)."""

    def __init__(self, harness_ref: list[DurableHarness], pushes: int) -> None:
        self.harness_ref = harness_ref
        self.pushes_left = pushes
        self.passes = 0
        self.history_lengths: list[int] = []

    def run_pass(self) -> dict[str, Any]:
        harness = self.harness_ref[0]
        self.passes += 1
        self.history_lengths.append(len(harness.history(SYNC_INSTANCE)))
        if self.passes > 1000:
            raise AssertionError("the sync orchestration spins")
        if self.pushes_left:
            self.pushes_left -= 1
            harness.raise_event(SYNC_INSTANCE, WAKE_EVENT, None)  # a push during the pass
        return {"result": "succeeded", "retryable": False, "more": False, "message": ""}

    def poll_remote(self) -> bool:
        return False


def test_the_sync_singleton_handles_many_pushes_with_a_bounded_history_and_then_ends() -> None:
    harness_ref: list[DurableHarness] = []
    gitsync = FakeGitSync(harness_ref, pushes=200)
    services = SimpleNamespace(
        gitsync=gitsync, sync_requests=None, webhook=None, settings=SimpleNamespace(host_limits=HostLimits())
    )
    app = func.FunctionApp()
    app.register_functions(gitsync_blueprint(services))  # type: ignore[arg-type]
    harness = DurableHarness(app, clock=VirtualClock())
    harness_ref.append(harness)

    harness.start_new("workspace_sync", SYNC_INSTANCE)
    asyncio.run(harness.run_until_idle())

    status = harness.get_status(SYNC_INSTANCE)
    assert status is not None and status["runtimeStatus"] == "Completed"
    # One pass per push, plus the first: a push raised during a pass is one more pass, not a spin.
    assert gitsync.passes == 201
    # Every pass starts a fresh generation: the history seen by each pass stays the same size.
    assert max(gitsync.history_lengths) == min(gitsync.history_lengths)
    assert len(harness.history(SYNC_INSTANCE)) < 20


async def _purge_over_rpc(harness: DurableHarness, created_before: datetime) -> int:
    transport = httpx.ASGITransport(app=create_rpc_app(harness))
    async with httpx.AsyncClient(transport=transport, base_url="http://durable") as http:

        async def delete(url: str, function_invocation_id: str | None = None) -> list[Any]:
            response = await http.delete(url)
            return [response.status_code, response.json() if response.content else None]

        binding = client_binding_json("http://durable/durabletask/", harness.task_hub)
        client = df.DurableOrchestrationClient(binding)
        client._delete_async_request = delete
        return await purge_finished(client, created_before)


def test_purge_deletes_only_finished_instances_older_than_the_retention() -> None:
    harness = _harness()
    clock = harness.clock
    assert isinstance(clock, VirtualClock)
    old_done = harness.start_new("ends_at_once", "old-done")
    old_running = harness.start_new("waits_forever", "old-running")
    old_terminated = harness.start_new("waits_forever", "old-terminated")
    asyncio.run(harness.run_until_idle())
    harness.terminate(old_terminated, "stopped")
    asyncio.run(harness.run_until_idle())
    clock.advance(timedelta(days=31))
    recent_done = harness.start_new("ends_at_once", "recent-done")
    asyncio.run(harness.run_until_idle())
    cutoff = clock.now() - timedelta(days=30)

    assert asyncio.run(_purge_over_rpc(harness, cutoff)) == 2
    assert harness.get_status(old_done) is None
    assert harness.get_status(old_terminated) is None
    assert harness.get_status(old_running)["runtimeStatus"] == "Running"  # type: ignore[index]
    assert harness.get_status(recent_done)["runtimeStatus"] == "Completed"  # type: ignore[index]
    # Nothing left to purge: the extension answers 404, which the client reads as 0 deleted.
    assert asyncio.run(_purge_over_rpc(harness, cutoff)) == 0
    # A purged id can be started afresh.
    harness.start_new("ends_at_once", old_done)
    asyncio.run(harness.run_until_idle())
    assert harness.get_status(old_done)["runtimeStatus"] == "Completed"  # type: ignore[index]


def test_purge_without_created_time_from_is_refused_as_by_the_extension() -> None:
    harness = _harness()

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_rpc_app(harness))
        async with httpx.AsyncClient(transport=transport, base_url="http://durable") as http:
            return await http.delete("/durabletask/instances?runtimeStatus=Completed")

    response = asyncio.run(call())
    assert response.status_code == 400
    assert json.loads(response.content) == "Please provide value for 'createdTimeFrom' parameter."
