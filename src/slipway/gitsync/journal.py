"""The sync journal: one Table row per sync that did something (or failed, or skipped a
delivery), newest first (FR-020); a pass that found nothing to change leaves no row.

Row keys sort newest first, so a page is a range query from the last key of the one before:
``page(limit, after=key)`` reads at most ``limit`` rows however long the journal is."""

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
_LAST_PASS = "latest-pass"  # noqa: S105 - a row key, not a password
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
    # Paths the workspace had changed by hand since the last sync (the sync put them back).
    drift: tuple[str, ...] = ()
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    key: str = ""  # the row's key once stored: the cursor of the page after it

    @property
    def changed_nothing(self) -> bool:
        return (
            self.result == "succeeded"
            and self.after == self.before
            and not (self.added or self.changed or self.deleted or self.drift)
        )

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.key or None,
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
            "drift": list(self.drift),
            "at": self.at.isoformat().replace("+00:00", "Z"),
        }


class SyncJournal:
    def __init__(self, tables: TableStore) -> None:
        self._tables = tables

    def note_pass(self, record: SyncRecord) -> None:
        """Remember the last pass, whatever it found (the status shows it: a "Sync now" that
        found nothing to change has no journal row but still answers the one who asked)."""
        row = {
            "PartitionKey": _LAST_PASS,
            "RowKey": _LAST_PASS,
            "trigger": record.trigger,
            "result": record.result,
            "message": record.message[:4000],
            "after": record.after,
            "duration_ms": record.duration_ms,
            "at": record.at,
        }
        try:
            self._tables.upsert_entity(SYNC_JOURNAL_TABLE, row)
        except Exception:
            log.exception("sync journal write failed")

    def last_pass(self) -> dict[str, object] | None:
        row = self._tables.get_entity(SYNC_JOURNAL_TABLE, _LAST_PASS, _LAST_PASS)
        if not row:
            return None
        at = row.get("at")
        return {
            "trigger": row.get("trigger", ""),
            "result": row.get("result", ""),
            "message": row.get("message", ""),
            "commit": row.get("after") or None,
            "duration_ms": row.get("duration_ms", 0),
            "at": at.isoformat().replace("+00:00", "Z") if isinstance(at, datetime) else None,
        }

    def record(self, record: SyncRecord) -> None:
        """Write the row and the log line; a journal outage is logged, never raised."""
        context = {k: v for k, v in record.to_json().items() if k not in ("warnings", "deliveries", "drift")}
        level = (
            logging.WARNING if record.result == "failed" or record.warnings or record.drift else logging.INFO
        )
        log.log(
            level,
            "workspace sync %s",
            record.result,
            extra={"sync": context, "warnings": len(record.warnings), "drift": len(record.drift)},
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
            "warnings": _bounded_json(warnings),
            "drift": _bounded_json(list(record.drift)),
            "at": record.at,
        }
        try:
            self._tables.upsert_entity(SYNC_JOURNAL_TABLE, row)
        except Exception:
            log.exception("sync journal write failed")

    def recent(self, limit: int) -> list[SyncRecord]:
        return self.page(limit)[0]

    def page(self, limit: int, *, after: str | None = None) -> tuple[list[SyncRecord], str | None]:
        """At most ``limit`` records older than the one keyed ``after``; and the cursor of the
        next page, None when there is none."""
        query = "PartitionKey eq @pk"
        parameters: dict[str, object] = {"pk": _PARTITION}
        if after:
            query += " and RowKey gt @after"
            parameters["after"] = after
        found: list[SyncRecord] = []
        more = False
        for row in self._tables.query_entities(
            SYNC_JOURNAL_TABLE, query, parameters=parameters, page_size=min(limit + 1, 1000)
        ):
            if len(found) >= limit:
                more = True
                break
            found.append(_record(row))
        return found, (found[-1].key if more and found else None)


def _bounded_json(items: list[str]) -> str:
    """A JSON list within a Table property's 64 KiB (32K characters): the first items, then a
    count of the others."""
    kept: list[str] = []
    size = 2
    for index, item in enumerate(items):
        size += len(json.dumps(item)) + 1
        if size > 28000 or index >= 1000:
            kept.append(f"... and {len(items) - index} more")
            break
        kept.append(item)
    return json.dumps(kept)


def _record(row: dict[str, object]) -> SyncRecord:
    def number(name: str) -> int:
        value = row.get(name)
        return int(value) if isinstance(value, int | float) else 0

    at = row.get("at")
    return SyncRecord(
        trigger=str(row.get("trigger", "")),
        result=str(row.get("result", "")),
        message=str(row.get("message", "")),
        deliveries=tuple(d for d in str(row.get("deliveries", "")).split(",") if d),
        before=str(row.get("before", "")),
        after=str(row.get("after", "")),
        added=number("added"),
        changed=number("changed"),
        deleted=number("deleted"),
        bytes=number("bytes"),
        duration_ms=number("duration_ms"),
        warnings=tuple(json.loads(str(row.get("warnings") or "[]"))),
        drift=tuple(json.loads(str(row.get("drift") or "[]"))),
        at=at if isinstance(at, datetime) else datetime.now(UTC),
        key=str(row.get("RowKey", "")),
    )
