"""The GitHub webhook: verify, filter, deduplicate, enqueue; answer within a second.

Order matters. The body size is capped before it is read further, and the signature is
checked over the raw bytes before anything is parsed, so an unauthenticated request costs
one HMAC and nothing else (and failed signatures are rate-limited; a signed delivery never is). Only then is the event
looked at. A delivery is recorded as handled only once its sync request is safely on the
queue, so GitHub's "Redeliver" of a delivery that failed here still works; a delivery seen
before is answered without enqueuing again.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from slipway.adapters.queues import QueueBus
from slipway.adapters.secrets import SecretStore
from slipway.adapters.tables import TableStore
from slipway.gitsync.connection import WEBHOOK_SECRET, ConnectionStore
from slipway.gitsync.journal import SyncJournal, SyncRecord
from slipway.gitsync.signature import SIGNATURE_HEADER, verify
from slipway.names import SYNC_QUEUE, WEBHOOK_DELIVERIES_TABLE

log = logging.getLogger("slipway.gitsync.webhook")

# GitHub caps webhook payloads at 25 MB; a real push can come close (3 MiB caps lose pushes).
MAX_BODY_BYTES = 25 * 1024 * 1024
_DELIVERY = re.compile(r"^[A-Za-z0-9-]{1,100}$")
_CLAIM_TIMEOUT = timedelta(seconds=60)
_SECRET_TTL_SECONDS = 60.0
# At most this many requests with a bad signature per minute, then 429 until it passes.
_BAD_SIGNATURES_PER_MINUTE = 60
_REFRESH_EVERY_SECONDS = 5.0


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


def _error(status: int, code: str, message: str) -> WebhookAnswer:
    return WebhookAnswer(status, {"error": {"code": code, "message": message}})


class _Window:
    """Counts events in the current minute."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._minute = 0
        self._count = 0
        self._lock = threading.Lock()

    def exceeded(self) -> bool:
        with self._lock:
            return self._minute == int(time.monotonic() // 60) and self._count >= self._limit

    def add(self) -> None:
        with self._lock:
            minute = int(time.monotonic() // 60)
            if minute != self._minute:
                self._minute, self._count = minute, 0
            self._count += 1


class WebhookHandler:
    def __init__(
        self,
        *,
        secrets: SecretStore,
        tables: TableStore,
        queues: QueueBus,
        connections: ConnectionStore,
        journal: SyncJournal,
        clock: Callable[[], float] = time.monotonic,
        on_push: Callable[[str, dict[str, Any]], list[str]] | None = None,
    ) -> None:
        """``on_push(delivery, payload)`` is told of every signed push (continuous deployment)
        and returns the ids of the deployments it queued."""
        self._secrets = secrets
        self._tables = tables
        self._queues = queues
        self._connections = connections
        self._journal = journal
        self._clock = clock
        self._cached_secret: tuple[float, str | None] | None = None
        self._bad = _Window(_BAD_SIGNATURES_PER_MINUTE)
        self._refresh_lock = threading.Lock()
        self._last_refresh: float | None = None
        self._secret_connection: object = None  # the connection the cached secret belongs to
        self._on_push = on_push

    def _may_refresh(self) -> bool:
        """At most one re-read of the secret store per few seconds for unmatched signatures:
        a flood of bad ones costs an HMAC each, not a Key Vault call each, and a delivery signed
        with a secret changed meanwhile still gets through within seconds."""
        with self._refresh_lock:
            now = self._clock()
            if self._last_refresh is None or now - self._last_refresh >= _REFRESH_EVERY_SECONDS:
                self._last_refresh = now
                return True
        # Within the interval, only a new connection (a reconnect made a new secret) is worth
        # a re-read: one Table read, never a Key Vault call.
        connection = self._connections.get()
        return (connection.connected_at if connection else None) != self._secret_connection

    def _connection_stamp(self) -> object:
        connection = self._connections.get()
        return connection.connected_at if connection else None

    def _secret(self, *, fresh: bool = False) -> str | None:
        cached = self._cached_secret
        if fresh or cached is None or self._clock() - cached[0] > _SECRET_TTL_SECONDS:
            stamp = self._connection_stamp()
            cached = (self._clock(), self._secrets.get_secret(WEBHOOK_SECRET))
            # Together, and only once the secret is in hand: a concurrent delivery that sees
            # this connection's stamp must also see its secret.
            self._cached_secret, self._secret_connection = cached, stamp
        return cached[1]

    def handle(self, headers: Mapping[str, str], body: bytes) -> WebhookAnswer:
        """``headers`` with lower-case names; ``body`` exactly as received."""
        if len(body) > MAX_BODY_BYTES:
            return _error(413, "payload_too_large", f"webhook bodies are limited to {MAX_BODY_BYTES} bytes")
        signature = headers.get(SIGNATURE_HEADER)
        secret = self._secret()
        valid = secret is not None and verify(secret, body, signature)
        if not valid and signature:
            # The secret may have changed (or appeared, by a connect) since it was cached; or
            # another delivery just re-read it.
            fresh = self._secret(fresh=True) if self._may_refresh() else self._secret()
            valid = fresh is not None and verify(fresh, body, signature)
        if not valid:
            # Only requests that fail the signature are limited: a flood of them never turns
            # a correctly signed delivery away. Per process (each instance keeps its own).
            if self._bad.exceeded():
                return _error(
                    429, "too_many_requests", "too many requests with a bad signature; try again in a minute"
                )
            self._bad.add()
            if self._cached_secret is not None and self._cached_secret[1] is None:
                return _error(401, "not_connected", "no GitHub repository is connected")
            if not signature:
                return _error(401, "signature_missing", "the X-Hub-Signature-256 header is missing")
            return _error(401, "signature_invalid", "the X-Hub-Signature-256 signature does not match")

        event = headers.get("x-github-event", "")
        delivery = headers.get("x-github-delivery", "")
        if not _DELIVERY.match(delivery):
            return _error(400, "delivery_invalid", "the X-GitHub-Delivery header is missing or malformed")
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _error(
                400,
                "payload_invalid",
                "the body is not JSON (set the webhook's content type to application/json)",
            )
        if not isinstance(payload, dict):
            return _error(400, "payload_invalid", "the body must be a JSON object")
        if event == "ping":
            return WebhookAnswer(200, {"pong": True, "zen": str(payload.get("zen", ""))})
        if event != "push":
            return WebhookAnswer(202, {"ignored": f"{event or 'unknown'} events do not sync the workspace"})

        connection = self._connections.get()
        if connection is None:
            return _error(401, "not_connected", "no GitHub repository is connected")
        deployments = self._deploy(delivery, payload)
        ref = str(payload.get("ref", ""))
        if ref != f"refs/heads/{connection.branch}":
            return WebhookAnswer(
                202,
                {"ignored": f"push to {ref or 'an unknown ref'}, not to {connection.branch}", **deployments},
            )
        if payload.get("deleted") is True:
            self._journal.record(
                SyncRecord(
                    trigger="push",
                    result="skipped",
                    message=f"branch {connection.branch} was deleted on GitHub; the workspace was left as it was",
                    deliveries=(delivery,),
                    before=str(payload.get("before", "")),
                )
            )
            return WebhookAnswer(202, {"ignored": "branch deletion never empties the workspace"})
        answer = self._enqueue_once(headers.get("x-github-hook-id", "") or "-", delivery, payload)
        return WebhookAnswer(answer.status, {**answer.body, **deployments})

    def _deploy(self, delivery: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Deployments of the sites bound to the pushed branch; a failure here never stops the
        workspace sync (GitHub's redelivery retries both, and neither runs twice)."""
        if self._on_push is None:
            return {}
        try:
            queued = self._on_push(delivery, payload)
        except Exception:
            log.exception("push deployments could not be queued", extra={"delivery": delivery})
            return {"deployments_error": "deployments could not be queued; redeliver the push"}
        return {"deployments": queued} if queued else {}

    def _enqueue_once(self, hook: str, delivery: str, payload: dict[str, Any]) -> WebhookAnswer:
        hook = hook if _DELIVERY.match(hook) else "-"
        now = datetime.now(UTC)
        claim = {"PartitionKey": hook, "RowKey": delivery, "state": "claimed", "at": now}
        if not self._tables.create_entity(WEBHOOK_DELIVERIES_TABLE, claim):
            found = self._tables.get_entity_etag(WEBHOOK_DELIVERIES_TABLE, hook, delivery)
            if found is not None and found[0].get("state") == "queued":
                return WebhookAnswer(200, {"duplicate": True, "delivery": delivery})
            # A claim that never got queued (its handler died) may be taken over after a while.
            if found is not None and found[0]["at"] > now - _CLAIM_TIMEOUT:
                return WebhookAnswer(202, {"duplicate": True, "delivery": delivery, "state": "in progress"})
            if found is not None and not self._tables.replace_entity_if(
                WEBHOOK_DELIVERIES_TABLE, claim, found[1]
            ):
                return WebhookAnswer(202, {"duplicate": True, "delivery": delivery, "state": "in progress"})
        message = {
            "trigger": "push",
            "delivery": delivery,
            "before": str(payload.get("before", "")),
            "after": str(payload.get("after", "")),
            "forced": bool(payload.get("forced", False)),
        }
        try:
            self._queues.send_message(SYNC_QUEUE, message)
        except Exception:
            log.exception("could not queue a sync request", extra={"delivery": delivery})
            self._tables.delete_entity(WEBHOOK_DELIVERIES_TABLE, hook, delivery)
            return _error(
                503, "queue_unavailable", "the sync request could not be queued; redeliver it from GitHub"
            )
        self._tables.upsert_entity(
            WEBHOOK_DELIVERIES_TABLE, {**claim, "state": "queued", "after": message["after"]}
        )
        log.info("sync queued", extra={"delivery": delivery, "after": message["after"]})
        return WebhookAnswer(202, {"queued": True, "delivery": delivery})
