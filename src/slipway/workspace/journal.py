"""A Table row for every workspace change: who, what, when, and the ETags before and after."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from slipway.adapters.tables import TableStore
from slipway.names import WORKSPACE_JOURNAL_TABLE

log = logging.getLogger("slipway.workspace.journal")

_PARTITION = "workspace"
# Row keys sort newest first: milliseconds counted down from this far future.
_FAR_FUTURE_MS = 10**13


@dataclass(frozen=True)
class JournalEntry:
    actor: str
    action: str  # create, update, delete, move, mkdir
    path: str
    to_path: str = ""
    old_etag: str = ""
    new_etag: str = ""
    size: int | None = None
    at: datetime | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "actor": self.actor,
            "action": self.action,
            "path": self.path,
            "to_path": self.to_path or None,
            "old_etag": self.old_etag or None,
            "new_etag": self.new_etag or None,
            "size": self.size,
            "at": self.at.isoformat().replace("+00:00", "Z") if self.at else None,
        }


class WorkspaceJournal:
    def __init__(self, tables: TableStore) -> None:
        self._tables = tables

    def record(self, entry: JournalEntry) -> None:
        """Append ``entry``; a journal outage is logged, never turned into a failed save."""
        now = entry.at or datetime.now(UTC)
        row_key = f"{_FAR_FUTURE_MS - int(now.timestamp() * 1000):013d}-{uuid.uuid4().hex[:12]}"
        row = {
            "PartitionKey": _PARTITION,
            "RowKey": row_key,
            "actor": entry.actor,
            "action": entry.action,
            "path": entry.path,
            "to_path": entry.to_path,
            "old_etag": entry.old_etag,
            "new_etag": entry.new_etag,
            "at": now,
        }
        if entry.size is not None:
            row["size"] = entry.size
        try:
            self._tables.upsert_entity(WORKSPACE_JOURNAL_TABLE, row)
        except Exception:
            # The change is already on disk; failing the request now would invite a retry
            # that conflicts with itself. The log keeps what the journal missed.
            log.exception(
                "workspace journal write failed", extra={"action": entry.action, "path": entry.path}
            )

    def recent(self, limit: int) -> list[JournalEntry]:
        rows = self._tables.query_entities(
            WORKSPACE_JOURNAL_TABLE, "PartitionKey eq @pk", parameters={"pk": _PARTITION}
        )
        found = []
        for row in rows:
            found.append(
                JournalEntry(
                    actor=row.get("actor", ""),
                    action=row.get("action", ""),
                    path=row.get("path", ""),
                    to_path=row.get("to_path", ""),
                    old_etag=row.get("old_etag", ""),
                    new_etag=row.get("new_etag", ""),
                    size=row.get("size"),
                    at=row.get("at"),
                )
            )
            if len(found) >= limit:
                break
        return found
