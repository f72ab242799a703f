"""Table storage behind a small interface (Azure Tables in Azure, Azurite locally)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from slipway.adapters.responses import response_versions


class EntityNotFound(LookupError):
    """The row to update does not exist."""


class TableStore:
    """Entities in named tables; a table is created on first use."""

    def __init__(self, service: TableServiceClient) -> None:
        self._service = service
        self._tables: dict[str, TableClient] = {}
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return self._service.url

    def _table(self, name: str, **create_options: Any) -> TableClient:
        with self._lock:
            client = self._tables.get(name)
            if client is None:
                client = self._service.get_table_client(name)
                with contextlib.suppress(ResourceExistsError):
                    client.create_table(**create_options)
                self._tables[name] = client
            return client

    def create_entity(self, table: str, entity: Mapping[str, Any]) -> bool:
        """Insert ``entity``; False when a row with its keys exists already (atomic)."""
        try:
            self._table(table).create_entity(dict(entity))
            return True
        except ResourceExistsError:
            return False

    def get_entity_etag(
        self, table: str, partition_key: str, row_key: str
    ) -> tuple[dict[str, Any], str] | None:
        """The row and its ETag, for a later conditional write."""
        try:
            found = self._table(table).get_entity(partition_key, row_key)
        except ResourceNotFoundError:
            return None
        return dict(found), str(found.metadata["etag"])

    def replace_entity_if(self, table: str, entity: Mapping[str, Any], etag: str) -> bool:
        """Replace the row only if it still has ``etag``; False when someone changed it first."""
        try:
            self._table(table).update_entity(
                dict(entity),
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
            return True
        except (ResourceModifiedError, ResourceNotFoundError):
            return False

    def update_entity_with(
        self,
        table: str,
        partition_key: str,
        row_key: str,
        change: Callable[[dict[str, Any]], dict[str, Any] | None],
        *,
        attempts: int = 20,
    ) -> dict[str, Any] | None:
        """Read the row, apply ``change`` and write it back under the ETag read, again until no
        one else wrote in between. ``change`` returns the row to write, or None to leave it.

        Returns the row written, None when ``change`` left it; raises ``EntityNotFound`` when
        there is no such row, ``RuntimeError`` when other writers kept winning.
        """
        for _ in range(attempts):
            found = self.get_entity_etag(table, partition_key, row_key)
            if found is None:
                raise EntityNotFound(f"{table}/{partition_key}/{row_key}")
            row, etag = found
            updated = change(dict(row))
            if updated is None:
                return None
            if self.replace_entity_if(table, updated, etag):
                return updated
        raise RuntimeError(f"{table}/{partition_key}/{row_key} kept changing under concurrent updates")

    def delete_entity_if(self, table: str, partition_key: str, row_key: str, etag: str) -> bool:
        try:
            self._table(table).delete_entity(
                partition_key, row_key, etag=etag, match_condition=MatchConditions.IfNotModified
            )
            return True
        except (ResourceModifiedError, ResourceNotFoundError):
            return False

    def upsert_entity(self, table: str, entity: Mapping[str, Any], **kwargs: Any) -> None:
        self._table(table).upsert_entity(dict(entity), mode=UpdateMode.REPLACE, **kwargs)

    def get_entity(
        self, table: str, partition_key: str, row_key: str, **kwargs: Any
    ) -> dict[str, Any] | None:
        try:
            return dict(self._table(table).get_entity(partition_key, row_key, **kwargs))
        except ResourceNotFoundError:
            return None

    def delete_entity(self, table: str, partition_key: str, row_key: str) -> None:
        self._table(table).delete_entity(partition_key, row_key)

    def probe(self, table: str, entity: Mapping[str, Any]) -> dict[str, str]:
        """Write and read back ``entity``; returns which server and API version answered."""
        captured: dict[str, str] = {}
        # One retry only: a readiness probe must report a dead service, not wait it out.
        self._table(table, retry_total=1).upsert_entity(dict(entity), mode=UpdateMode.REPLACE, retry_total=1)
        self._table(table).get_entity(
            entity["PartitionKey"],
            entity["RowKey"],
            raw_response_hook=response_versions(captured),
            retry_total=1,
        )
        return captured

    def query_entities(
        self,
        table: str,
        query_filter: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        pages = self._table(table).query_entities(
            query_filter, parameters=dict(parameters or {}), results_per_page=page_size
        )
        for entity in pages:
            yield dict(entity)

    def transact(
        self, table: str, operations: list[tuple[str, Mapping[str, Any], dict[str, Any]]]
    ) -> list[str] | None:
        """Apply ``operations`` (one partition, at most 100) all or none; the new ETags, in order.

        Each is ``(verb, entity, options)`` with verb ``create``, ``upsert`` or ``replace``;
        ``replace`` options may carry ``etag``. None when a condition failed (a row existed
        for ``create``, or changed since its ETag was read): nothing was written.
        """
        batch: list[Any] = []
        for verb, entity, options in operations:
            if verb == "create":
                batch.append(("create", dict(entity)))
            elif verb == "upsert":
                batch.append(("upsert", dict(entity), {"mode": UpdateMode.REPLACE}))
            elif verb == "replace":
                batch.append(
                    (
                        "update",
                        dict(entity),
                        {"mode": UpdateMode.REPLACE, "etag": options["etag"],
                         "match_condition": MatchConditions.IfNotModified},
                    )
                )  # fmt: skip
            else:
                raise ValueError(f"unknown table operation {verb!r}")
        try:
            results = self._table(table).submit_transaction(batch)
        except TableTransactionError as exc:
            if exc.status_code in (409, 412):
                return None
            raise
        return [str(result.get("etag", "")) for result in results]
