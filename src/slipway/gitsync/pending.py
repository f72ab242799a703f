"""Sync requests waiting for the sync orchestration: one Table row each.

The queue trigger writes a row per request (a webhook delivery, a manual "sync now"); a sync
pass takes every row present when it starts, journals their delivery ids, and deletes them.
Rows written while it runs wait for the next pass, so pushes during a sync collapse into one
follow-up sync to the newest head.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from slipway.adapters.tables import TableStore
from slipway.names import STATE_TABLE

_PARTITION = "sync-request"


@dataclass(frozen=True)
class SyncRequest:
    key: str
    trigger: str
    delivery: str
    requested_at: datetime


class PendingRequests:
    def __init__(self, tables: TableStore) -> None:
        self._tables = tables

    def add(self, trigger: str, delivery: str = "") -> SyncRequest:
        # Keys sort by arrival; the delivery id keeps a redelivered message idempotent.
        key = delivery or f"{trigger}-{uuid.uuid4().hex}"
        now = datetime.now(UTC)
        self._tables.upsert_entity(
            STATE_TABLE,
            {"PartitionKey": _PARTITION, "RowKey": key, "trigger": trigger, "delivery": delivery, "at": now},
        )
        return SyncRequest(key, trigger, delivery, now)

    def list(self) -> list[SyncRequest]:
        rows = self._tables.query_entities(STATE_TABLE, "PartitionKey eq @pk", parameters={"pk": _PARTITION})
        found = [
            SyncRequest(
                row["RowKey"],
                row.get("trigger", "push"),
                row.get("delivery", ""),
                row.get("at") or datetime.now(UTC),
            )
            for row in rows
        ]
        return sorted(found, key=lambda r: r.requested_at)

    def remove(self, requests: list[SyncRequest]) -> None:
        for request in requests:
            self._tables.delete_entity(STATE_TABLE, _PARTITION, request.key)
