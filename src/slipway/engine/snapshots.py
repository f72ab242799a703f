"""Snapshots of the ``workflows/`` folder, addressed by their content.

A run is pinned to the whole folder as it was when the run was queued, not to one file: a
workflow that imports ``helpers`` (``workflows/helpers.py``, or a package beside it) runs with
the helpers of that moment even when a sync or a save changes them mid-run. A snapshot is a
manifest (workspace path -> SHA-256 of the file) whose own hash is its id; each file's bytes
are kept once, by their hash, in the version store (Blob storage), so any instance can
materialise any snapshot, and a folder of 30 files that changed in one costs one upload.

On an instance a snapshot is materialised once, on local disk, as a read-only tree that the
step's process imports from (``slipway.isolation``); the code it runs still carries the
user's real file paths, so breakpoints and tracebacks name the file the user edits.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from slipway.engine.errors import SnapshotRefused

FOLDER = "workflows"
CONTAINER = "slipway-workflow-versions"
MAX_FILES = 500
MAX_FILE_BYTES = 1024 * 1024
MAX_TOTAL_BYTES = 20 * 1024 * 1024
# What a snapshot leaves out: caches and editor droppings, never code.
_SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".venv", "node_modules", ".mypy_cache", ".pytest_cache"})


class VersionStore(Protocol):
    """Where snapshot files and manifests are kept, addressed by name."""

    def put_if_absent(self, container: str, name: str, data: bytes) -> bool: ...

    def get(self, container: str, name: str) -> bytes | None: ...


@dataclass(frozen=True)
class Snapshot:
    """The folder at one moment: workspace-relative path -> SHA-256 of its bytes."""

    id: str
    files: Mapping[str, str]

    @staticmethod
    def of(files: Mapping[str, str]) -> Snapshot:
        manifest = json.dumps(dict(sorted(files.items())), separators=(",", ":")).encode()
        return Snapshot(hashlib.sha256(manifest).hexdigest()[:24], dict(sorted(files.items())))

    def manifest(self) -> bytes:
        return json.dumps({"files": dict(self.files)}, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Snapshots:
    """Takes snapshots of a workspace's ``workflows/`` folder, keeps them and lays them out on disk."""

    def __init__(self, workspace_dir: Path, versions: VersionStore, local_dir: Path) -> None:
        self._workspace = workspace_dir
        self._versions = versions
        self._local = local_dir
        self._lock = threading.Lock()
        self._fetched: dict[str, Snapshot] = {}
        self._kept: set[str] = set()

    @property
    def workspace_dir(self) -> Path:
        return self._workspace

    def current(self) -> tuple[Snapshot, dict[str, bytes]]:
        """The folder as it is now, with the bytes of every file (to keep or load them)."""
        root = self._workspace / FOLDER
        files: dict[str, str] = {}
        contents: dict[str, bytes] = {}
        total = 0
        for relative, path in _walk(root):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue  # gone, or a symlink: a snapshot holds regular files only
            with os.fdopen(fd, "rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                raise SnapshotRefused(
                    f"{FOLDER}/{relative} is larger than {MAX_FILE_BYTES // 1024} KB; keep data out of {FOLDER}/"
                )
            total += len(data)
            if len(files) >= MAX_FILES or total > MAX_TOTAL_BYTES:
                raise SnapshotRefused(
                    f"{FOLDER}/ holds more than {MAX_FILES} files or {MAX_TOTAL_BYTES // (1024 * 1024)} MB; "
                    "a run pins the whole folder, so keep data and build output elsewhere"
                )
            files[f"{FOLDER}/{relative}"] = _digest(data)
            contents[f"{FOLDER}/{relative}"] = data
        return Snapshot.of(files), contents

    def keep(self, snapshot: Snapshot, contents: Mapping[str, bytes]) -> None:
        """Store the snapshot's files and manifest, so a run of it can load anywhere, later."""
        if snapshot.id in self._kept:
            return
        for path, digest in snapshot.files.items():
            if digest not in self._kept:
                self._versions.put_if_absent(CONTAINER, f"files/{digest}", contents[path])
                with self._lock:
                    self._kept.add(digest)
        self._versions.put_if_absent(CONTAINER, f"snapshots/{snapshot.id}.json", snapshot.manifest())
        with self._lock:
            self._kept.add(snapshot.id)

    def fetch(self, snapshot_id: str) -> Snapshot | None:
        """A kept snapshot by its id, or None when it was never kept (or does not match)."""
        with self._lock:
            known = self._fetched.get(snapshot_id)
        if known is not None:  # a snapshot never changes: every step of a run reads it once here
            return known
        raw = self._versions.get(CONTAINER, f"snapshots/{snapshot_id}.json")
        if raw is None:
            return None
        try:
            files = json.loads(raw)["files"]
        except (ValueError, KeyError, TypeError):
            return None
        snapshot = Snapshot.of({str(k): str(v) for k, v in files.items()})
        if snapshot.id != snapshot_id:
            return None
        with self._lock:
            if len(self._fetched) > 1000:
                self._fetched.clear()
            self._fetched[snapshot_id] = snapshot
        return snapshot

    def single_file(self, name: str, source: bytes) -> tuple[Snapshot, dict[str, bytes]]:
        """A snapshot of one workflow file alone (runs queued before whole-folder snapshots)."""
        path = f"{FOLDER}/{name}.py"
        return Snapshot.of({path: _digest(source)}), {path: source}

    def materialise(self, snapshot: Snapshot, contents: Mapping[str, bytes] | None = None) -> Path:
        """The snapshot's folder on local disk (``<dir>/workflows/...``), read-only to others.

        Built once per instance into a temporary folder renamed into place, so a process killed
        halfway leaves no half tree that a later step would import from.
        """
        target = self._local / snapshot.id
        if (target / ".complete").exists():
            return target
        building = self._local / f".{snapshot.id}.{os.getpid()}.{threading.get_ident()}"
        shutil.rmtree(building, ignore_errors=True)
        for path, digest in snapshot.files.items():
            data = contents.get(path) if contents is not None else None
            if data is None or _digest(data) != digest:
                data = self._versions.get(CONTAINER, f"files/{digest}")
            if data is None or _digest(data) != digest:
                raise SnapshotRefused(f"{path} of snapshot {snapshot.id} was not kept")
            file = building / path
            file.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            file.write_bytes(data)
            file.chmod(0o644)
        (building / FOLDER).mkdir(parents=True, exist_ok=True, mode=0o755)
        (building / ".complete").write_text(snapshot.id)
        for folder in [building, *building.rglob("*")]:
            if folder.is_dir():
                folder.chmod(0o755)
        self._local.mkdir(parents=True, exist_ok=True)
        try:
            building.rename(target)
        except OSError:
            # Another thread or process put it in place first: theirs is the same content.
            shutil.rmtree(building, ignore_errors=True)
        return target


def _walk(root: Path) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    if not root.is_dir():
        return found
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS and not d.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or name.endswith((".pyc", ".pyo")):
                continue
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                continue
            found.append((path.relative_to(root).as_posix(), path))
    return found
