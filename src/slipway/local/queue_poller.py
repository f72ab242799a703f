"""Queue triggers, delivered from Azurite the way the Functions host delivers them.

For each queue-triggered function: receive up to ``batchSize`` messages, invoke the function
for each (its durable client binding pointed at the runner's Durable endpoint), delete the
message on success; on failure make it visible again after ``visibilityTimeout``, and once
it has failed ``maxDequeueCount`` times copy it to ``<queue>-poison`` and delete it. Idle
queues are polled with a growing interval up to ``maxPollingInterval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import azure.functions as func

from slipway.adapters.queues import QueueBus, ReceivedMessage
from slipway.local.hostconfig import HostConfig, resolve_app_settings
from slipway.local.invocation import binding, client_input, queue_metadata, text_or_bytes
from slipway.local.tasks import run_until_stopped
from slipway.local.worker import Worker
from slipway.names import poison_queue

log = logging.getLogger("slipway.local.queues")

_MIN_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class QueueTrigger:
    function: func.Function
    queue: str
    message_name: str
    client_name: str | None


def queue_triggers(functions: Sequence[func.Function], env: Mapping[str, str]) -> list[QueueTrigger]:
    found = []
    for function in functions:
        trigger = binding(function, "queueTrigger")
        if trigger is None:
            continue
        client = binding(function, "durableClient")
        found.append(
            QueueTrigger(
                function=function,
                queue=resolve_app_settings(trigger["queueName"], env),
                message_name=trigger["name"],
                client_name=client["name"] if client else None,
            )
        )
    return found


class QueuePoller:
    """Polls every queue trigger's queue until ``stop`` is set."""

    def __init__(
        self,
        triggers: list[QueueTrigger],
        queues: QueueBus,
        host: HostConfig,
        *,
        durable_client_json: Callable[[], str],
        worker: Worker,
    ) -> None:
        self._triggers = triggers
        self._queues = queues
        self._host = host
        self._client_json = durable_client_json
        self._worker = worker

    async def run(self, stop: asyncio.Event) -> None:
        await run_until_stopped([self._poll(trigger, stop) for trigger in self._triggers], stop)

    async def _poll(self, trigger: QueueTrigger, stop: asyncio.Event) -> None:
        options = self._host.queues
        interval = _MIN_POLL_SECONDS
        # While a message is being processed it stays invisible for the function timeout,
        # as the host keeps renewing it; a crash of the runner makes it visible again later.
        limit = self._host.function_timeout
        lease = int(limit.total_seconds()) if limit is not None else 600
        in_flight: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            room = options.batch_size + options.new_batch_threshold - len(in_flight)
            messages: list[ReceivedMessage] = []
            if room > 0 and len(in_flight) <= options.new_batch_threshold:
                try:
                    messages = await asyncio.to_thread(
                        self._queues.receive_messages,
                        trigger.queue,
                        max_messages=min(options.batch_size, 32),
                        visibility_timeout=lease,
                    )
                except Exception:
                    log.exception("queue receive failed", extra={"queue": trigger.queue})
            for message in messages:
                task = asyncio.create_task(self._deliver(trigger, message))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if messages:
                interval = _MIN_POLL_SECONDS
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
            interval = min(interval * 2, max(options.max_polling_interval.total_seconds(), _MIN_POLL_SECONDS))
        for task in list(in_flight):
            task.cancel()

    def _decode(self, message: ReceivedMessage) -> bytes:
        if self._host.queues.message_encoding == "none":
            return message.wire_text.encode("utf-8")
        return message.decoded_body()

    async def _deliver(self, trigger: QueueTrigger, message: ReceivedMessage) -> None:
        name = trigger.function.get_function_name()
        try:
            inputs: dict[str, Any] = {trigger.message_name: text_or_bytes(self._decode(message))}
            if trigger.client_name:
                inputs[trigger.client_name] = client_input(self._client_json())
            metadata = queue_metadata(
                message_id=message.id,
                dequeue_count=message.dequeue_count,
                pop_receipt=message.pop_receipt,
                insertion_time=message.insertion_time,
                expiration_time=message.expiration_time,
                next_visible=message.next_visible_on,
            )
            (await self._worker.invoke(name, inputs, trigger_metadata=metadata)).raise_if_failed()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await asyncio.to_thread(self._handle_failure, trigger, message, name, exc)
            return
        await asyncio.to_thread(self._queues.delete_message, trigger.queue, message)

    def _handle_failure(
        self, trigger: QueueTrigger, message: ReceivedMessage, name: str, exc: Exception
    ) -> None:
        options = self._host.queues
        context = {
            "function": name,
            "queue": trigger.queue,
            "message_id": message.id,
            "dequeue_count": message.dequeue_count,
        }
        log.warning("queue function failed: %s: %s", type(exc).__name__, exc, extra=context)
        if message.dequeue_count >= options.max_dequeue_count:
            # The poison queue gets the message exactly as it was on the wire.
            self._queues.send_wire(poison_queue(trigger.queue), message.wire_text)
            self._queues.delete_message(trigger.queue, message)
            log.error(
                "message moved to poison queue",
                extra={**context, "poison_queue": poison_queue(trigger.queue)},
            )
            return
        self._queues.update_visibility(
            trigger.queue, message, visibility_timeout=int(options.visibility_timeout.total_seconds())
        )
