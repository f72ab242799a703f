"""Build slots: at most N deployments build at once, across every worker.

Slot ``i`` is a row (partition ``build-slot``, row key ``i``) in the sites table holding the
deployment that uses it, taken and given back with conditional writes, so two workers never
hold one slot. A slot whose holder has finished (or no longer exists) is free: a deployment
that died without giving its slot back (its worker was killed) blocks nothing once the reaper
has settled it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from slipway.adapters.tables import EntityNotFound, TableStore
from slipway.names import SITES_TABLE

SLOT_PARTITION = "build-slot"


class BuildSlots:
    def __init__(
        self,
        tables: TableStore,
        size: int,
        *,
        is_finished: Callable[[str], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        if size < 1:
            raise ValueError("a deployment needs at least one build slot")
        self._tables = tables
        self.size = size
        self._is_finished = is_finished
        self._clock = clock

    def acquire(self, deployment_id: str) -> bool:
        """Take a free slot for ``deployment_id`` (True at once when it holds one already)."""
        rows = {row["RowKey"]: row for row in self._rows()}
        if any(row.get("holder") == deployment_id for row in rows.values()):
            return True
        for index in range(self.size):
            key = str(index)
            if key not in rows:
                taken = {
                    "PartitionKey": SLOT_PARTITION,
                    "RowKey": key,
                    "holder": deployment_id,
                    "since": self._clock(),
                }
                if self._tables.create_entity(SITES_TABLE, taken):
                    return True
                continue
            holder = rows[key].get("holder")
            if holder and not self._is_finished(holder):
                continue
            if self._take(key, deployment_id, expected=holder):
                return True
        return False

    def release(self, deployment_id: str) -> None:
        for row in self._rows():
            if row.get("holder") == deployment_id:
                self._take(row["RowKey"], None, expected=deployment_id)

    def holders(self) -> list[str]:
        return [row["holder"] for row in self._rows() if row.get("holder")]

    def _rows(self) -> list[dict[str, Any]]:
        return list(
            self._tables.query_entities(SITES_TABLE, "PartitionKey eq @pk", parameters={"pk": SLOT_PARTITION})
        )

    def _take(self, key: str, holder: str | None, *, expected: str | None) -> bool:
        """Set the slot's holder when it still has ``expected``; whether it was written."""

        def change(row: dict[str, Any]) -> dict[str, Any] | None:
            if row.get("holder") != expected:
                return None
            row.pop("holder", None)
            if holder is not None:
                row.update(holder=holder, since=self._clock())
            return row

        try:
            return self._tables.update_entity_with(SITES_TABLE, SLOT_PARTITION, key, change) is not None
        except EntityNotFound:
            return False
