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
import pytest

from slipway.functions.gitsync import SYNC_INSTANCE, generation_of, gitsync_blueprint, wake_event
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


class BurstGitSync:
    """Sync passes as the service runs them, over a list of waiting requests, with a burst of
    pushes arriving in one chosen pass: each push adds its request, then wakes the
    orchestration as the queue trigger does (read the status, raise the event it names),
    twice over as a redelivered queue message would."""

    def __init__(self, harness_ref: list[DurableHarness], *, burst: int, in_pass: int, when: str) -> None:
        self.harness_ref = harness_ref
        self.burst, self.in_pass, self.when = burst, in_pass, when
        self.waiting: list[str] = ["first push"]
        self.calls = 0
        self.passes = 0  # calls that had requests to serve
        self.history_lengths: list[int] = []

    def _push(self, name: str) -> None:
        harness = self.harness_ref[0]
        self.waiting.append(name)
        status = harness.get_status(SYNC_INSTANCE)
        assert status is not None
        for _ in range(2):
            harness.raise_event(SYNC_INSTANCE, wake_event(generation_of(status["input"])), None)

    def run_pass(self) -> dict[str, Any]:
        self.calls += 1
        if self.calls > 1000:
            raise AssertionError("the sync orchestration spins")
        self.history_lengths.append(len(self.harness_ref[0].history(SYNC_INSTANCE)))
        served, self.waiting = self.waiting, []
        self.passes += bool(served)
        arriving = [f"push {n}" for n in range(self.burst)] if self.calls == self.in_pass else []
        if self.when == "during":
            for name in arriving:
                self._push(name)
        more = bool(self.waiting)
        if self.when == "after":
            # Arrive once the pass has answered that nothing waits: the orchestrator is about
            # to wait for its wake-up, which the SDK already holds (several times over).
            for name in arriving:
                self._push(name)
        return {"result": "succeeded", "retryable": False, "more": more, "message": ""}

    def poll_remote(self) -> bool:
        return False


def _run_singleton(
    gitsync: BurstGitSync, harness_ref: list[DurableHarness], carry_over: str
) -> DurableHarness:
    """Start the sync singleton over ``gitsync``'s passes and drive it until it rests; it must end Completed."""
    services = SimpleNamespace(
        gitsync=gitsync, sync_requests=None, webhook=None, settings=SimpleNamespace(host_limits=HostLimits())
    )
    app = func.FunctionApp()
    app.register_functions(gitsync_blueprint(services))  # type: ignore[arg-type]
    harness = DurableHarness(app, clock=VirtualClock(), carry_over=carry_over)
    harness_ref.append(harness)
    harness.start_new("workspace_sync", SYNC_INSTANCE)
    asyncio.run(harness.run_until_idle())
    status = harness.get_status(SYNC_INSTANCE)
    assert status is not None and status["runtimeStatus"] == "Completed"
    return harness


@pytest.mark.parametrize("carry_over", ["after", "episode"])
@pytest.mark.parametrize("when", ["during", "after"])
@pytest.mark.parametrize("burst", [2, 10, 100])
def test_a_burst_of_pushes_is_one_more_pass_and_the_singleton_then_ends(
    burst: int, when: str, carry_over: str
) -> None:
    harness_ref: list[DurableHarness] = []
    gitsync = BurstGitSync(harness_ref, burst=burst, in_pass=1, when=when)
    harness = _run_singleton(gitsync, harness_ref, carry_over)
    # The first push, then every push of the burst collapsed into one pass; no pass that finds
    # nothing to do, however many wake-ups were raised, duplicated and carried over.
    assert (gitsync.passes, gitsync.calls) == (2, 2)
    assert gitsync.waiting == []
    # Each pass starts a fresh generation: the history each pass sees stays the same size.
    assert max(gitsync.history_lengths) == min(gitsync.history_lengths)
    assert len(harness.history(SYNC_INSTANCE)) < 20


@pytest.mark.parametrize("carry_over", ["after", "episode"])
def test_pushes_in_every_pass_cost_one_pass_each_then_the_singleton_ends(carry_over: str) -> None:
    harness_ref: list[DurableHarness] = []

    class Steady(BurstGitSync):
        def run_pass(self) -> dict[str, Any]:
            self.in_pass = self.calls + 1 if self.calls < 30 else 0  # a push in each of 30 passes
            return super().run_pass()

    gitsync = Steady(harness_ref, burst=1, in_pass=1, when="during")
    _run_singleton(gitsync, harness_ref, carry_over)
    assert (gitsync.passes, gitsync.calls) == (31, 31)


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
