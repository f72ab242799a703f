"""Who manages the workspace: people in the editor (manual) or a GitHub repository.

Stored as one Table entity so every instance of the app sees a change at once; the GitHub
connection writes it when it connects and disconnects.
"""

from __future__ import annotations

from dataclasses import dataclass

from slipway.adapters.tables import TableStore
from slipway.names import STATE_TABLE

_PARTITION = "workspace"
_ROW = "mode"


@dataclass(frozen=True)
class WorkspaceMode:
    mode: str  # "manual" or "github"
    repository: str = ""
    branch: str = ""

    @property
    def read_only(self) -> bool:
        return self.mode == "github"

    def to_json(self) -> dict[str, object]:
        github = {"repository": self.repository, "branch": self.branch} if self.read_only else None
        return {"mode": self.mode, "github": github}


MANUAL = WorkspaceMode("manual")


class WorkspaceModeStore:
    def __init__(self, tables: TableStore) -> None:
        self._tables = tables

    def get(self) -> WorkspaceMode:
        row = self._tables.get_entity(STATE_TABLE, _PARTITION, _ROW)
        if not row or row.get("mode") != "github":
            return MANUAL
        return WorkspaceMode("github", str(row.get("repository", "")), str(row.get("branch", "")))

    def set_github(self, repository: str, branch: str) -> None:
        entity = {"PartitionKey": _PARTITION, "RowKey": _ROW, "mode": "github"}
        self._tables.upsert_entity(STATE_TABLE, {**entity, "repository": repository, "branch": branch})

    def set_manual(self) -> None:
        self._tables.upsert_entity(
            STATE_TABLE, {"PartitionKey": _PARTITION, "RowKey": _ROW, "mode": "manual"}
        )
