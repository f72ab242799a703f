"""The SDK's own durable client works against the local stand-in for the extension's HTTP API.

Each test serves ``create_rpc_app`` with uvicorn on a free port, builds the real
``DurableOrchestrationClient`` from ``client_binding_json`` and uses it as queue-trigger code
would, while ``DurableHarness.serve`` runs the orchestrations.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import azure.durable_functions as df
import azure.functions as func
import durable_fixtures as fx
import httpx
import pytest
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus
from azure.durable_functions.models.utils import http_utils

from slipway.functions.catalog import find_function
from slipway.local.durable import DurableHarness, SystemClock
from slipway.local.durable_rpc import client_binding_json, create_rpc_app

T = TypeVar("T")

Scenario = Callable[[df.DurableOrchestrationClient, DurableHarness, str], Awaitable[T]]


@pytest.fixture(autouse=True)
def _fresh_probes() -> None:
    fx.PROBES.reset()


def run_with_client(live_server: Any, scenario: Scenario[T]) -> T:
    """Serve the API, run the harness, and hand ``scenario`` a real client bound to both."""
    harness = DurableHarness(fx.app, clock=SystemClock(), task_hub="SlipwayTest")

    async def main(base_url: str) -> T:
        stop = asyncio.Event()
        driver = asyncio.create_task(harness.serve(stop))
        client = df.DurableOrchestrationClient(client_binding_json(f"{base_url}/durabletask/", "SlipwayTest"))
        try:
            return await asyncio.wait_for(scenario(client, harness, base_url), timeout=15)
        finally:
            stop.set()
            await driver
            # The SDK keeps one aiohttp session per process, bound to the loop that made it.
            await http_utils._close_session()

    with live_server(create_rpc_app(harness)) as server:
        return asyncio.run(main(server.url))


async def settled(client: df.DurableOrchestrationClient, instance_id: str, *wanted: str) -> Any:
    """Poll the client's get_status until the instance reaches one of ``wanted``."""
    for _ in range(500):
        status = await client.get_status(instance_id)
        if status and status.runtime_status is not None and status.runtime_status.value in wanted:
            return status
        await asyncio.sleep(0.01)
    raise AssertionError(f"{instance_id} never reached {wanted}")


def test_client_starts_an_orchestration_and_reads_its_completed_status(live_server: Any) -> None:
    async def scenario(client: df.DurableOrchestrationClient, harness: DurableHarness, base: str) -> Any:
        instance_id = await client.start_new("chain", None, "A")
        return instance_id, await settled(client, instance_id, "Completed")

    instance_id, status = run_with_client(live_server, scenario)
    assert len(instance_id) == 32
    assert status.instance_id == instance_id
    assert status.name == "chain"
    assert status.runtime_status is OrchestrationRuntimeStatus.Completed
    assert status.output == {"letters": "ABCD", "doubled_length": 8}
    # As in Azure: the client sent the input JSON-encoded, so the status shows JSON text.
    assert status.input_ == '"A"'
    assert status.created_time is not None and status.last_updated_time is not None


def test_client_raises_an_event_to_a_waiting_instance_and_sees_custom_status(live_server: Any) -> None:
    async def scenario(client: df.DurableOrchestrationClient, harness: DurableHarness, base: str) -> Any:
        await client.start_new("wait_for_approval", "order-7")
        waiting = await settled(client, "order-7", "Running")
        while waiting.custom_status != {"stage": "waiting for approval"}:
            await asyncio.sleep(0.01)
            waiting = await client.get_status("order-7")
        await client.raise_event("order-7", "approval", {"by": "ana"})
        done = await settled(client, "order-7", "Completed")
        with pytest.raises(Exception, match="Instance with ID order-7 is gone"):
            await client.raise_event("order-7", "approval", "again")
        return waiting, done

    waiting, done = run_with_client(live_server, scenario)
    assert waiting.runtime_status is OrchestrationRuntimeStatus.Running
    assert done.custom_status == {"stage": "done"}
    # The extension stores the client's JSON-encoded event data as a string (durable-python#295).
    assert json.loads(done.output["decision"]) == {"by": "ana"}


