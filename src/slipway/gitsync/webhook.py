"""The GitHub webhook: verify, filter, deduplicate, enqueue; answer within a second.

Order matters. The body size is capped before it is read further, and the signature is
checked over the raw bytes before anything is parsed, so an unauthenticated request costs
one HMAC and nothing else. Only requests that fail the signature are rate-limited, so a flood
of them never turns a correctly signed delivery away, and what such a request may make the
handler do besides (re-read the secret in case it changed) is bounded per interval, not per
request. Only then is the event looked at. A delivery is recorded as handled only once its
sync request is safely on the queue, so GitHub's "Redeliver" of a delivery that failed here
still works; a delivery seen before is answered without enqueuing again.
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
# A secret that matches is re-read this often anyway (a rotation without a reconnect).
_SECRET_TTL_SECONDS = 60.0
# A signature that does not match may mean the secret changed (a reconnect; the first
# connect): the secret store (Key Vault in Azure) is then re-read at most this often, and the
# connection row (one Table read) looked at at most this often in between, so a reconnect's
# first deliveries get through within a second or so even while a flood keeps the
# re-read interval busy.
_REREAD_EVERY_SECONDS = 5.0
_LOOK_EVERY_SECONDS = 1.0
# How long an unmatched signature waits for a read under way that may bring its secret.
_WAIT_FOR_READ_SECONDS = 0.5
# At most this many requests with a bad signature per minute, then 429 until it passes.
# Per process: every instance of the app keeps its own count, so a scaled-out app lets
# through this many per instance (a shared limit is for later).
_BAD_SIGNATURES_PER_MINUTE = 60
_ANY_STAMP = object()


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


def _error(status: int, code: str, message: str) -> WebhookAnswer:
    return WebhookAnswer(status, {"error": {"code": code, "message": message}})


class _Window:
    """Admits at most ``limit`` events per minute of the clock."""

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self._limit = limit
        self._clock = clock
        self._minute = 0
        self._count = 0
        self._lock = threading.Lock()

    def admit(self) -> bool:
        # Checked and counted at once: concurrent requests cannot slip past the limit together.
        with self._lock:
            minute = int(self._clock() // 60)
            if minute != self._minute:
                self._minute, self._count = minute, 0
            if self._count >= self._limit:
                return False
            self._count += 1
            if self._count == self._limit:
                log.warning(
                    "webhook: %d requests with a bad signature this minute; refusing more", self._limit
                )
            return True


class _SecretCache:
    """The webhook secret as this process last read it, and the bounded ways it is re-read.

    Every read goes through one request at a time. A delivery whose signature matches never
    waits for a re-read (it uses the secret in hand); one that does not match waits briefly
    for a read already under way, since that read may bring the secret it was signed with,
    and otherwise triggers a read only when the intervals allow it.
    """

    def __init__(
        self, secrets: SecretStore, connections: ConnectionStore, clock: Callable[[], float]
    ) -> None:
        self._secrets = secrets
        self._connections = connections
        self._clock = clock
        self._changed = threading.Condition()  # guards every field below; notified after a read
        self._reading = False
        self._value: str | None = None
        self._stamp: object = _ANY_STAMP
        self._read_at: float | None = None
        self._reread_at: float | None = None
        self._looked_at: float | None = None

    def current(self) -> str | None:
        with self._changed:
            while self._read_at is None and self._reading:
                self._changed.wait()
            if self._read_at is not None and (
                self._reading or self._clock() - self._read_at <= _SECRET_TTL_SECONDS
            ):
                return self._value
            self._reading = True
        self._read(unless_stamp=_ANY_STAMP)
        with self._changed:
            return self._value

    def newer_than(self, tried: str | None) -> str | None:
        """A secret other than ``tried`` to check a signature that did not match against, or
        None when there is none or looking for one now would exceed the intervals."""
        with self._changed:
            # Bounded: a slow secret store must not pile a flood's requests up on the worker's
            # threads (sync HTTP functions share them with activities).
            if not self._changed.wait_for(lambda: not self._reading, timeout=_WAIT_FOR_READ_SECONDS):
                return None
            if self._value != tried:
                return self._value  # another request re-read it meanwhile
            now = self._clock()
            if self._reread_at is None or now - self._reread_at >= _REREAD_EVERY_SECONDS:
                self._reread_at = self._looked_at = now
                unless: object = _ANY_STAMP
            elif self._looked_at is None or now - self._looked_at >= _LOOK_EVERY_SECONDS:
                self._looked_at = now
                unless = self._stamp
            else:
                return None
            self._reading = True
        self._read(unless_stamp=unless)
        with self._changed:
            return self._value if self._value != tried else None

    def _read(self, *, unless_stamp: object) -> None:
        """The one read under way (``_reading`` was set by the caller): the connection's stamp,
        then the secret unless the stamp is ``unless_stamp``."""
        try:
            # The stamp first: a connect saves its connection, then writes the secret, then
            # saves the hook id. Read in this order, a secret newer than its stamp is re-read
            # at the next look, never an old secret kept under a new stamp.
            connection = self._connections.get()
            stamp = (connection.connected_at, connection.hook_id) if connection else None
            if stamp == unless_stamp:
                return
            value = self._secrets.get_secret(WEBHOOK_SECRET)
            with self._changed:
                self._value, self._stamp, self._read_at = value, stamp, self._clock()
        finally:
            with self._changed:
                self._reading = False
                self._changed.notify_all()


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
        self._tables = tables
        self._queues = queues
        self._connections = connections
        self._journal = journal
        self._secret = _SecretCache(secrets, connections, clock)
        self._bad = _Window(_BAD_SIGNATURES_PER_MINUTE, clock)
        self._on_push = on_push

    def handle(self, headers: Mapping[str, str], body: bytes) -> WebhookAnswer:
        """``headers`` as received (names in any case); ``body`` exactly as received."""
        if len(body) > MAX_BODY_BYTES:
            return _error(413, "payload_too_large", f"webhook bodies are limited to {MAX_BODY_BYTES} bytes")
        headers = {name.lower(): value for name, value in headers.items()}
        signature = headers.get(SIGNATURE_HEADER)
        secret = self._secret.current()
        valid = secret is not None and verify(secret, body, signature)
        newer = None
        if not valid and signature:
            # The secret may have changed (a reconnect) or appeared (a connect) since it was read.
            newer = self._secret.newer_than(secret)
            valid = newer is not None and verify(newer, body, signature)
        if not valid:
            if not self._bad.admit():
                return _error(
                    429, "too_many_requests", "too many requests with a bad signature; try again in a minute"
                )
            if secret is None and newer is None:
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
                if found[0].get("after") not in (None, str(payload.get("after", ""))):
                    # GitHub re-sends a delivery unchanged; a signed one naming another commit
                    # is still not queued twice (the reconcile timer catches a missed head),
                    # but whoever holds the secret should hear of it.
                    log.warning(
                        "a delivery id came again naming another commit; answered as a duplicate",
                        extra={
                            "delivery": delivery,
                            "queued": found[0].get("after"),
                            "now": payload.get("after"),
                        },
                    )
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
