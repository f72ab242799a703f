"""What a sync works with: its errors and results, tree entries, and the rules for the share.

Git trees may hold what an Azure Files share cannot: symbolic links, submodules, names the
share refuses, and paths that differ only in letter case. The first three are skipped, each
with a warning; the last is refused as a whole (``TreeRefused``) before anything is written,
since the share would fold the two paths into one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from slipway.workspace.errors import PathRejected
from slipway.workspace.paths import MAX_PATH, check_name

# ---------------------------------------------------------------------------------- errors


class SyncError(Exception):
    """Base of sync failures; the message is meant for users and never holds a secret."""


class FetchError(SyncError):
    """The remote could not be reached, refused the credentials, or failed: worth retrying."""


class BranchNotFound(SyncError):
    """The branch does not exist on the remote (deleted?): not retried, the workspace is kept."""


class TreeRefused(SyncError):
    """The branch cannot be represented on the share; raised before the workspace is touched."""


# ---------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SyncResult:
    before: str | None  # commit the workspace was at (None on a full sync)
    after: str  # commit now in the workspace
    mode: str  # "incremental" or "full"
    added: int
    changed: int
    deleted: int
    bytes_written: int
    fs_operations: int  # calls made on the workspace file system
    warnings: list[str]  # entries skipped, each with the reason
    duration_ms: int
    renamed: int = 0  # exact renames applied as one rename (not counted in added/deleted)
    # Paths the change touched that the workspace no longer held as the last synced commit
    # left them (changed by hand); the sync then reconciled in full and put them back.
    drift: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SyncPreview:
    """What a full sync to ``commit`` would do to the workspace; nothing is written."""

    commit: str
    add: int
    overwrite: int
    delete: int
    unchanged: int
    overwrite_paths: list[str] = field(default_factory=list)  # first 50, sorted
    delete_paths: list[str] = field(default_factory=list)  # first 50, sorted


# ---------------------------------------------------------------------------------- tree rules

MODE_FILE = "100644"
MODE_EXECUTABLE = "100755"
MODE_SYMLINK = "120000"
MODE_SUBMODULE = "160000"
FILE_MODES = frozenset({MODE_FILE, MODE_EXECUTABLE, "100664"})  # 100664: old git trees
# A tree with thousands of links (a committed node_modules, say) must not flood the journal.
MAX_WARNINGS = 100


@dataclass(frozen=True)
class TreeEntry:
    """A regular file of the branch that the share can hold."""

    path: str
    parts: tuple[str, ...]
    mode: str
    oid: str
    size: int  # -1 when unknown (taken from the blob when it is read)

    @property
    def executable(self) -> bool:
        return self.mode == MODE_EXECUTABLE


def classify(mode: str, raw_path: bytes) -> tuple[str, tuple[str, ...], str | None]:
    """``(path, parts, warning)``: ``warning`` is None for an entry the share can hold."""
    path = raw_path.decode("utf-8", "surrogateescape")
    parts = tuple(path.split("/"))
    try:
        raw_path.decode("utf-8")
    except UnicodeDecodeError:
        return path, parts, f"skipped {raw_path!r}: the name is not valid UTF-8"
    if mode == MODE_SYMLINK:
        return path, parts, f"skipped {path}: symbolic links are not synced (Azure Files cannot hold them)"
    if mode == MODE_SUBMODULE:
        return path, parts, f"skipped {path}: submodules are not synced (only the branch's own files are)"
    if mode not in FILE_MODES:
        return path, parts, f"skipped {path}: git mode {mode} is not a regular file"
    if len(path) > MAX_PATH:
        return (
            path,
            parts,
            f"skipped {path[:80]}...: the path is {len(path)} characters long; Azure Files allows {MAX_PATH}",
        )
    for name in parts:
        why = _name_refused(name)
        if why is not None:
            return path, parts, f"skipped {path}: {why}"
    return path, parts, None


@functools.lru_cache(maxsize=65536)
def _name_refused(name: str) -> str | None:
    """Why Azure Files refuses ``name`` (cached: folder names repeat in every path below them)."""
    try:
        check_name(name)
    except PathRejected as exc:
        return exc.message
    return None


class Warnings:
    """Warnings in order, at most ``MAX_WARNINGS`` of them plus a count of the rest."""

    def __init__(self) -> None:
        self._items: list[str] = []
        self._dropped = 0

    def add(self, text: str) -> None:
        if len(self._items) < MAX_WARNINGS:
            self._items.append(text)
        else:
            self._dropped += 1

    def as_list(self) -> list[str]:
        if self._dropped:
            return [*self._items, f"... and {self._dropped} more entries skipped"]
        return list(self._items)


def folders_of(paths: list[tuple[str, ...]]) -> set[tuple[str, ...]]:
    """Every folder that holds one of ``paths`` (the root excluded)."""
    folders: set[tuple[str, ...]] = set()
    for parts in paths:
        folders.update(parts[:depth] for depth in range(1, len(parts)))
    return folders


def check_case(paths: list[tuple[str, ...]], folders: set[tuple[str, ...]]) -> None:
    """Raise ``TreeRefused`` when two paths (files or folders) differ only in letter case."""
    seen: dict[tuple[str, ...], tuple[str, ...]] = {}
    clashes: list[str] = []
    for parts in (*folders, *paths):
        key = tuple(name.casefold() for name in parts)
        other = seen.setdefault(key, parts)
        if other != parts:
            first, second = sorted(["/".join(other), "/".join(parts)])
            clashes.append(f"{first} and {second}")
    if clashes:
        clashes.sort()
        shown = "; ".join(clashes[:5])
        more = f" (and {len(clashes) - 5} more)" if len(clashes) > 5 else ""
        raise TreeRefused(
            f"the branch has paths that differ only in letter case, which Azure Files treats as "
            f"the same name: {shown}{more}; rename one of each pair in the repository"
        )