def test_client_terminates_a_running_instance_with_a_reason(live_server: Any) -> None:
    async def scenario(client: df.DurableOrchestrationClient, harness: DurableHarness, base: str) -> Any:
        await client.start_new("wait_for_approval", "order-8")
        await settled(client, "order-8", "Running")
        await client.terminate("order-8", "cancelled by user")
        terminated = await settled(client, "order-8", "Terminated")
        # Terminating a finished instance is a 410, which the client accepts silently.
        await client.terminate("order-8", "again")
        return terminated

    terminated = run_with_client(live_server, scenario)
    assert terminated.runtime_status is OrchestrationRuntimeStatus.Terminated
    assert terminated.output == "cancelled by user"


def test_starting_a_running_instance_again_surfaces_as_the_sdk_exception(live_server: Any) -> None:
    async def scenario(client: df.DurableOrchestrationClient, harness: DurableHarness, base: str) -> Any:
        await client.start_new("wait_for_approval", "singleton")
        with pytest.raises(Exception) as refused:
            await client.start_new("wait_for_approval", "singleton")
        with pytest.raises(Exception) as unknown:
            await client.start_new("no_such_orchestrator", None, {"x": 1})
        return refused.value, unknown.value

    refused, unknown = run_with_client(live_server, scenario)
    # Azure answers 500 with the DTFx message in the body; the client raises Exception(body).
    (body,) = refused.args
    assert body["ExceptionMessage"] in {
        "An Orchestration instance with the status Pending already exists.",
        "An Orchestration instance with the status Running already exists.",
    }
    assert str(unknown).startswith("The function 'no_such_orchestrator' doesn't exist")


def test_unknown_instances_read_as_empty_status_and_refuse_events_and_termination(live_server: Any) -> None:
    async def scenario(client: df.DurableOrchestrationClient, harness: DurableHarness, base: str) -> Any:
        status = await client.get_status("nobody")
        with pytest.raises(Exception, match=r"No instance with ID nobody found\."):
            await client.raise_event("nobody", "approval", True)
        with pytest.raises(Exception, match=r"No instance with ID 'nobody' found\."):
            await client.terminate("nobody", "why")
        return status

    status = run_with_client(live_server, scenario)
    assert not status
    assert status.runtime_status is None


def test_check_status_links_from_the_client_answer_over_http(live_server: Any) -> None:
    async def scenario(client: df.DurableOrchestrationClient, harness: DurableHarness, base: str) -> Any:
        instance_id = await client.start_new("chain", None, "A")
        await settled(client, instance_id, "Completed")
        request = func.HttpRequest("POST", f"{base}/api/start", body=b"")
        response = client.create_check_status_response(request, instance_id)
        links = json.loads(response.get_body())
        async with httpx.AsyncClient() as http:
            answer = await http.get(links["statusQueryGetUri"])
        listed = await client.get_status_all()
        return base, instance_id, response, links, answer, listed

    base, instance_id, response, links, answer, listed = run_with_client(live_server, scenario)
    assert response.status_code == 202
    assert links["id"] == instance_id
    assert links["statusQueryGetUri"].startswith(
        f"{base}/durabletask/instances/{instance_id}?taskHub=SlipwayTest"
    )
    assert answer.status_code == 200
    assert answer.json()["output"] == {"letters": "ABCD", "doubled_length": 8}
    assert [status.instance_id for status in listed] == [instance_id]


def test_queue_trigger_code_starts_an_orchestration_through_its_durable_client_binding(
    live_server: Any,
) -> None:
    async def scenario(client: df.DurableOrchestrationClient, harness: DurableHarness, base: str) -> Any:
        function = find_function(fx.app, "start_from_queue")
        assert function is not None
        message = func.QueueMessage(body=json.dumps({"run_id": "run-42", "letter": "K"}).encode())
        # What the host passes for the durableClient binding: the JSON, which the SDK's
        # decorator turns into a DurableOrchestrationClient before the user code runs.
        binding = client_binding_json(f"{base}/runtime/webhooks/durabletask/", "SlipwayTest")
        await function.get_user_function()(message=message, client=binding)
        return await harness.wait_for_status("run-42", timeout=5)

    status = run_with_client(live_server, scenario)
    assert (status["name"], status["runtimeStatus"]) == ("chain", "Completed")
    assert status["output"] == {"letters": "KLMN", "doubled_length": 8}
