"""Bringing the workspace to a tree: plan, stage every new file (phase 1), then commit (phase 2).

The workspace is an Azure Files share in Azure: every call is a network round trip, names are
case-insensitive, there are no symbolic links and ``chmod`` fails. So:

* every call on the workspace goes through ``FS``, which counts it (``fs_operations``) and
  retries the transient errors a share answers with (``EINTR``, ``EAGAIN``, and ``EBUSY`` for
  a delete that is pending while another handle is open);
* folders are opened one name at a time with ``O_NOFOLLOW`` from the root's descriptor (a
  link is never followed) and kept open in a small cache while a sync runs;
* phase 1 writes each new content to ``.slipway-tmp-<uuid>`` next to its target, creating the
  folders it needs; if anything fails the temps and new folders are removed and the
  workspace is as it was. Phase 2 deletes what goes, renames what moved, renames the temps
  over their targets, prunes emptied folders and fsyncs the folders it changed;
* deletions run before renames, so on a case-insensitive share ``Foo.txt`` → ``foo.txt``
  (a delete and an add) never deletes the file just written, and a file or folder standing
  where the other kind must go is out of the way first;
* the full reconcile matches workspace names to tree names ignoring case, so a folder that
  differs only in case is kept, reused and renamed at the end rather than deleted.

Durability: the temps are flushed before any is renamed over a target. A small change fsyncs
each temp; a large one (more than ``FSYNC_EACH_LIMIT`` files) makes one ``syncfs`` of the
workspace's file system instead, which flushes the same data with one call instead of
thousands (on the benchmark's disk a per-file fsync costs 0.4 ms, 4 s for 10,000 files).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import resource
import stat
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slipway.gitsync.changes import SyncError, TreeEntry, Warnings
from slipway.gitsync.mirror import CHUNK, BlobStream, Git
from slipway.workspace.paths import TEMP_PREFIX

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TRANSIENT = {errno.EINTR, errno.EAGAIN, errno.EBUSY}
_RETRIES = 6
FSYNC_EACH_LIMIT = 64
# Batches smaller than this run on the calling thread (a small push stays simple and ordered).
PARALLEL_MIN = 32
# Threads for a workspace on a network file system (Azure Files): each call waits on a round
# trip there, so calls in flight overlap. On a local disk a call takes microseconds and threads
# only add contention (measured: 10,000 renames 0.15 s on one thread, 0.25 s on eight).
NETWORK_WORKERS = 8
LOCAL_WORKERS = 1
DEFAULT_WORKERS = NETWORK_WORKERS
_NETWORK_FS = ("cifs", "smb3", "smb2", "smbfs", "nfs", "nfs4", "fuse", "9p", "ceph", "glusterfs")
BATCH = 64  # files per pool task
_FSYNC_IGNORED = {errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EROFS}
# A folder in the workspace root while an apply is under way: the next apply, on whichever
# instance, sees it and makes a full reconcile. A folder, because the store's sweep of old
# temp files unlinks files only, and its temp prefix keeps it out of listings and the zip.
UNFINISHED = f"{TEMP_PREFIX}sync-unfinished"


class FS:
    """The workspace's file-system calls: each one counted, transient errors retried."""

    def __init__(self) -> None:
        self.ops = 0
        self._lock = threading.Lock()

    def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        for attempt in range(_RETRIES):
            with self._lock:
                self.ops += 1
            try:
                return function(*args, **kwargs)
            except OSError as exc:
                if exc.errno not in _TRANSIENT or attempt == _RETRIES - 1:
                    raise
                time.sleep(0.02 * 2**attempt)
        raise AssertionError("unreachable")

    def open(self, name: str, flags: int, mode: int = 0o644, *, dir_fd: int | None) -> int:
        return self.call(os.open, name, flags, mode, dir_fd=dir_fd)

    def close(self, fd: int) -> None:
        with self._lock:
            self.ops += 1
        os.close(fd)  # never retried: a second close could close someone else's descriptor

    def read(self, fd: int, size: int) -> bytes:
        return self.call(os.read, fd, size)

    def write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self.call(os.write, fd, view[:CHUNK])
            view = view[written:]

    def fsync(self, fd: int) -> None:
        self.call(os.fsync, fd)

    def fstat(self, fd: int) -> os.stat_result:
        return self.call(os.fstat, fd)

    def lstat(self, name: str, *, dir_fd: int) -> os.stat_result:
        return self.call(os.stat, name, dir_fd=dir_fd, follow_symlinks=False)

    def entry_stat(self, entry: os.DirEntry[str]) -> os.stat_result:
        return self.call(entry.stat, follow_symlinks=False)

    def scandir(self, fd: int) -> list[os.DirEntry[str]]:
        def listing() -> list[os.DirEntry[str]]:
            with os.scandir(fd) as entries:
                return list(entries)

        return self.call(listing)

    def rename(self, src: str, dst: str, *, src_dir_fd: int, dst_dir_fd: int) -> None:
        self.call(os.rename, src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    def unlink(self, name: str, *, dir_fd: int) -> None:
        self.call(os.unlink, name, dir_fd=dir_fd)

    def mkdir(self, name: str, *, dir_fd: int) -> None:
        self.call(os.mkdir, name, 0o755, dir_fd=dir_fd)

    def rmdir(self, name: str, *, dir_fd: int) -> None:
        self.call(os.rmdir, name, dir_fd=dir_fd)

    def syncfs(self, fd: int) -> None:
        self.call(_syncfs, fd)

    def fsync_dir(self, fd: int) -> None:
        """Persist renames in a folder; SMB and some others cannot fsync folders."""
        try:
            self.fsync(fd)
        except OSError as exc:
            if exc.errno not in _FSYNC_IGNORED:
                raise


def _syncfs(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    function = getattr(libc, "syncfs", None)
    if function is None:
        os.sync()
        return
    if function(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


class Blocked(Exception):
    """A folder is needed where the workspace has a file or a link (``parts`` names it)."""

    def __init__(self, parts: tuple[str, ...]) -> None:
        super().__init__("/".join(parts))
        self.parts = parts


class Dirs:
    """Open folder descriptors by path, opened one name at a time without following links.

    Least recently used descriptors nobody holds are closed past ``limit``. Thread-safe.
    """

    def __init__(self, fs: FS, root_fd: int, *, limit: int | None = None) -> None:
        self._fs = fs
        self.root_fd = root_fd
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self._limit = limit or max(16, min(1024, (soft if soft > 0 else 1024) // 4))
        self._fds: OrderedDict[tuple[str, ...], int] = OrderedDict()
        self._refs: dict[tuple[str, ...], int] = {}
        self._lock = threading.RLock()
        self.created: list[tuple[str, ...]] = []

    def acquire(self, parts: tuple[str, ...], *, create: bool = False) -> int:
        if not parts:
            return self.root_fd
        with self._lock:
            fd = self._fds.get(parts)
            if fd is None:
                parent = self.acquire(parts[:-1], create=create)
                try:
                    fd = self._open_child(parent, parts, create)
                finally:
                    self.release(parts[:-1])
                self._fds[parts] = fd
                self._refs[parts] = 0
            self._fds.move_to_end(parts)
            self._refs[parts] += 1
            self._evict()
            return fd

    def release(self, parts: tuple[str, ...]) -> None:
        if parts:
            with self._lock:
                self._refs[parts] -= 1

    @contextlib.contextmanager
    def hold(self, parts: tuple[str, ...], *, create: bool = False) -> Iterator[int]:
        fd = self.acquire(parts, create=create)
        try:
            yield fd
        finally:
            self.release(parts)

    def _open_child(self, parent: int, parts: tuple[str, ...], create: bool) -> int:
        name = parts[-1]
        try:
            return self._fs.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                raise Blocked(parts) from None
            raise
        try:
            self._fs.mkdir(name, dir_fd=parent)
            self.created.append(parts)
        except FileExistsError:
            pass  # made meanwhile, or (on a case-insensitive share) it exists in another case
        try:
            return self._fs.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                raise Blocked(parts) from None
            raise

    def _evict(self) -> None:
        if len(self._fds) <= self._limit:
            return
        for key in list(self._fds):
            if len(self._fds) <= self._limit:
                break
            if self._refs.get(key, 0) == 0:
                self._fs.close(self._fds.pop(key))
                del self._refs[key]

    def forget(self, parts: tuple[str, ...]) -> None:
        """Close the cached descriptors of ``parts`` and everything below it (it was removed or renamed)."""
        with self._lock:
            for key in [k for k in self._fds if k[: len(parts)] == parts]:
                if self._refs.get(key, 0) == 0:
                    self._fs.close(self._fds.pop(key))
                    del self._refs[key]

    def close_all(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                self._fs.close(fd)
            self._fds.clear()
            self._refs.clear()


class Pool:
    """Runs jobs on worker threads (or inline), remembering the first failure."""

    def __init__(self, workers: int) -> None:
        self._executor = (
            ThreadPoolExecutor(workers, thread_name_prefix="slipway-sync") if workers > 1 else None
        )
        self._slots = threading.BoundedSemaphore(max(1, workers) * 4)
        self._futures: list[Future[None]] = []
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def submit(self, job: Callable[..., None], *args: Any) -> None:
        if self.error is not None:
            return
        if self._executor is None:
            self._run(job, args)
            if self.error is not None:
                raise self.error
            return
        self._slots.acquire()
        try:
            self._futures.append(self._executor.submit(self._run_released, job, args))
        except BaseException:
            self._slots.release()
            raise

    def _run_released(self, job: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            self._run(job, args)
        finally:
            self._slots.release()

    def _run(self, job: Callable[..., None], args: tuple[Any, ...]) -> None:
        if self.error is not None:
            return
        try:
            job(*args)
        except BaseException as exc:
            with self._lock:
                if self.error is None:
                    self.error = exc

    def join(self) -> None:
        """Wait for every job; raise the first failure."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self.error is not None:
            raise self.error

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def each(self, job: Callable[..., None], items: list[tuple[Any, ...]], *, batch: int = BATCH) -> None:
        """``job(*item)`` for every item, ``batch`` items to a task (a task per file costs more than the file)."""
        for start in range(0, len(items), batch):
            self.submit(_run_each, job, items[start : start + batch])


def _run_each(job: Callable[..., None], items: list[tuple[Any, ...]]) -> None:
    for item in items:
        job(*item)


def pool_for(count: int, workers: int) -> Pool:
    return Pool(workers if count >= PARALLEL_MIN else 1)


# ---------------------------------------------------------------------------------- plan


@dataclass
class Write:
    folder: tuple[str, ...]  # the target's folder, as named in the workspace where it exists
    name: str
    entry: TreeEntry
    replaces: bool  # something is at the target already (counts as changed, not added)
    stage: tuple[str, ...] = ()  # folder holding the temp (the target's, unless a file blocks it)
    temp: str = ""

    @property
    def path(self) -> str:
        return self.entry.path


@dataclass
class Move:
    """A rename: an exact git rename, or (full reconcile) a name whose letter case differs."""

    src_folder: tuple[str, ...]
    src_name: str
    dst_folder: tuple[str, ...]
    dst_name: str
    entry: TreeEntry | None = None  # the content, for an exact rename whose source is missing


@dataclass
class Delete:
    folder: tuple[str, ...]
    name: str
    kind: str  # "file", "link", "folder" or "temp"
    path: str
    counted: bool = True  # counts as a deleted file (not a temp, not the old name of an overwritten file)


@dataclass
class Plan:
    mode: str
    writes: list[Write] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    case_fixes: list[Move] = field(default_factory=list)  # applied last, deepest first
    prune: set[tuple[str, ...]] = field(default_factory=set)  # removed at the end if empty
    keep: set[tuple[str, ...]] = field(default_factory=set)  # folders the tree needs
    unchanged: int = 0
    warnings: Warnings = field(default_factory=Warnings)
    deleted_paths: list[str] = field(default_factory=list)  # preview: every file a full sync removes

    @property
    def empty(self) -> bool:
        return not (self.writes or self.moves or self.deletes or self.case_fixes or self.prune)


_FOLDER = object()  # marks a folder among a tree folder's children


def blob_id(size: int, chunks: Iterator[bytes], *, long: bool) -> str:
    digest = hashlib.sha256() if long else hashlib.sha1(usedforsecurity=False)
    digest.update(b"blob %d\0" % size)
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


class FullPlanner:
    """Compare the workspace with the tree by content (git blob ids), names matched ignoring case."""

    def __init__(
        self,
        fs: FS,
        dirs: Dirs,
        entries: list[TreeEntry],
        protected: set[tuple[str, ...]],
        *,
        workers: int,
        listing: bool,
    ) -> None:
        self._fs = fs
        self._dirs = dirs
        self._children: dict[tuple[str, ...], dict[str, object]] = {(): {}}
        for entry in entries:
            for depth in range(1, len(entry.parts)):
                folder = entry.parts[:depth]
                if folder not in self._children:
                    self._children[folder] = {}
                    self._children[folder[:-1]][folder[-1]] = _FOLDER
            self._children[entry.parts[:-1]][entry.parts[-1]] = entry
        self._protected = protected
        self._protected_folders = {p[:d] for p in protected for d in range(1, len(p))}
        self._workers = workers
        self._listing = listing
        self.plan = Plan("full", keep=set(self._children) - {()})
        self._hashes: list[tuple[tuple[str, ...], str, TreeEntry, Future[str] | str]] = []
        self._lock = threading.Lock()

    def run(self) -> Plan:
        with ThreadPoolExecutor(self._workers, thread_name_prefix="slipway-hash") as pool:
            self._scan((), (), pool)
            for folder, name, entry, pending in self._hashes:
                digest = pending if isinstance(pending, str) else pending.result()
                self._compared(folder, name, entry, same=digest == entry.oid)
        return self.plan

    def _scan(self, actual: tuple[str, ...], tree: tuple[str, ...], pool: ThreadPoolExecutor) -> None:
        """Plan the folder ``actual`` (its tree path is ``tree``; ``tree`` need not be a tree folder)."""
        plan = self.plan
        wanted = self._children.get(tree, {})
        fd = self._dirs.acquire(actual)
        try:
            listing = [e for e in self._fs.scandir(fd)]
        except BaseException:
            self._dirs.release(actual)
            raise
        # Names as the tree spells them: exact matches first, then matches ignoring case.
        matched: dict[str, str] = {}
        claimed: set[str] = set()
        for item in listing:
            if item.name in wanted:
                matched[item.name] = item.name
                claimed.add(item.name)
        folded = {name.casefold(): name for name in wanted}
        for item in listing:
            if item.name not in matched and not item.name.startswith(TEMP_PREFIX):
                other = folded.get(item.name.casefold())
                if other is not None and other not in claimed:
                    matched[item.name] = other
                    claimed.add(other)
        subfolders: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        hashing: list[tuple[str, TreeEntry]] = []
        for item in listing:
            name = item.name
            if name == UNFINISHED and not actual:
                continue  # the apply's own marker, removed when it finishes
            if name.startswith(TEMP_PREFIX):
                plan.deletes.append(
                    Delete(actual, name, "folder" if _is_dir(item) else "temp", "", counted=False)
                )
                continue
            is_dir = _is_dir(item)
            tree_name = matched.get(name)
            if tree_name is not None:
                target = wanted[tree_name]
                if isinstance(target, TreeEntry):
                    if item.is_file(follow_symlinks=False):
                        info = self._fs.entry_stat(item)
                        size = info.st_size
                        # The exec bit is part of what git tracks: a mode that drifted is
                        # rewritten (staged with the tree's mode) like content that did.
                        mode_drifted = bool(info.st_mode & stat.S_IXUSR) != target.executable
                        if mode_drifted or (target.size >= 0 and size != target.size):
                            self._compared(actual, name, target, same=False)
                        else:
                            hashing.append((name, target))
                    else:
                        self._delete(actual, name, item, (*tree, tree_name))
                        plan.writes.append(Write(actual, tree_name, target, replaces=True))
                elif is_dir:
                    if name != tree_name:
                        plan.case_fixes.append(Move(actual, name, actual, tree_name))
                    subfolders.append(((*actual, name), (*tree, tree_name)))
                else:
                    self._delete(actual, name, item, (*tree, tree_name))
                    self._add_folder((*actual, tree_name), (*tree, tree_name))
                continue
            path = (*tree, name)
            if path in self._protected:
                continue  # a skipped entry (link, submodule, refused name): left as it is
            if is_dir and path in self._protected_folders:
                subfolders.append(((*actual, name), path))
                continue
            self._delete(actual, name, item, path)
        for tree_name, target in wanted.items():
            if tree_name in claimed:
                continue
            if isinstance(target, TreeEntry):
                plan.writes.append(Write(actual, tree_name, target, replaces=False))
            else:
                self._add_folder((*actual, tree_name), (*tree, tree_name))
        if tree and tree not in self._children:
            plan.prune.add(actual)  # holds only skipped entries: kept while they are there
        # Hash this folder's candidates while its descriptor is open (the pool holds it).
        for name, target in hashing:
            self._dirs.acquire(actual)
            future = pool.submit(self._hash, fd, actual, name, target)
            self._hashes.append((actual, name, target, future))
        self._dirs.release(actual)
        for sub_actual, sub_tree in subfolders:
            self._scan(sub_actual, sub_tree, pool)

    def _hash(self, dir_fd: int, actual: tuple[str, ...], name: str, target: TreeEntry) -> str:
        try:
            fd = self._fs.open(name, _READ_FLAGS, dir_fd=dir_fd)
            try:
                size = self._fs.fstat(fd).st_size

                def chunks() -> Iterator[bytes]:
                    while chunk := self._fs.read(fd, CHUNK):
                        yield chunk

                return blob_id(size, chunks(), long=len(target.oid) == 64)
            finally:
                self._fs.close(fd)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return ""  # gone or replaced meanwhile: write it
        finally:
            self._dirs.release(actual)

    def _compared(self, folder: tuple[str, ...], name: str, target: TreeEntry, *, same: bool) -> None:
        tree_name = target.parts[-1]
        if same:
            self.plan.unchanged += 1
            if name != tree_name:
                self.plan.case_fixes.append(Move(folder, name, folder, tree_name))
            return
        if name != tree_name:
            # Same name but for case, other content: the old name goes first, then the new file.
            self.plan.deletes.append(Delete(folder, name, "file", target.path, counted=False))
        self.plan.writes.append(Write(folder, tree_name, target, replaces=True))

    def _add_folder(self, actual: tuple[str, ...], tree: tuple[str, ...]) -> None:
        for tree_name, target in self._children.get(tree, {}).items():
            if isinstance(target, TreeEntry):
                self.plan.writes.append(Write(actual, tree_name, target, replaces=False))
            else:
                self._add_folder((*actual, tree_name), (*tree, tree_name))

    def _delete(
        self, folder: tuple[str, ...], name: str, item: os.DirEntry[str], path: tuple[str, ...]
    ) -> None:
        shown = "/".join(path)
        if _is_dir(item):
            self.plan.deletes.append(Delete(folder, name, "folder", shown))
            if self._listing:
                self._list_files((*folder, name), path)
        else:
            kind = "file" if item.is_file(follow_symlinks=False) else "link"
            self.plan.deletes.append(Delete(folder, name, kind, shown))
            if self._listing:
                self.plan.deleted_paths.append(shown)

    def _list_files(self, actual: tuple[str, ...], path: tuple[str, ...]) -> None:
        """Preview: every file below a folder that would be removed."""
        with self._dirs.hold(actual) as fd:
            listing = self._fs.scandir(fd)
        for item in listing:
            if item.name.startswith(TEMP_PREFIX):
                continue
            if _is_dir(item):
                self._list_files((*actual, item.name), (*path, item.name))
            else:
                self.plan.deleted_paths.append("/".join((*path, item.name)))


def _is_dir(item: os.DirEntry[str]) -> bool:
    return item.is_dir(follow_symlinks=False)


# ---------------------------------------------------------------------------------- apply


@dataclass
class Outcome:
    added: int = 0
    changed: int = 0
    deleted: int = 0
    renamed: int = 0
    bytes_written: int = 0


class Applier:
    """Runs a plan against the workspace in two phases."""

    def __init__(self, fs: FS, dirs: Dirs, git: Git, *, workers: int) -> None:
        self._fs = fs
        self._dirs = dirs
        self._git = git
        self._workers = workers
        self._temps: list[tuple[tuple[str, ...], str]] = []
        self._lock = threading.Lock()
        self.outcome = Outcome()

    # ---------------------------------------------------------------- phase 1

    def stage(self, plan: Plan) -> None:
        """Write every new content to a temp next to its target; undo everything on failure.

        The writes, sorted by folder, are cut into contiguous slices, one per stager thread;
        each stager reads its blobs from its own ``git cat-file --batch`` and writes them
        itself (on a share every call waits on the network, so stagers overlap those waits;
        on a local disk they spread git's decompression over the cores).
        """
        self._check_moves(plan)
        writes = sorted(plan.writes, key=lambda w: (w.folder, w.name))
        fsync_each = len(writes) <= FSYNC_EACH_LIMIT
        run = uuid.uuid4().hex  # temp names: this run's id and the write's number
        for number, write in enumerate(writes):
            write.temp = f"{TEMP_PREFIX}{run}-{number}"
        stagers = max(1, min(self._workers, len(writes) // PARALLEL_MIN))
        size = -(-len(writes) // stagers) if writes else 0
        slices = [writes[start : start + size] for start in range(0, len(writes), size)] if writes else []
        try:
            with Pool(len(slices)) as pool:
                for part in slices:
                    pool.submit(self._stage_slice, part, fsync_each, pool)
                pool.join()
            if writes and not fsync_each:
                self._fs.syncfs(self._dirs.root_fd)
        except BaseException as exc:
            clean = self._undo_stage()
            if not isinstance(exc, Exception):
                raise  # Ctrl-C and exits stay what they are (the temps are gone all the same)
            raise StageFailed(clean, _describe(exc, "could not write the new files")) from exc

    def _stage_slice(self, writes: list[Write], fsync_each: bool, pool: Pool) -> None:
        with BlobStream(self._git, [w.entry.oid for w in writes]) as blobs:
            for write in writes:
                if pool.error is not None:
                    return  # another stager failed: stop early
                size = blobs.open(write.entry.oid)
                dir_fd = self._stage_folder(write)
                try:
                    fd = self._create_temp(write, dir_fd)
                    try:
                        # Small blobs come in one piece; large ones are streamed piece by piece.
                        while chunk := blobs.read():
                            self._fs.write_all(fd, chunk)
                        if fsync_each:
                            self._fs.fsync(fd)
                    finally:
                        self._fs.close(fd)
                finally:
                    self._dirs.release(write.stage)
                with self._lock:
                    self.outcome.bytes_written += size

    def _check_moves(self, plan: Plan) -> None:
        """Exact renames whose source is gone (drift) become plain writes."""
        kept: list[Move] = []
        for move in plan.moves:
            try:
                with self._dirs.hold(move.src_folder) as fd:
                    info = self._fs.lstat(move.src_name, dir_fd=fd)
                present = stat.S_ISREG(info.st_mode)
            except (FileNotFoundError, NotADirectoryError, Blocked):
                present = False
            if present:
                kept.append(move)
            elif move.entry is not None:
                plan.writes.append(Write(move.dst_folder, move.dst_name, move.entry, replaces=False))
        plan.moves = kept

    def _stage_folder(self, write: Write) -> int:
        """Hold the target's folder (made if missing), or the deepest real folder above a blocking file."""
        try:
            fd = self._dirs.acquire(write.folder, create=True)
            write.stage = write.folder
        except Blocked as blocked:
            write.stage = blocked.parts[:-1]
            fd = self._dirs.acquire(write.stage, create=True)
        return fd

    def _create_temp(self, write: Write, dir_fd: int) -> int:
        mode = 0o755 if write.entry.executable else 0o644
        try:
            fd = self._fs.open(write.temp, _CREATE_FLAGS, mode, dir_fd=dir_fd)
        except FileExistsError:
            # A retried create whose first try went through: the unique name is ours.
            fd = self._fs.open(
                write.temp, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
            )
        with self._lock:
            self._temps.append((write.stage, write.temp))
        return fd

    def _undo_stage(self) -> bool:
        """Remove the temps and the folders phase 1 made; True if nothing is left behind."""
        clean = True
        for folder, temp in self._temps:
            try:
                with self._dirs.hold(folder) as fd:
                    self._fs.unlink(temp, dir_fd=fd)
            except FileNotFoundError:
                pass
            except (OSError, Blocked):
                clean = False
        for folder in reversed(self._dirs.created):
            self._dirs.forget(folder)
            try:
                with self._dirs.hold(folder[:-1]) as fd:
                    self._fs.rmdir(folder[-1], dir_fd=fd)
            except FileNotFoundError:
                pass
            except (OSError, Blocked):
                clean = False
        return clean

    # ---------------------------------------------------------------- phase 2

    def commit(self, plan: Plan) -> None:
        touched: set[tuple[str, ...]] = set()
        try:
            self._delete_all(plan, touched)
            for move in plan.moves:
                with (
                    self._dirs.hold(move.src_folder) as src,
                    self._dirs.hold(move.dst_folder, create=True) as dst,
                ):
                    self._fs.rename(move.src_name, move.dst_name, src_dir_fd=src, dst_dir_fd=dst)
                touched.update((move.src_folder, move.dst_folder))
                plan.prune.update(move.src_folder[:d] for d in range(1, len(move.src_folder) + 1))
                self.outcome.renamed += 1
            with pool_for(len(plan.writes), self._workers) as pool:
                pool.each(self._put, [(write,) for write in plan.writes])
                pool.join()
            touched.update(w.folder for w in plan.writes)
            touched.update(w.stage for w in plan.writes)
            self._prune(plan, touched)
            live = sorted(touched)
            if len(live) > FSYNC_EACH_LIMIT:
                self._fs.syncfs(self._dirs.root_fd)  # one call instead of an fsync per folder
            else:
                for folder in live:
                    self._fsync_folder(folder)
            self._fix_case(plan)
        except Exception as exc:
            raise SyncError(_describe(exc, "the sync stopped half-way; the next sync completes it")) from exc

    def _delete_all(self, plan: Plan, touched: set[tuple[str, ...]]) -> None:
        files = [d for d in plan.deletes if d.kind != "folder"]
        with pool_for(len(files), self._workers) as pool:
            pool.each(self._delete_file, [(delete,) for delete in files])
            pool.join()
        for delete in plan.deletes:
            if delete.kind == "folder":
                target = (*delete.folder, delete.name)
                self._dirs.forget(target)
                try:
                    with self._dirs.hold(delete.folder) as fd:
                        self._remove_tree(fd, delete.name, counted=delete.counted)
                except (FileNotFoundError, Blocked):
                    continue
        for delete in plan.deletes:
            touched.add(delete.folder)
            plan.prune.update(delete.folder[:d] for d in range(1, len(delete.folder) + 1))

    def _delete_file(self, delete: Delete) -> None:
        try:
            with self._dirs.hold(delete.folder) as fd:
                try:
                    self._fs.unlink(delete.name, dir_fd=fd)
                except (IsADirectoryError, PermissionError):
                    # Linux answers EISDIR or EPERM for unlink() of a folder: one stands there
                    # now (someone's edit), which the full reconcile handles. Anything else
                    # (a read-only file on SMB) is an error.
                    if not stat.S_ISDIR(self._fs.lstat(delete.name, dir_fd=fd).st_mode):
                        raise
                    return
        except (FileNotFoundError, Blocked):
            return
        if delete.kind == "file" and delete.counted:
            with self._lock:
                self.outcome.deleted += 1

    def _remove_tree(self, parent_fd: int, name: str, *, counted: bool) -> None:
        """Remove a folder and everything in it, links included (never followed)."""
        try:
            fd = self._fs.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                self._fs.unlink(name, dir_fd=parent_fd)
                return
            raise
        try:
            for item in self._fs.scandir(fd):
                if _is_dir(item):
                    self._remove_tree(fd, item.name, counted=counted)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        self._fs.unlink(item.name, dir_fd=fd)
                        if counted and item.is_file(follow_symlinks=False):
                            with self._lock:
                                self.outcome.deleted += 1
        finally:
            self._fs.close(fd)
        with contextlib.suppress(FileNotFoundError):
            self._fs.rmdir(name, dir_fd=parent_fd)

    def _put(self, write: Write) -> None:
        """Rename a temp over its target (making its folder first if a file blocked it)."""
        with self._dirs.hold(write.stage) as src, self._dirs.hold(write.folder, create=True) as dst:
            try:
                self._fs.rename(write.temp, write.name, src_dir_fd=src, dst_dir_fd=dst)
            except OSError as exc:
                # A folder stands where the file goes (a type change, or someone's edit).
                if exc.errno not in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                    raise
                self._dirs.forget((*write.folder, write.name))
                self._remove_tree(dst, write.name, counted=False)
                self._fs.rename(write.temp, write.name, src_dir_fd=src, dst_dir_fd=dst)
        with self._lock:
            if write.replaces:
                self.outcome.changed += 1
            else:
                self.outcome.added += 1

    def _prune(self, plan: Plan, touched: set[tuple[str, ...]]) -> None:
        """Remove folders left empty, deepest first; a folder that is not empty stays."""
        candidates = sorted((p for p in plan.prune if p and p not in plan.keep), key=len, reverse=True)
        seen = set(candidates)
        index = 0
        while index < len(candidates):
            folder = candidates[index]
            index += 1
            self._dirs.forget(folder)
            try:
                with self._dirs.hold(folder[:-1]) as fd:
                    self._fs.rmdir(folder[-1], dir_fd=fd)
            except (FileNotFoundError, Blocked):
                continue
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                    continue
                raise
            touched.discard(folder)
            touched.add(folder[:-1])
            parent = folder[:-1]
            if parent and parent not in plan.keep and parent not in seen:
                seen.add(parent)
                candidates.append(parent)

    def _fsync_folder(self, folder: tuple[str, ...]) -> None:
        try:
            with self._dirs.hold(folder) as fd:
                self._fs.fsync_dir(fd)
        except (FileNotFoundError, Blocked):
            pass

    def _fix_case(self, plan: Plan) -> None:
        """Names that differ from the tree's only in case, renamed last and deepest first."""
        for move in sorted(plan.case_fixes, key=lambda m: len(m.src_folder), reverse=True):
            self._dirs.forget((*move.src_folder, move.src_name))
            with self._dirs.hold(move.src_folder) as fd:
                self._fs.rename(move.src_name, move.dst_name, src_dir_fd=fd, dst_dir_fd=fd)
                self._fs.fsync_dir(fd)


class StageFailed(SyncError):
    """Phase 1 failed; ``clean`` says whether the workspace is exactly as it was."""

    def __init__(self, clean: bool, message: str) -> None:
        super().__init__(message)
        self.clean = clean


def _describe(exc: BaseException, context: str) -> str:
    if isinstance(exc, SyncError):
        return str(exc)
    if isinstance(exc, Blocked):
        return f"{context}: {exc.parts and '/'.join(exc.parts)} is a file or link where a folder is needed"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{context}: {exc.strerror or exc}{where}"
    return f"{context}: {type(exc).__name__}"


def filesystem_type(path: Path) -> str:
    """The file system type under ``path`` (``cifs`` for an Azure Files share), from /proc/mounts."""
    try:
        mounts = Path("/proc/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return "unknown"
    resolved = os.path.realpath(path)
    best, kind = "", "unknown"
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (resolved == point or resolved.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best, kind = point, fields[2]
    return kind


def workers_for(path: Path) -> int:
    kind = filesystem_type(path)
    if kind == "unknown" or kind.startswith(_NETWORK_FS):
        return NETWORK_WORKERS
    return LOCAL_WORKERS


def is_unfinished(fs: FS, root_fd: int) -> bool:
    try:
        fs.lstat(UNFINISHED, dir_fd=root_fd)
    except FileNotFoundError:
        return False
    return True


def mark_unfinished(fs: FS, root_fd: int) -> None:
    with contextlib.suppress(FileExistsError):
        fs.mkdir(UNFINISHED, dir_fd=root_fd)
    fs.fsync_dir(root_fd)


def clear_unfinished(fs: FS, root_fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        fs.rmdir(UNFINISHED, dir_fd=root_fd)


def open_root(fs: FS, workspace: Path) -> int:
    try:
        # The root itself may be a mount point or a link (/workspace); it is trusted.
        return fs.open(str(workspace), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=None)
    except OSError as exc:
        raise SyncError(f"the workspace folder {workspace} cannot be opened: {exc.strerror}") from None
