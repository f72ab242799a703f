"""The GitHub connection as stored: which repository and branch, the webhook, the last sync.

One Table entity; the token and the webhook secret are never here, only in the secret store.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from slipway.adapters.tables import TableStore
from slipway.names import STATE_TABLE

_PARTITION = "github"
_ROW = "connection"

# Names in the secret store (Key Vault names: letters, digits, dashes).
TOKEN_SECRET = "github-token"  # noqa: S105 - the name of a secret, not its value
WEBHOOK_SECRET = "github-webhook-secret"  # noqa: S105 - the name of a secret, not its value


@dataclass(frozen=True)
class Connection:
    repository: str
    branch: str
    remote_url: str
    hook_id: int | None
    hook_managed: bool
    webhook_url: str
    connected_at: datetime
    connected_by: str
    last_synced_commit: str = ""
    snapshots: tuple[str, ...] = ()
    # "connecting" from before the connect's first side effect until its first sync succeeded:
    # a connect killed half-way is found by it and finished or undone (GitSyncService.recover).
    state: str = "connected"

    def with_synced(self, commit: str) -> Connection:
        return replace(self, last_synced_commit=commit)


class ConnectionStore:
    def __init__(self, tables: TableStore) -> None:
        self._tables = tables

    def get(self) -> Connection | None:
        row = self._tables.get_entity(STATE_TABLE, _PARTITION, _ROW)
        if not row or not row.get("repository"):
            return None
        hook = row.get("hook_id")
        return Connection(
            repository=row["repository"],
            branch=row["branch"],
            remote_url=row.get("remote_url", ""),
            hook_id=int(hook) if hook not in (None, "", -1) else None,
            hook_managed=bool(row.get("hook_managed", False)),
            webhook_url=row.get("webhook_url", ""),
            connected_at=row["connected_at"],
            connected_by=row.get("connected_by", ""),
            last_synced_commit=row.get("last_synced_commit", ""),
            snapshots=tuple(s for s in str(row.get("snapshots", "")).split(",") if s),
            state=str(row.get("state") or "connected"),
        )

    def save(self, connection: Connection) -> None:
        self._tables.upsert_entity(
            STATE_TABLE,
            {
                "PartitionKey": _PARTITION,
                "RowKey": _ROW,
                "repository": connection.repository,
                "branch": connection.branch,
                "remote_url": connection.remote_url,
                "hook_id": connection.hook_id if connection.hook_id is not None else -1,
                "hook_managed": connection.hook_managed,
                "webhook_url": connection.webhook_url,
                "connected_at": connection.connected_at,
                "connected_by": connection.connected_by,
                "last_synced_commit": connection.last_synced_commit,
                "snapshots": ",".join(connection.snapshots),
                "state": connection.state,
            },
        )

    def record_synced(self, commit: str) -> None:
        current = self.get()
        if current is not None:
            self.save(current.with_synced(commit))

    def delete(self) -> None:
        self._tables.delete_entity(STATE_TABLE, _PARTITION, _ROW)
