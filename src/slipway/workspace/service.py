"""Workspace operations as users perform them: read-only mode enforced, every change journaled.

The API calls this; so will anything else that changes the workspace on a user's behalf.
GitHub sync writes through the store directly, because it is the one writer allowed in
GitHub mode.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO

from slipway.workspace.archive import stream_archive
from slipway.workspace.errors import ArchiveTooLarge, WorkspaceReadOnly
from slipway.workspace.journal import JournalEntry, WorkspaceJournal
from slipway.workspace.mode import WorkspaceMode, WorkspaceModeStore
from slipway.workspace.paths import join
from slipway.workspace.store import Entry, FileContent, WorkspaceStore, WriteResult

_MIB = 1024 * 1024
_SPOOL_IN_MEMORY_BYTES = 8 * _MIB
_READ_BYTES = 1024 * 1024


def _read_and_close(spool: IO[bytes]) -> Iterator[bytes]:
    with spool:
        while chunk := spool.read(_READ_BYTES):
            yield chunk


class WorkspaceService:
    def __init__(self, store: WorkspaceStore, modes: WorkspaceModeStore, journal: WorkspaceJournal) -> None:
        self.store = store
        self._modes = modes
        self._journal = journal

    def mode(self) -> WorkspaceMode:
        return self._modes.get()

    def _writable(self) -> None:
        mode = self._modes.get()
        if mode.read_only:
            raise WorkspaceReadOnly(
                f"the workspace is managed by GitHub ({mode.repository}, branch {mode.branch}); "
                "change it there, or disconnect GitHub to edit here"
            )

    def tree(self) -> tuple[WorkspaceMode, list[Entry]]:
        # The mode is a storage round trip and the walk is local work: do them side by side.
        with ThreadPoolExecutor(max_workers=1) as pool:
            mode = pool.submit(self._modes.get)
            entries = self.store.tree()
            return mode.result(), entries

    def read_file(self, parts: tuple[str, ...]) -> FileContent:
        return self.store.read_file(parts)

    def archive(self, *, deflate: bool) -> Iterator[bytes]:
        return stream_archive(self.store, deflate=deflate)

    def bounded_archive(self, *, deflate: bool, max_bytes: int) -> Iterator[bytes]:
        """The zip built in full before the first byte is sent, for an adapter that buffers the
        response anyway: in a spooled temporary file (memory up to 8 MB, then disk), refused with
        ``ArchiveTooLarge`` as soon as it passes ``max_bytes``; then read back in chunks."""
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115 (closed by _read_and_close)
        try:
            size = 0
            for chunk in stream_archive(self.store, deflate=deflate):
                size += len(chunk)
                if size > max_bytes:
                    raise ArchiveTooLarge(
                        f"the workspace zip is over {max_bytes // _MIB} MB (SLIPWAY_ARCHIVE_MAX_MB), the most "
                        "this host sends in one response: it holds the whole response in memory"
                    )
                spool.write(chunk)
            spool.seek(0)
        except BaseException:
            spool.close()
            raise
        return _read_and_close(spool)

    def write_file(
        self,
        actor: str,
        parts: tuple[str, ...],
        data: bytes,
        *,
        if_match: str | None,
        if_none_match: str | None,
    ) -> WriteResult:
        self._writable()
        result = self.store.write_file(parts, data, if_match=if_match, if_none_match=if_none_match)
        self._journal.record(
            JournalEntry(
                actor=actor,
                action="create" if result.created else "update",
                path=result.entry.path,
                old_etag=result.old_etag or "",
                new_etag=result.entry.etag or "",
                size=result.entry.size,
            )
        )
        return result

    def make_folder(self, actor: str, parts: tuple[str, ...]) -> Entry:
        self._writable()
        entry = self.store.make_folder(parts)
        self._journal.record(JournalEntry(actor=actor, action="mkdir", path=entry.path))
        return entry

    def delete(self, actor: str, parts: tuple[str, ...], *, recursive: bool, if_match: str | None) -> Entry:
        self._writable()
        entry = self.store.delete(parts, recursive=recursive, if_match=if_match)
        self._journal.record(
            JournalEntry(actor=actor, action="delete", path=entry.path, old_etag=entry.etag or "")
        )
        return entry

    def move(self, actor: str, source: tuple[str, ...], target: tuple[str, ...]) -> Entry:
        self._writable()
        entry = self.store.move(source, target)
        self._journal.record(
            JournalEntry(
                actor=actor, action="move", path=join(source), to_path=entry.path, new_etag=entry.etag or ""
            )
        )
        return entry

    def journal(self, limit: int) -> list[JournalEntry]:
        return self._journal.recent(limit)
