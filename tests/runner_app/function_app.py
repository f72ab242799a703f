"""A test-only Functions app for the local runner: Slipway's app plus a probe queue trigger.

The queue trigger starts an orchestration with the real durable client; the orchestration
fans out to activities and records its result in the temp folder, where the test reads it.
A message with ``"fail": true`` raises, so it ends in the poison queue.
"""

import json
import os
from pathlib import Path

import azure.durable_functions as df
import azure.functions as func

from slipway.functions import create_function_app

app = create_function_app(os.environ, app_root=Path(__file__).parent)
probe = df.Blueprint()


@probe.queue_trigger(arg_name="msg", queue_name="%PROBE_QUEUE%", connection="AzureWebJobsStorage")
@probe.durable_client_input(client_name="client")
async def start_probe(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    body = json.loads(msg.get_body())
    if body.get("fail"):
        raise ValueError(f"probe message {msg.id} asked to fail (delivery {msg.dequeue_count})")
    await client.start_new("probe_orchestrator", instance_id=body["id"], client_input=body)


@probe.orchestration_trigger(context_name="context")
def probe_orchestrator(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
    data = context.get_input()
    parts = yield context.task_all([context.call_activity("probe_part", {"part": i}) for i in range(3)])
    yield context.call_activity("record_probe", {"id": data["id"], "parts": parts})
    return parts


@probe.activity_trigger(input_name="item")
def probe_part(item: dict) -> int:
    return int(item["part"]) * 10


@probe.activity_trigger(input_name="record")
def record_probe(record: dict) -> str:
    target = Path(os.environ["SLIPWAY_TEMP_DIR"]) / f"probe-{record['id']}.json"
    scratch = target.with_suffix(".tmp")
    scratch.write_text(json.dumps(record), encoding="utf-8")
    scratch.replace(target)
    return str(target)


@probe.timer_trigger(schedule="%PROBE_SCHEDULE%", arg_name="timer", run_on_startup=False)
def probe_tick(timer: func.TimerRequest) -> None:
    ticks = Path(os.environ["SLIPWAY_TEMP_DIR"]) / "ticks.txt"
    with ticks.open("a", encoding="utf-8") as handle:
        handle.write("tick\n")


app.register_functions(probe)
