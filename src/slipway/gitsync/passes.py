"""Sync passes: what the orchestration's activity runs, one at a time, under the lease.

A pass takes the requests waiting when it starts (webhook deliveries, "Sync now", catch-ups),
fetches once and applies the branch's head: requests that arrived during an earlier pass
collapse into this one. A pass with no requests does nothing (a wake-up that another pass
already served). A pass that changed nothing leaves no journal row, only the "last pass"
the status shows.

Each pass re-reads the connection once it holds the lease, so a disconnect (which takes the
lease itself) never races a pass's writes; it says what it does on the lease row (phase,
commit) and stops at the next phase when an admin cancels it or the connection went away.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from slipway.adapters.queues import QueueBus
from slipway.adapters.secrets import SecretStore
from slipway.gitsync import engine
from slipway.gitsync.connection import TOKEN_SECRET, Connection, ConnectionStore
from slipway.gitsync.journal import SyncJournal, SyncRecord
from slipway.gitsync.lease import Held, LeaseBusy, SyncLease
from slipway.gitsync.pending import PendingRequests, SyncRequest
from slipway.names import SYNC_QUEUE

log = logging.getLogger("slipway.gitsync")

# Long enough for a lease whose holder died on another instance to run out and be taken over.
LEASE_WAIT_SECONDS = 90
# Requests this old with no pass to take them (their wake-up was lost) are queued again.
ORPHANED_AFTER = timedelta(minutes=2)


class SyncCancelled(Exception):
    """An admin cancelled the pass, or the repository was disconnected, before it wrote."""


class SyncPasses:
    def __init__(
        self,
        *,
        mirror: Path,
        workspace: Path,
        secrets: SecretStore,
        connections: ConnectionStore,
        journal: SyncJournal,
        pending: PendingRequests,
        lease: SyncLease,
        queues: QueueBus,
    ) -> None:
        self._mirror = mirror
        self._workspace = workspace
        self._secrets = secrets
        self._connections = connections
        self._journal = journal
        self._pending = pending
        self.lease = lease
        self._queues = queues

    # ------------------------------------------------------------------ requests

    def request(self, trigger: str) -> dict[str, object]:
        """Queue a pass; says what the pass will wait for when a sync runs already."""
        self._queues.send_message(SYNC_QUEUE, {"trigger": trigger, "delivery": ""})
        answer: dict[str, object] = {"queued": True}
        holder = self.lease.current()
        if holder is not None:
            answer["waiting_for"] = holder.to_json()
            answer["message"] = (
                f"queued behind the {holder.trigger or 'running'} sync that is {holder.phase}"
                f" on {holder.holder} since {holder.to_json()['since']}"
            )
        return answer

    def cancel(self, actor: str) -> dict[str, object]:
        """Drop the waiting requests and ask the running pass to stop at its next phase."""
        waiting = self._pending.list()
        self._pending.remove(waiting)
        holder = self.lease.request_cancel(actor)
        log.info(
            "sync cancelled", extra={"actor": actor, "dropped": len(waiting), "running": holder is not None}
        )
        return {
            "cancelled": holder is not None or bool(waiting),
            "dropped_requests": len(waiting),
            "running": holder.to_json() if holder is not None else None,
        }

    def requeue_orphans(self) -> bool:
        """Queue a pass when requests wait with no pass to take them; True when it did.

        The queue trigger wakes the orchestration or starts it; a wake-up raised just as the
        orchestration ended is lost, and its request would wait for the next push.
        """
        waiting = self._pending.list()
        if not waiting or self.lease.current() is not None:
            return False
        if waiting[0].requested_at > datetime.now(UTC) - ORPHANED_AFTER:
            return False
        self._queues.send_message(SYNC_QUEUE, {"trigger": "reconcile", "delivery": ""})
        return True

    # ------------------------------------------------------------------ passes

    def run_pass(self) -> dict[str, object]:
        """One pass over the waiting requests (the orchestration's activity).

        Answers ``{"result", "retryable", "more", "message"}``; known failures are answers,
        not exceptions, so the orchestrator decides about retries.
        """
        requests = self._pending.list()
        if not requests:
            return {"result": "idle", "retryable": False, "more": False, "message": "nothing to sync"}
        trigger = requests[-1].trigger
        deliveries = tuple(r.delivery for r in requests if r.delivery)
        try:
            with self.lease.hold(wait_seconds=LEASE_WAIT_SECONDS, trigger=trigger) as held:
                record, retryable = self._pass(held, requests, trigger, deliveries)
        except LeaseBusy as exc:
            connection = self._connections.get()
            before = connection.last_synced_commit if connection else ""
            record = SyncRecord(trigger, "failed", str(exc), deliveries, before=before)
            retryable = True
            self._journal.record(record)
        if record.result != "idle":  # a pass cancelled while it waited: the last pass stands
            self._journal.note_pass(record)
        log.info(
            "sync pass",
            extra={
                "requests": len(requests),
                "result": record.result,
                "after": record.after,
                "trigger": trigger,
            },
        )
        return {
            "result": record.result,
            "retryable": retryable,
            "more": bool(self._pending.list()) if not retryable else False,
            "message": record.message,
            "after": record.after,
        }

    def _pass(
        self, held: Held, requests: list[SyncRequest], trigger: str, deliveries: tuple[str, ...]
    ) -> tuple[SyncRecord, bool]:
        # Read under the lease: a cancel or a disconnect that came while this pass waited wins
        # (their requests are gone), and requests that arrived meanwhile ride along.
        requests = self._pending.list()
        if not requests:
            return SyncRecord(trigger, "idle", "nothing to sync (cancelled while waiting)", deliveries), False
        trigger = requests[-1].trigger
        deliveries = tuple(r.delivery for r in requests if r.delivery)
        connection = self._connections.get()
        if connection is None:
            self._pending.remove(requests)
            return SyncRecord(trigger, "skipped", "not connected", deliveries), False
        token = self._secrets.get_secret(TOKEN_SECRET) or ""
        # "Sync now" compares every file (it repairs a workspace changed by hand), as does a
        # connect's first sync resumed after a crash; a push applies the change since the
        # last synced commit (and turns full by itself when it finds drift).
        full = connection.state == "connecting" or any(r.trigger in ("manual", "connect") for r in requests)
        record, retryable = self.sync(
            held, connection, token, trigger=trigger, deliveries=deliveries, full=full
        )
        if not retryable:
            self._pending.remove(requests)
        return record, retryable

    def sync(
        self,
        held: Held,
        connection: Connection,
        token: str,
        *,
        trigger: str,
        deliveries: tuple[str, ...],
        full: bool,
    ) -> tuple[SyncRecord, bool]:
        """Fetch and apply while ``held``: the record (journaled unless it changed nothing), and
        whether a retry may help."""
        started = time.monotonic()
        base = None if full else (connection.last_synced_commit or None)
        try:
            record, retryable = self._fetch_and_apply(held, connection, token, trigger, deliveries, base)
        except SyncCancelled as exc:
            record = SyncRecord(
                trigger, "cancelled", str(exc), deliveries, before=connection.last_synced_commit
            )
            retryable = False
        record = replace(record, duration_ms=int((time.monotonic() - started) * 1000))
        if not record.changed_nothing or trigger == "connect":
            self._journal.record(record)
        return record, retryable

    def _fetch_and_apply(
        self,
        held: Held,
        connection: Connection,
        token: str,
        trigger: str,
        deliveries: tuple[str, ...],
        base: str | None,
    ) -> tuple[SyncRecord, bool]:
        before = connection.last_synced_commit
        try:
            held.update(phase="fetching")
            head = engine.fetch(self._mirror, connection.remote_url, connection.branch, token=token or None)
            self._check_go_on(held)
            held.update(phase="applying", commit=head)
            result = engine.apply(self._mirror, head, self._workspace, base=base)
        except engine.BranchNotFound as exc:
            message = f"branch not found: {exc}; the workspace was left as it was"
            return SyncRecord(trigger, "failed", message, deliveries, before=before), False
        except engine.TreeRefused as exc:
            message = f"refused: {exc}; the workspace was left as it was"
            return SyncRecord(trigger, "failed", message, deliveries, before=before), False
        except engine.FetchError as exc:
            return SyncRecord(trigger, "failed", f"fetch failed: {exc}", deliveries, before=before), True
        self._connections.record_synced(result.after)
        drift = tuple(result.drift)
        message = f"{result.mode} sync to {result.after[:12]}"
        if drift:
            message += f"; {len(drift)} file(s) changed by hand were put back"
        record = SyncRecord(
            trigger,
            "succeeded",
            message,
            deliveries,
            before=before,
            after=result.after,
            added=result.added,
            changed=result.changed,
            deleted=result.deleted,
            bytes=result.bytes_written,
            warnings=tuple(result.warnings),
            drift=drift,
        )
        return record, False

    def _check_go_on(self, held: Held) -> None:
        held.refresh()
        if held.cancelled:
            raise SyncCancelled(f"cancelled by {held.cancelled_by} before it wrote anything")
        if held.lost:
            raise SyncCancelled("another sync took the lease over (this one stalled past its expiry)")
        if self._connections.get() is None:
            raise SyncCancelled("the repository was disconnected")

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        """What the sync does now: running (with its holder), waiting (requests, no holder) or idle."""
        holder = self.lease.current()
        waiting = self._pending.list()
        answer: dict[str, Any] = {
            "state": "running" if holder else "waiting" if waiting else "idle",
            "running": holder.to_json() if holder else None,
            "waiting": len(waiting),
            "waiting_since": waiting[0].requested_at.isoformat().replace("+00:00", "Z") if waiting else None,
            "last_pass": self._journal.last_pass(),
        }
        return answer
