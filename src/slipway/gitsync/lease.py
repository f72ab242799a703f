"""One sync at a time across every instance: a short lease row in Table storage, renewed.

Taken with an ETag-conditional write, so two instances cannot both hold it. It runs out a
minute after its holder stops renewing it (every fifteen seconds, from a thread of its own),
so a sync killed with its process blocks the next one for a minute at most, and not at all
when the next one runs in the same container and sees the holder's process gone. The row
also says what its holder is doing (trigger, commit, phase, since when), for the API, and
carries a cancel request to the holder, which reads it at each renewal.

A holder whose row was taken over (it stalled past the expiry) learns it at its next renewal
and checks ``lost`` before it writes; the engine's own unfinished marker covers the rest.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from slipway.adapters.tables import TableStore
from slipway.names import STATE_TABLE

log = logging.getLogger("slipway.gitsync")

_PARTITION = "github"
_ROW = "sync-lease"


class LeaseBusy(Exception):
    """Another sync holds the lease; try again later."""

    def __init__(self, message: str, holder: LeaseState | None) -> None:
        super().__init__(message)
        self.holder = holder


@dataclass(frozen=True)
class LeaseState:
    """What the holder of the lease is doing, as the row says."""

    owner: str
    holder: str  # host:pid
    since: datetime
    expires: datetime
    trigger: str
    phase: str
    commit: str
    cancel_requested_by: str

    def to_json(self) -> dict[str, object]:
        return {
            "holder": self.holder,
            "since": _iso(self.since),
            "expires": _iso(self.expires),
            "trigger": self.trigger,
            "phase": self.phase,
            "commit": self.commit or None,
            "cancel_requested_by": self.cancel_requested_by or None,
        }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _process_start(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot ('' when unknown): with the pid, it
    names one process even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()
    except (OSError, IndexError):
        return ""


class Held:
    """The lease while it is held: say what the sync does, and learn of a cancel or a loss."""

    def __init__(self, lease: SyncLease, owner: str, row: dict[str, Any]) -> None:
        self._lease = lease
        self.owner = owner
        self._row = row
        self._lock = threading.Lock()
        self.cancelled_by = ""
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name="sync-lease", daemon=True)

    @property
    def cancelled(self) -> bool:
        return bool(self.cancelled_by)

    def refresh(self) -> None:
        """Renew now, reading a cancel request or a loss written since the last renewal."""
        self._renew()

    def update(self, **fields: str) -> None:
        """Record the phase or commit; renews the lease too."""
        with self._lock:
            self._row.update(fields)
        self._renew()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self._lease.renew_every.total_seconds()):
            try:
                self._renew()
            except Exception:
                # A storage hiccup: the next renewal tries again, well before the expiry.
                log.warning("sync lease renewal failed", exc_info=True)
                continue
            if self.lost:
                return

    def _renew(self) -> None:
        tables = self._lease.tables
        found = tables.get_entity_etag(STATE_TABLE, _PARTITION, _ROW)
        if found is None or found[0].get("owner") != self.owner:
            self.lost = True
            return
        current, etag = found
        with self._lock:
            if current.get("cancel_requested_by"):
                self.cancelled_by = str(current["cancel_requested_by"])
            row = {
                **self._row,
                "cancel_requested_by": current.get("cancel_requested_by", ""),
                "expires": datetime.now(UTC) + self._lease.duration,
            }
        if tables.replace_entity_if(STATE_TABLE, row, etag):
            with self._lock:
                self._row = row
        # Lost the race against a cancel request written meanwhile: the next renewal reads it.

    def _release(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        found = self._lease.tables.get_entity_etag(STATE_TABLE, _PARTITION, _ROW)
        if found is not None and found[0].get("owner") == self.owner:
            self._lease.tables.delete_entity_if(STATE_TABLE, _PARTITION, _ROW, found[1])


class SyncLease:
    def __init__(
        self,
        tables: TableStore,
        *,
        duration: timedelta = timedelta(seconds=60),
        renew_every: timedelta = timedelta(seconds=15),
    ) -> None:
        self.tables = tables
        self.duration = duration
        self.renew_every = renew_every
        self._host = socket.gethostname()

    @contextmanager
    def hold(self, *, wait_seconds: float = 0, trigger: str = "", phase: str = "waiting") -> Iterator[Held]:
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + wait_seconds
        while (held := self._try_acquire(owner, trigger, phase)) is None:
            if time.monotonic() >= deadline:
                holder = self.current()
                raise LeaseBusy(_busy_message(holder), holder)
            time.sleep(0.5)
        held._thread.start()
        try:
            yield held
        finally:
            held._release()

    def current(self) -> LeaseState | None:
        """The live holder of the lease, or None when it is free (or ran out)."""
        row = self.tables.get_entity(STATE_TABLE, _PARTITION, _ROW)
        if not row or not row.get("owner") or self._abandoned(row):
            return None
        return _state(row)

    def request_cancel(self, actor: str) -> LeaseState | None:
        """Ask the holder to stop; the state it was in, or None when nothing held the lease."""
        for _ in range(20):
            found = self.tables.get_entity_etag(STATE_TABLE, _PARTITION, _ROW)
            if found is None or not found[0].get("owner") or self._abandoned(found[0]):
                return None
            row, etag = found
            if self.tables.replace_entity_if(STATE_TABLE, {**row, "cancel_requested_by": actor}, etag):
                return _state({**row, "cancel_requested_by": actor})
        return self.current()

    def _abandoned(self, row: dict[str, Any]) -> bool:
        """Expired, or held by a process of this container that is gone (killed, crashed)."""
        if row["expires"] <= datetime.now(UTC):
            return True
        host, _, pid = str(row.get("holder", "")).rpartition(":")
        if host != self._host or not pid.isdigit():
            return False
        recorded = str(row.get("holder_started", ""))
        return bool(recorded) and _process_start(int(pid)) != recorded

    def _try_acquire(self, owner: str, trigger: str, phase: str) -> Held | None:
        now = datetime.now(UTC)
        pid = os.getpid()
        entity = {
            "PartitionKey": _PARTITION,
            "RowKey": _ROW,
            "owner": owner,
            "holder": f"{self._host}:{pid}",
            "holder_started": _process_start(pid),
            "since": now,
            "expires": now + self.duration,
            "trigger": trigger,
            "phase": phase,
            "commit": "",
            "cancel_requested_by": "",
        }
        if self.tables.create_entity(STATE_TABLE, entity):
            return Held(self, owner, entity)
        found = self.tables.get_entity_etag(STATE_TABLE, _PARTITION, _ROW)
        if found is None:
            return Held(self, owner, entity) if self.tables.create_entity(STATE_TABLE, entity) else None
        current, etag = found
        if current.get("owner") and not self._abandoned(current):
            return None
        return Held(self, owner, entity) if self.tables.replace_entity_if(STATE_TABLE, entity, etag) else None


def _state(row: dict[str, Any]) -> LeaseState:
    return LeaseState(
        owner=str(row.get("owner", "")),
        holder=str(row.get("holder", "")),
        since=row.get("since") or row["expires"],
        expires=row["expires"],
        trigger=str(row.get("trigger", "")),
        phase=str(row.get("phase", "")),
        commit=str(row.get("commit", "")),
        cancel_requested_by=str(row.get("cancel_requested_by", "")),
    )


def _busy_message(holder: LeaseState | None) -> str:
    if holder is None:
        return "another workspace sync was running"
    what = f"{holder.trigger or 'a'} sync ({holder.phase}"
    if holder.commit:
        what += f" {holder.commit[:12]}"
    return f"another {what}) on {holder.holder} has held the lease since {_iso(holder.since)}"
