"""The dependency cache: ``node_modules`` saved after a successful install and restored before
the next one with the same key.

Key: SHA-256 of (cache format, package manager, Node major version, SHA-256 of the lockfile, the
dependency fields of ``package.json``). The Node major version rotates it with the runtime
(native modules are built for one ABI); ``package.json``'s dependency fields make a lockfile
that no longer matches its manifest miss the cache, so the frozen install runs and says so; the
format number lets Slipway drop every entry at once. No lockfile, no cache: without one an
install is not reproducible. An entry is saved only after a frozen install of exactly that
lockfile succeeded, so a hit is the tree that install would produce again.

Layout: ``<root>/<key>/node_modules`` and ``<root>/<key>/meta.json``. An entry is written under
a temporary name and renamed into place, so it is either complete or absent; when two builds
save the same key at once, the first rename wins and the second build drops its copy (a
rename onto a non-empty folder fails). Recency is the entry folder's modification time, touched
on every restore; beyond ``keep`` entries the least recent are renamed away, then deleted.

Copies are real copies (``cp -a --reflink=auto``, falling back to :func:`shutil.copytree`):
hard links would let a build that patches a file inside ``node_modules`` corrupt the cache. On
this machine ``cp -a`` of a 195 MB, 24k-file ``node_modules`` took 1.0-4.9 s, ``copytree``
2.1-6.8 s, ``cp -al`` 0.3 s.

A restore that fails half-way (an eviction racing with it) removes what it copied and reports a
miss. The build checks a restored tree before trusting it: for npm, :func:`npm_tree_problem`
compares it with ``package-lock.json`` in Python (tens of milliseconds where starting npm costs
hundreds); for the other managers an offline install does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from slipway.deploy.detect import BuildPlan

__all__ = ["CACHE_FORMAT", "DependencyCache", "cache_key", "npm_tree_problem"]

CACHE_FORMAT = 2
_DEPENDENCY_FIELDS = (
    "dependencies",
    "devDependencies",
    "optionalDependencies",
    "peerDependencies",
    "bundleDependencies",
    "bundledDependencies",
    "overrides",
    "resolutions",
    "workspaces",
)
_META = "meta.json"
_MODULES = "node_modules"
# Temporary and trash folders older than this belong to a build that died: removed on eviction.
_STALE_SECONDS = 3600


def cache_key(plan: BuildPlan, *, node_major: int) -> str | None:
    """The cache key of ``plan``'s dependencies, or ``None`` when it has no lockfile."""
    if plan.lockfile is None or plan.package_manager is None:
        return None
    lock_digest = hashlib.sha256((plan.project_dir / plan.lockfile).read_bytes()).hexdigest()
    try:
        manifest = json.loads((plan.project_dir / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    declared = (
        {field: manifest.get(field) for field in _DEPENDENCY_FIELDS} if isinstance(manifest, dict) else {}
    )
    declared_digest = hashlib.sha256(json.dumps(declared, sort_keys=True).encode()).hexdigest()
    material = f"slipway-deps/{CACHE_FORMAT}\0{plan.package_manager}\0node{node_major}\0{lock_digest}\0{declared_digest}"
    return hashlib.sha256(material.encode()).hexdigest()


class DependencyCache:
    """``node_modules`` folders under ``root``, at most ``keep`` of them."""

    def __init__(self, root: str | os.PathLike[str], *, keep: int = 5) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.root = Path(root)
        self.keep = keep

    def list_keys(self) -> list[str]:
        """Cached keys, most recently used first."""
        if not self.root.is_dir():
            return []
        entries = [p for p in self.root.iterdir() if not p.name.startswith(".") and (p / _META).is_file()]
        entries.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
        return [p.name for p in entries]

    def restore(self, key: str, project_dir: Path) -> bool:
        """Copy the cached ``node_modules`` of ``key`` into ``project_dir``; False on a miss."""
        entry = self.root / key
        try:
            meta = json.loads((entry / _META).read_text())
        except (OSError, ValueError):
            return False
        if meta.get("key") != key or not (entry / _MODULES).is_dir():
            return False
        target = project_dir / _MODULES
        _remove(target)
        try:
            _copy_tree(entry / _MODULES, target)
        except (OSError, subprocess.CalledProcessError):
            _remove(target)
            return False
        with contextlib.suppress(OSError):
            os.utime(entry)
        return True

    def save(self, key: str, project_dir: Path, *, meta: dict[str, object] | None = None) -> bool:
        """Store ``project_dir``'s ``node_modules`` under ``key``; False if it was already there
        (or another build stored it first)."""
        source = project_dir / _MODULES
        entry = self.root / key
        if entry.exists():
            with contextlib.suppress(OSError):
                os.utime(entry)
            return False
        if not source.is_dir():
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self.root / f".tmp-{uuid.uuid4().hex}"
        temporary.mkdir()
        try:
            _copy_tree(source, temporary / _MODULES)
            record = {"key": key, "saved_at": time.time(), **(meta or {})}
            (temporary / _META).write_text(json.dumps(record, indent=2, sort_keys=True))
            os.rename(temporary, entry)
        except (OSError, subprocess.CalledProcessError):
            _remove(temporary)
            return False
        self.evict()
        return True

    def evict(self) -> list[str]:
        """Delete all but the ``keep`` most recently used entries; return the keys deleted."""
        evicted = self.list_keys()[self.keep :]
        for key in evicted:
            trash = self.root / f".trash-{uuid.uuid4().hex}"
            try:
                os.rename(self.root / key, trash)
            except OSError:
                continue  # another build evicted it first
            _remove(trash)
        now = time.time()
        for leftover in self.root.glob(".*-*"):
            with contextlib.suppress(OSError):
                if now - leftover.stat().st_mtime > _STALE_SECONDS:
                    _remove(leftover)
        return evicted


def _copy_tree(source: Path, target: Path) -> None:
    """A real copy (links inside kept as links); ``target`` must not exist."""
    if shutil.which("cp"):
        subprocess.run(
            ["cp", "-a", "--reflink=auto", str(source), str(target)],
            check=True,
            capture_output=True,
        )
    else:
        shutil.copytree(source, target, symlinks=True)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def npm_tree_problem(project_dir: Path) -> str | None:
    """What in ``node_modules`` differs from ``package-lock.json`` (v2 or v3), or None when every
    package the lockfile installs is there at its version. Optional packages may be absent (npm
    skips those for other platforms); linked workspace packages are checked for presence."""
    try:
        lock = json.loads((project_dir / "package-lock.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"package-lock.json cannot be read: {exc}"
    packages = lock.get("packages") if isinstance(lock, dict) else None
    if not isinstance(packages, dict):
        return "package-lock.json has no packages section (lockfileVersion 1 is not checked)"
    for path, entry in packages.items():
        if not path.startswith(_MODULES + "/") or not isinstance(entry, dict):
            continue
        where = project_dir / path
        if entry.get("optional") and not where.exists():
            continue
        if entry.get("link"):
            if not where.exists():
                return f"{path} is missing"
            continue
        try:
            installed = json.loads((where / "package.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return f"{path} is missing"
        wanted = entry.get("version")
        if wanted is not None and installed.get("version") != wanted:
            return f"{path} is {installed.get('version')}, the lockfile wants {wanted}"
    return None
