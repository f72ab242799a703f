"""Names of Slipway's storage resources, defined once.

Table and queue names are shared by the API, the queue triggers, the local runner and the
infra template; keeping them here means one spelling everywhere.
"""

from __future__ import annotations

# Tables (letters and digits only, 3-63 characters).
HEALTH_TABLE = "SlipwayHealth"
STATE_TABLE = "SlipwayState"
WORKSPACE_JOURNAL_TABLE = "SlipwayWorkspaceJournal"
SYNC_JOURNAL_TABLE = "SlipwaySyncJournal"
WEBHOOK_DELIVERIES_TABLE = "SlipwayWebhookDeliveries"

# Queues (lowercase letters, digits and single dashes, 3-63 characters).
HEALTH_QUEUE = "slipway-health"
SYNC_QUEUE = "slipway-sync"

# The host moves a message that failed maxDequeueCount times to "<queue>-poison".
POISON_SUFFIX = "-poison"


def poison_queue(queue: str) -> str:
    """The queue where the Functions host parks a message that kept failing."""
    return f"{queue}{POISON_SUFFIX}"


# Workflow runs.
RUNS_TABLE = "SlipwayRuns"
RUN_STEPS_TABLE = "SlipwayRunSteps"
RUN_LOGS_TABLE = "SlipwayRunLogs"
RUNS_QUEUE = "slipway-runs"
DEPLOYMENTS_TABLE, SITES_TABLE = "SlipwayDeployments", "SlipwaySites"  # deploy records
DEPLOYS_QUEUE = "slipway-deploys"  # deployment start and cancel messages

# Blob containers.
ARTIFACTS_CONTAINER = "slipway-artifacts"
