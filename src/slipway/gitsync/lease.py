"""One sync at a time across every instance: a lease row in Table storage with an expiry.

Taken with an ETag-conditional write, so two instances cannot both hold it; a holder that
died releases it by expiry, so a crashed sync never blocks the next one for long.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from slipway.adapters.tables import TableStore
from slipway.names import STATE_TABLE

_PARTITION = "github"
_ROW = "sync-lease"


class LeaseBusy(Exception):
    """Another sync holds the lease; try again later."""


class SyncLease:
    def __init__(self, tables: TableStore, *, duration: timedelta = timedelta(minutes=30)) -> None:
        self._tables = tables
        self._duration = duration

    @contextmanager
    def hold(self, *, wait_seconds: float = 0) -> Iterator[None]:
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + wait_seconds
        while not self._try_acquire(owner):
            if time.monotonic() >= deadline:
                raise LeaseBusy("another workspace sync is running")
            time.sleep(0.5)
        try:
            yield
        finally:
            self._release(owner)

    def _try_acquire(self, owner: str) -> bool:
        now = datetime.now(UTC)
        entity = {"PartitionKey": _PARTITION, "RowKey": _ROW, "owner": owner, "expires": now + self._duration}
        if self._tables.create_entity(STATE_TABLE, entity):
            return True
        found = self._tables.get_entity_etag(STATE_TABLE, _PARTITION, _ROW)
        if found is None:
            return self._tables.create_entity(STATE_TABLE, entity)
        current, etag = found
        if current.get("owner") and current["expires"] > now:
            return False
        return self._tables.replace_entity_if(STATE_TABLE, entity, etag)

    def _release(self, owner: str) -> None:
        found = self._tables.get_entity_etag(STATE_TABLE, _PARTITION, _ROW)
        if found is not None and found[0].get("owner") == owner:
            self._tables.delete_entity_if(STATE_TABLE, _PARTITION, _ROW, found[1])
