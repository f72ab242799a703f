"""The sync journal: one Table row per sync (or skipped delivery), newest first (FR-020)."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from slipway.adapters.tables import TableStore
from slipway.names import SYNC_JOURNAL_TABLE

log = logging.getLogger("slipway.gitsync")

_PARTITION = "sync"
_FAR_FUTURE_MS = 10**13
_MAX_WARNINGS = 50


@dataclass(frozen=True)
class SyncRecord:
    trigger: str  # connect, push, manual, reconcile
    result: str  # succeeded, failed, skipped
    message: str = ""
    deliveries: tuple[str, ...] = ()
    before: str = ""
    after: str = ""
    added: int = 0
    changed: int = 0
    deleted: int = 0
    bytes: int = 0
    duration_ms: int = 0
    warnings: tuple[str, ...] = ()
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, object]:
        return {
            "delivery": ",".join(self.deliveries) or None,
            "deliveries": list(self.deliveries),
            "trigger": self.trigger,
            "before": self.before or None,
            "after": self.after or None,
            "added": self.added,
            "changed": self.changed,
            "deleted": self.deleted,
            "bytes": self.bytes,
            "duration_ms": self.duration_ms,
            "result": self.result,
            "message": self.message,
            "warnings": list(self.warnings),
            "at": self.at.isoformat().replace("+00:00", "Z"),
        }


class SyncJournal:
    def __init__(self, tables: TableStore) -> None:
        self._tables = tables

    def record(self, record: SyncRecord) -> None:
        """Write the row and the log line; a journal outage is logged, never raised."""
        context = {k: v for k, v in record.to_json().items() if k not in ("warnings", "deliveries")}
        level = logging.WARNING if record.result == "failed" or record.warnings else logging.INFO
        log.log(
            level,
            "workspace sync %s",
            record.result,
            extra={"sync": context, "warnings": len(record.warnings)},
        )
        row_key = f"{_FAR_FUTURE_MS - int(record.at.timestamp() * 1000):013d}-{uuid.uuid4().hex[:12]}"
        warnings = list(record.warnings[:_MAX_WARNINGS])
        if len(record.warnings) > _MAX_WARNINGS:
            warnings.append(f"... and {len(record.warnings) - _MAX_WARNINGS} more")
        row = {
            "PartitionKey": _PARTITION,
            "RowKey": row_key,
            "trigger": record.trigger,
            "result": record.result,
            "message": record.message[:4000],
            "deliveries": ",".join(record.deliveries)[:4000],
            "before": record.before,
            "after": record.after,
            "added": record.added,
            "changed": record.changed,
            "deleted": record.deleted,
            "bytes": record.bytes,
            "duration_ms": record.duration_ms,
            "warnings": json.dumps(warnings)[:30000],
            "at": record.at,
        }
        try:
            self._tables.upsert_entity(SYNC_JOURNAL_TABLE, row)
        except Exception:
            log.exception("sync journal write failed")

    def recent(self, limit: int) -> list[SyncRecord]:
        found = []
        for row in self._tables.query_entities(
            SYNC_JOURNAL_TABLE, "PartitionKey eq @pk", parameters={"pk": _PARTITION}
        ):
            found.append(
                SyncRecord(
                    trigger=row.get("trigger", ""),
                    result=row.get("result", ""),
                    message=row.get("message", ""),
                    deliveries=tuple(d for d in str(row.get("deliveries", "")).split(",") if d),
                    before=row.get("before", ""),
                    after=row.get("after", ""),
                    added=int(row.get("added", 0)),
                    changed=int(row.get("changed", 0)),
                    deleted=int(row.get("deleted", 0)),
                    bytes=int(row.get("bytes", 0)),
                    duration_ms=int(row.get("duration_ms", 0)),
                    warnings=tuple(json.loads(row.get("warnings") or "[]")),
                    at=row.get("at") or datetime.now(UTC),
                )
            )
            if len(found) >= limit:
                break
        return found
