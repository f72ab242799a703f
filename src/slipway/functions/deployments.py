"""Deployment bindings: the orchestration ``deployment_run`` and its activities.

The orchestrator is the pipeline in order: prepare, build, package, publish (waiting and trying
again while another deployment of the site holds the publish lease), verify, and on a failed
verify a rollback to the last good artifact; every path ends in ``finish`` with a status. The
``cancel`` event is raced against each step: the deployment finishes ``canceled`` at once (a
build still running sees that and kills its commands). The activities are thin calls into
:class:`~slipway.deploy.pipeline.DeployPipeline`.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from slipway.deploy.pipeline import DeployPipeline

ORCHESTRATOR = "deployment_run"
PREPARE_ACTIVITY = "deployment_prepare"
BUILD_ACTIVITY = "deployment_build"
PACKAGE_ACTIVITY = "deployment_package"
PUBLISH_ACTIVITY = "deployment_publish"
VERIFY_ACTIVITY = "deployment_verify"
ROLLBACK_ACTIVITY = "deployment_rollback"
FINISH_ACTIVITY = "deployment_finish"
CANCEL_EVENT = "cancel"
# While another deployment publishes the site: wait this long between tries, this many times.
LEASE_WAIT_SECONDS = 5
LEASE_WAITS = 60
# Network-ish steps (git, the publisher, the site over HTTP) are retried on an exception.
_NETWORK_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=5000, max_number_of_attempts=3)


class _Canceled(Exception):
    pass


def deployments_blueprint(pipeline: DeployPipeline) -> df.Blueprint:
    blueprint = df.Blueprint()

    @blueprint.orchestration_trigger(context_name="context")
    def deployment_run(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
        deployment_id: str = context.get_input()["deployment_id"]
        cancel = context.wait_for_external_event(CANCEL_EVENT)

        def step(name: str, data: Any, *, retry: bool = False) -> Generator[Any, Any, dict[str, Any]]:
            """One activity raced against the cancel event; an activity's exception becomes
            ``{"ok": False, "error"}``."""
            if retry:
                task = context.call_activity_with_retry(name, _NETWORK_RETRY, data)
            else:
                task = context.call_activity(name, data)
            winner = yield context.task_any([cancel, task])
            if winner is cancel:
                raise _Canceled
            if isinstance(task.result, Exception):
                return {"ok": False, "error": f"{name} failed: {_reason(task.result)}"}
            return task.result

        def leased(name: str, data: Any) -> Generator[Any, Any, dict[str, Any]]:
            """``step``, tried again after a wait while the site's publish lease is taken."""
            for _ in range(LEASE_WAITS):
                result = yield from step(name, data, retry=True)
                if not result.get("retry"):
                    return result
                context.set_custom_status({"status": "waiting", "for": "the site's publish lease"})
                timer = context.create_timer(
                    context.current_utc_datetime + timedelta(seconds=LEASE_WAIT_SECONDS)
                )
                if (yield context.task_any([cancel, timer])) is cancel:
                    timer.cancel()
                    raise _Canceled
            return {"ok": False, "error": f"the site stayed locked by another deployment for {name}"}

        def run() -> Generator[Any, Any, tuple[str, str | None]]:
            for name, retry in ((PREPARE_ACTIVITY, True), (BUILD_ACTIVITY, False), (PACKAGE_ACTIVITY, False)):
                context.set_custom_status({"status": "running", "step": name})
                result = yield from step(name, deployment_id, retry=retry)
                if not result.get("ok"):
                    return "failed", result.get("error")
            context.set_custom_status({"status": "running", "step": PUBLISH_ACTIVITY})
            published = yield from leased(PUBLISH_ACTIVITY, deployment_id)
            if not published.get("ok"):
                return "failed", published.get("error")
            context.set_custom_status({"status": "running", "step": VERIFY_ACTIVITY})
            verified = yield from step(
                VERIFY_ACTIVITY, {"deployment_id": deployment_id, "url": published["url"]}, retry=True
            )
            if verified.get("ok"):
                return "succeeded", None
            context.set_custom_status({"status": "running", "step": ROLLBACK_ACTIVITY})
            rolled = yield from leased(
                ROLLBACK_ACTIVITY, {"deployment_id": deployment_id, "reason": verified.get("error")}
            )
            return ("rolled_back" if rolled.get("ok") else "failed"), verified.get("error")

        try:
            status, error = yield from run()
        except _Canceled:
            status, error = "canceled", "canceled while running"
        context.set_custom_status({"status": status})
        # Retried: a finish lost to a storage blip would leave the deployment unfinished for good.
        final = yield context.call_activity_with_retry(
            FINISH_ACTIVITY,
            _NETWORK_RETRY,
            {"deployment_id": deployment_id, "status": status, "error": error},
        )
        return final

    @blueprint.activity_trigger(input_name="deploymentid")
    def deployment_prepare(deploymentid: str) -> dict[str, Any]:
        return pipeline.prepare(deploymentid)

    @blueprint.activity_trigger(input_name="deploymentid")
    def deployment_build(deploymentid: str) -> dict[str, Any]:
        return pipeline.build(deploymentid)

    @blueprint.activity_trigger(input_name="deploymentid")
    def deployment_package(deploymentid: str) -> dict[str, Any]:
        return pipeline.package(deploymentid)

    @blueprint.activity_trigger(input_name="deploymentid")
    def deployment_publish(deploymentid: str) -> dict[str, Any]:
        return pipeline.publish(deploymentid)

    @blueprint.activity_trigger(input_name="request")
    def deployment_verify(request: dict[str, Any]) -> dict[str, Any]:
        return pipeline.verify(request["deployment_id"], request["url"])

    @blueprint.activity_trigger(input_name="request")
    def deployment_rollback(request: dict[str, Any]) -> dict[str, Any]:
        return pipeline.rollback(request["deployment_id"], request["reason"] or "verification failed")

    @blueprint.activity_trigger(input_name="request")
    def deployment_finish(request: dict[str, Any]) -> dict[str, Any]:
        return pipeline.finish(request["deployment_id"], request["status"], request.get("error"))

    return blueprint


def _reason(exc: object) -> str:
    # A failed activity reaches the orchestrator as Exception("<Reason> \n <Details>").
    return str(exc).split("\n", 1)[0].strip()[:500]
