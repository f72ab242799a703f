"""Deployment bindings: the deploys queue, the orchestration ``deployment_run`` and its activities.

``POST /api/deployments`` (or a push to a bound branch) queues ``{"action": "start"}``; the
queue trigger starts ``deployment_run`` with the deployment id as its instance id, so a
redelivered message finds the instance and starts nothing. The orchestrator is the pipeline in
order: wait for its turn (its site's older deployment, a free build slot), build (checkout to
package), publish (waiting while another deployment holds the site's publish lease), verify,
and on a failed verify a rollback to the last good artifact; every path ends in ``finish``.
The ``cancel`` event is raced against each step. Waiting (for its turn, a build slot or the
site's lease) can take hundreds of timers, and every episode replays the whole history, so after
:data:`WAITS_PER_GENERATION` waits the orchestration continues as new, carrying where it was
(the phase, the try it is at): its history stays bounded and the give-up after about two hours
still counts every try. A start message that keeps failing ends in
the poison queue, whose trigger fails the deployment with the reason; a timer settles
deployments whose orchestration is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from slipway.deploy.errors import DeployError
from slipway.deploy.pipeline import DeployPipeline
from slipway.deploy.records import QUEUED
from slipway.deploy.service import CANCEL, parse_message
from slipway.functions.offload import run_long
from slipway.names import DEPLOYS_QUEUE, poison_queue

log = logging.getLogger("slipway.functions.deployments")

ORCHESTRATOR = "deployment_run"
START_ACTIVITY = "deployment_start"
BUILD_ACTIVITY = "deployment_build"
PUBLISH_ACTIVITY = "deployment_publish"
VERIFY_ACTIVITY = "deployment_verify"
ROLLBACK_ACTIVITY = "deployment_rollback"
FINISH_ACTIVITY = "deployment_finish"
CANCEL_EVENT = "cancel"
# While another deployment publishes the site: wait this long between tries, this many times.
LEASE_WAIT_SECONDS = 5
LEASE_WAITS = 60
# Waiting for the site's older deployment or a build slot: 1, 2, 4, 8 s, then every 10 s, for
# at most this many tries (about two hours) before the deployment fails.
TURN_WAIT_MAX_SECONDS = 10
TURN_WAITS = 720
# A generation of ``deployment_run`` waits at most this many times, then continues as new where
# it stopped (each wait adds about ten history events, replayed by every later episode).
WAITS_PER_GENERATION = 20
# Every minute: deployments whose orchestration is gone (a runner restarted, a host recycled).
REAPER_SCHEDULE = "45 * * * * *"
# Network-ish steps (git, the publisher, the site over HTTP) and bookkeeping are retried on an
# exception; a build that fails on its own merits returns {"ok": False} and is not.
_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=5000, max_number_of_attempts=3)


class _Canceled(Exception):
    pass


class _ContinueAsNew(Exception):
    """A generation has waited enough: go on in a fresh one from ``resume``."""

    def __init__(self, resume: dict[str, Any]) -> None:
        super().__init__(resume["phase"])
        self.resume = resume


def deployments_blueprint(pipeline: DeployPipeline) -> df.Blueprint:
    blueprint = df.Blueprint()

    @blueprint.queue_trigger(arg_name="msg", queue_name=DEPLOYS_QUEUE, connection="AzureWebJobsStorage")
    @blueprint.durable_client_input(client_name="client")
    async def deployment_requested(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
        try:
            message = parse_message(msg.get_body())
        except ValueError as exc:
            log.warning("unreadable message in the deploys queue dropped: %s", exc)
            return
        deployment_id = message["deployment_id"]
        status = await client.get_status(deployment_id)
        runtime = getattr(status, "runtime_status", None)
        if message["action"] == CANCEL:
            # ContinuedAsNew: between two generations; the event reaches the next one.
            if runtime in (
                df.OrchestrationRuntimeStatus.Running,
                df.OrchestrationRuntimeStatus.Pending,
                df.OrchestrationRuntimeStatus.ContinuedAsNew,
            ):
                await client.raise_event(deployment_id, CANCEL_EVENT, None)
            return
        if runtime is not None:
            return  # a redelivered message: the orchestration exists already
        try:
            record = await asyncio.to_thread(pipeline.store.get, deployment_id)
        except DeployError:
            log.warning(
                "start message for an unknown deployment dropped", extra={"deployment": deployment_id}
            )
            return
        if record.finished:
            return  # superseded or canceled while it waited in the queue
        try:
            await client.start_new(ORCHESTRATOR, deployment_id, {"deployment_id": deployment_id})
        except Exception:
            # A concurrent delivery of the same message started it between our check and now.
            status = await client.get_status(deployment_id)
            if getattr(status, "runtime_status", None) is None:
                raise

    @blueprint.queue_trigger(
        arg_name="msg", queue_name=poison_queue(DEPLOYS_QUEUE), connection="AzureWebJobsStorage"
    )
    def deployment_request_poisoned(msg: func.QueueMessage) -> None:
        try:
            message = parse_message(msg.get_body())
        except ValueError:
            log.warning("unreadable message in the deploys poison queue dropped")
            return
        if message["action"] == CANCEL:
            return
        try:
            record = pipeline.store.get(message["deployment_id"])
        except DeployError:
            log.warning("poisoned start message for an unknown deployment dropped")
            return
        # Only a deployment still queued: one whose orchestration did start is that one's business.
        if record.status == QUEUED:
            pipeline.finish(
                message["deployment_id"],
                "failed",
                "the deployment could not be started: its start message failed 5 times (see the logs)",
            )

    @blueprint.timer_trigger(schedule=REAPER_SCHEDULE, arg_name="timer", run_on_startup=False)
    @blueprint.durable_client_input(client_name="client")
    async def deployment_reaper(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
        now = datetime.now(UTC)
        for record in await asyncio.to_thread(pipeline.store.unfinished):
            status = await client.get_status(record.id)
            runtime = getattr(status, "runtime_status", None)
            await asyncio.to_thread(
                pipeline.reap, record, runtime.value if runtime is not None else None, now
            )

    @blueprint.orchestration_trigger(context_name="context")
    def deployment_run(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
        request: dict[str, Any] = context.get_input()
        deployment_id: str = request["deployment_id"]
        # Where an earlier generation stopped waiting: {"phase", "attempt", "data", "status"}.
        resume: dict[str, Any] | None = request.get("resume")
        # A cancel raised while the orchestration continues as new is not lost: the extension
        # hands events that arrive after continue-as-new to the next generation.
        cancel = context.wait_for_external_event(CANCEL_EVENT)
        waits = 0

        def step(name: str, data: Any) -> Generator[Any, Any, dict[str, Any]]:
            """One activity (retried on an exception) raced against the cancel event; an
            activity's exception becomes ``{"ok": False, "error"}``."""
            task = context.call_activity_with_retry(name, _RETRY, data)
            winner = yield context.task_any([cancel, task])
            if winner is cancel:
                raise _Canceled
            if isinstance(task.result, Exception):
                return {"ok": False, "error": f"{name} failed: {_reason(task.result)}"}
            return task.result

        def wait(seconds: int, where: dict[str, Any] | None) -> Generator[Any, Any, None]:
            """A timer raced against the cancel event; after it, a generation that has waited
            :data:`WAITS_PER_GENERATION` times continues as new from ``where`` (None: the
            last wait of its loop, after which nothing is left to resume)."""
            nonlocal waits
            timer = context.create_timer(context.current_utc_datetime + timedelta(seconds=seconds))
            if (yield context.task_any([cancel, timer])) is cancel:
                timer.cancel()
                raise _Canceled
            waits += 1
            if where is not None and waits >= WAITS_PER_GENERATION:
                raise _ContinueAsNew(where)

        def leased(phase: str, name: str, data: Any, first: int = 0) -> Generator[Any, Any, dict[str, Any]]:
            """``step``, tried again after a wait while the site's publish lease is taken."""
            for attempt in range(first, LEASE_WAITS):
                result = yield from step(name, data)
                if not result.get("retry"):
                    return result
                status = {"status": "waiting", "for": "the site's publish lease"}
                context.set_custom_status(status)
                more = attempt + 1 < LEASE_WAITS
                where = {"phase": phase, "attempt": attempt + 1, "data": data, "status": status}
                yield from wait(LEASE_WAIT_SECONDS, where if more else None)
            return {"ok": False, "error": f"the site stayed locked by another deployment for {name}"}

        def turn(first: int = 0) -> Generator[Any, Any, dict[str, Any]]:
            for attempt in range(first, TURN_WAITS):
                started = yield from step(START_ACTIVITY, deployment_id)
                if "wait" not in started:
                    return started
                status = {"status": "queued", "waiting": started["wait"]}
                context.set_custom_status(status)
                more = attempt + 1 < TURN_WAITS
                where = {"phase": "turn", "attempt": attempt + 1, "status": status}
                yield from wait(min(2**attempt, TURN_WAIT_MAX_SECONDS), where if more else None)
            return {
                "ok": False,
                "error": f"the deployment gave up waiting for its turn: {started['wait']}",
            }

        def publish_and_verify(first: int = 0) -> Generator[Any, Any, tuple[str, str | None]]:
            context.set_custom_status({"status": "running", "step": PUBLISH_ACTIVITY})
            published = yield from leased("publish", PUBLISH_ACTIVITY, deployment_id, first)
            if not published.get("ok"):
                return "failed", published.get("error")
            context.set_custom_status({"status": "running", "step": VERIFY_ACTIVITY})
            verified = yield from step(
                VERIFY_ACTIVITY, {"deployment_id": deployment_id, "url": published["url"]}
            )
            if verified.get("ok"):
                return "succeeded", None
            context.set_custom_status({"status": "running", "step": ROLLBACK_ACTIVITY})
            request = {"deployment_id": deployment_id, "reason": verified.get("error")}
            return (yield from roll_back(request))

        def roll_back(request: dict[str, Any], first: int = 0) -> Generator[Any, Any, tuple[str, str | None]]:
            rolled = yield from leased("rollback", ROLLBACK_ACTIVITY, request, first)
            return ("rolled_back" if rolled.get("ok") else "failed"), request["reason"]

        def run() -> Generator[Any, Any, tuple[str, str | None]]:
            if resume is not None:
                context.set_custom_status(resume["status"])
                if resume["phase"] == "publish":
                    return (yield from publish_and_verify(resume["attempt"]))
                if resume["phase"] == "rollback":
                    return (yield from roll_back(resume["data"], resume["attempt"]))
            started = yield from turn(resume["attempt"] if resume is not None else 0)
            if "finished" in started:
                return started["finished"], None
            if not started.get("ok"):
                return "failed", started.get("error")
            if started.get("build"):
                context.set_custom_status({"status": "running", "step": BUILD_ACTIVITY})
                built = yield from step(BUILD_ACTIVITY, deployment_id)
                if not built.get("ok"):
                    return "failed", built.get("error")
            return (yield from publish_and_verify())

        try:
            status, error = yield from run()
        except _ContinueAsNew as more:
            context.continue_as_new({"deployment_id": deployment_id, "resume": more.resume})
            return None
        except _Canceled:
            status, error = "canceled", "canceled while running"
        context.set_custom_status({"status": status})
        # Retried: a finish lost to a storage blip would leave the deployment unfinished for good.
        final = yield context.call_activity_with_retry(
            FINISH_ACTIVITY, _RETRY, {"deployment_id": deployment_id, "status": status, "error": error}
        )
        return final

    @blueprint.activity_trigger(input_name="deploymentid")
    def deployment_start(deploymentid: str) -> dict[str, Any]:
        return pipeline.start(deploymentid)

    # Builds, uploads and verification take minutes: async, their work on Slipway's deploy
    # pool, so they never hold a thread of the worker's one pool (slipway.functions.offload).
    def long_work(what: str, work: Any, *args: Any) -> Any:
        limit = pipeline.host_limits.step_seconds

        def too_long() -> dict[str, Any]:
            return {
                "ok": False,
                "error": f"{what} did not finish within {limit:g} s ({pipeline.host_limits.explain()})",
            }

        return run_long("deploy", work, *args, deadline_seconds=limit, on_deadline=too_long)

    @blueprint.activity_trigger(input_name="deploymentid")
    async def deployment_build(deploymentid: str) -> dict[str, Any]:
        return await long_work("the build", pipeline.build, deploymentid)

    @blueprint.activity_trigger(input_name="deploymentid")
    async def deployment_publish(deploymentid: str) -> dict[str, Any]:
        return await long_work("publishing", pipeline.publish, deploymentid)

    @blueprint.activity_trigger(input_name="request")
    async def deployment_verify(request: dict) -> dict[str, Any]:
        return await long_work("verification", pipeline.verify, request["deployment_id"], request["url"])

    @blueprint.activity_trigger(input_name="request")
    async def deployment_rollback(request: dict) -> dict[str, Any]:
        reason = request["reason"] or "verification failed"
        return await long_work("the rollback", pipeline.rollback, request["deployment_id"], reason)

    @blueprint.activity_trigger(input_name="request")
    def deployment_finish(request: dict) -> dict[str, Any]:
        return pipeline.finish(request["deployment_id"], request["status"], request.get("error"))

    return blueprint


def _reason(exc: object) -> str:
    # A failed activity reaches the orchestrator as Exception("<Reason> \n <Details>").
    return str(exc).split("\n", 1)[0].strip()[:500]
