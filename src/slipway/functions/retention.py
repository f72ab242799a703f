"""Retention of the Durable task hub: a timer purges finished orchestrations past their time.

Every instance leaves its history and status rows in the task hub's tables after it ends; left
alone they grow for as long as the app runs. Slipway's own run, step and deployment rows are
the record users see (the run and deployment pages never read durable status), so once
``SLIPWAY_DURABLE_RETENTION_DAYS`` have passed a completed, failed or terminated instance is
purged through the durable client, as ``purge_instance_history_by`` does. Running instances
are never purged.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import azure.durable_functions as df
import azure.functions as func

log = logging.getLogger("slipway.functions.retention")

# Every hour, at 20 minutes past: each purge stays small (an hour's worth of finished instances).
PURGE_SCHEDULE = "0 20 * * * *"
# The extension requires a lower bound; nothing Slipway started is older than this.
_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
FINISHED = (
    df.OrchestrationRuntimeStatus.Completed,
    df.OrchestrationRuntimeStatus.Failed,
    df.OrchestrationRuntimeStatus.Terminated,
)


def retention_blueprint(retention_days: int) -> df.Blueprint:
    blueprint = df.Blueprint()

    @blueprint.timer_trigger(schedule=PURGE_SCHEDULE, arg_name="timer", run_on_startup=False)
    @blueprint.durable_client_input(client_name="client")
    async def durable_purge(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
        deleted = await purge_finished(client, datetime.now(UTC) - timedelta(days=retention_days))
        if deleted:
            log.info("purged %d finished orchestrations older than %d days", deleted, retention_days)

    return blueprint


async def purge_finished(client: df.DurableOrchestrationClient, created_before: datetime) -> int:
    """Purge the completed, failed and terminated instances created before ``created_before``."""
    result = await client.purge_instance_history_by(
        created_time_from=_EPOCH,
        created_time_to=created_before.astimezone(UTC),
        runtime_status=list(FINISHED),
    )
    return int(result.instances_deleted)
