"""The workspace folder: tree, read, atomic write, delete, move and make folder.

Every operation walks from the root one name at a time with ``O_NOFOLLOW`` and directory file
descriptors, so a symbolic link (or one swapped in during the operation) can never lead
outside the root. Writes go to a temp file in the target folder, are flushed and fsynced,
then renamed over the target: a reader sees the old bytes or the new, never a torn file, and a
crash leaves one of the two. Mutations are serialized within the process so that the ETag
check and the replace happen as one step.

Azure Files over SMB is case-insensitive: a name that differs from an existing sibling only
in case is refused here on every file system, so the workspace behaves the same locally.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import functools
import hashlib
import os
import shutil
import stat
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from slipway.workspace.errors import (
    AlreadyExists,
    EtagMismatch,
    FileTooLarge,
    FolderNotEmpty,
    NameConflict,
    NotAFile,
    NotFound,
    PathRejected,
    PreconditionRequired,
    WorkspaceUnavailable,
)
from slipway.workspace.paths import TEMP_PREFIX, join

_CHUNK = 1024 * 1024
# A write holds its temp file for seconds at most; one this old belongs to a dead writer.
STALE_TEMP_SECONDS = 3600
_TEXT_SNIFF = 64 * 1024
_ETAG_CACHE_SIZE = 200_000
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
# Transient errors on network file systems (Azure Files answers DeletePending as EBUSY).
_TRANSIENT = {errno.EINTR, errno.EAGAIN, errno.EBUSY}


@dataclass(frozen=True)
class Entry:
    """A file, folder or symbolic link in the workspace, as the tree and the API show it."""

    path: str
    type: str  # "file", "folder" or "symlink"
    mtime: datetime
    size: int | None = None
    etag: str | None = None
    text: bool | None = None

    def to_json(self) -> dict[str, object]:
        """The API shape; built once per entry, since the tree serves the same entries often."""
        return self._json

    @functools.cached_property
    def _json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "path": self.path,
            "type": self.type,
            "mtime": self.mtime.isoformat().replace("+00:00", "Z"),
        }
        if self.type == "file":
            body.update(size=self.size, etag=self.etag, text=self.text)
        return body


@dataclass(frozen=True)
class FileContent:
    entry: Entry
    data: bytes


@dataclass(frozen=True)
class WriteResult:
    entry: Entry
    created: bool
    old_etag: str | None


def make_etag(digest: bytes) -> str:
    return f'"{digest.hex()}"'


def looks_like_text(head: bytes, *, complete: bool) -> bool:
    """UTF-8 without NUL bytes; ``complete`` says whether ``head`` is the whole file."""
    if b"\x00" in head:
        return False
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(head, final=complete)
    except UnicodeDecodeError:
        return False
    return True


def _mtime(info: os.stat_result) -> datetime:
    return datetime.fromtimestamp(info.st_mtime, UTC).replace(microsecond=0)


def _retry(operation, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Run a file-system call, retrying briefly on errors a network share recovers from."""
    for attempt in range(5):
        try:
            return operation(*args, **kwargs)
        except OSError as exc:
            if exc.errno not in _TRANSIENT or attempt == 4:
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


class _Dir:
    """An open directory file descriptor, closed on exit."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


class WorkspaceStore:
    """The files under ``root``; all paths are tuples of validated names (see paths.py)."""

    def __init__(self, root: Path, *, max_file_bytes: int) -> None:
        self.root = root
        self.max_file_bytes = max_file_bytes
        self._lock = threading.RLock()
        self._etags: OrderedDict[tuple[int, ...], tuple[str, bool]] = OrderedDict()
        # The tree's file entries by path and version: an unchanged file costs one stat.
        self._entries: dict[tuple[str, tuple[int, ...]], Entry] = {}
        self._etag_lock = threading.Lock()

    # ------------------------------------------------------------------ walking

    def _open_root(self) -> int:
        try:
            # The root itself may be a mount point or a link (e.g. /workspace); it is trusted.
            return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise WorkspaceUnavailable(
                f"the workspace folder {self.root} cannot be opened: {exc.strerror}"
            ) from None

    def _open_dir(self, parts: tuple[str, ...], *, create: bool = False) -> _Dir:
        """Open the folder ``parts`` (the root for ``()``), creating missing ones if asked."""
        fd = self._open_root()
        try:
            for depth, name in enumerate(parts):
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise NotFound(f"folder {join(parts[: depth + 1])} does not exist") from None
                    self._check_case_conflict(fd, name, parts[: depth + 1])
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o755, dir_fd=fd)
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    raise self._walk_error(exc, parts[: depth + 1], self._lstat(fd, name)) from None
                os.close(fd)
                fd = child
            return _Dir(fd)
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _walk_error(exc: OSError, parts: tuple[str, ...], info: os.stat_result | None = None) -> Exception:
        """What an O_NOFOLLOW open failure means (Linux answers ENOTDIR or ELOOP for a link)."""
        where = join(parts)
        if exc.errno == errno.ELOOP or (info is not None and stat.S_ISLNK(info.st_mode)):
            return PathRejected(f"{where} is a symbolic link; links are not followed")
        if exc.errno == errno.ENOTDIR:
            return PathRejected(f"{where} is a file, not a folder")
        return exc

    @staticmethod
    def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    @staticmethod
    def _check_case_conflict(
        dir_fd: int, name: str, parts: tuple[str, ...], *, allow: str | None = None
    ) -> None:
        folded = name.casefold()
        with os.scandir(dir_fd) as entries:
            for entry in entries:
                if entry.name != name and entry.name != allow and entry.name.casefold() == folded:
                    sibling = join((*parts[:-1], entry.name))
                    raise NameConflict(
                        f"{join(parts)} differs only in case from {sibling}; Azure Files treats them as the same name"
                    )

    # ------------------------------------------------------------------ hashing

    def _digest_fd(self, fd: int) -> tuple[str, bool, int]:
        """ETag, text-ness and size of an open file, read from its start."""
        digest = hashlib.sha256()
        head = b""
        size = 0
        os.lseek(fd, 0, os.SEEK_SET)
        while chunk := os.read(fd, _CHUNK):
            if len(head) < _TEXT_SNIFF:
                head += chunk[: _TEXT_SNIFF - len(head)]
            digest.update(chunk)
            size += len(chunk)
        return make_etag(digest.digest()), looks_like_text(head, complete=size <= _TEXT_SNIFF), size

    @staticmethod
    def _cache_key(info: os.stat_result) -> tuple[int, ...]:
        return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)

    def _remember(self, info: os.stat_result, etag: str, text: bool) -> None:
        with self._etag_lock:
            self._etags[self._cache_key(info)] = (etag, text)
            self._etags.move_to_end(self._cache_key(info))
            while len(self._etags) > _ETAG_CACHE_SIZE:
                self._etags.popitem(last=False)

    def _file_entry(self, dir_fd: int, name: str, path: str, info: os.stat_result) -> Entry:
        """The entry of a file, hashing it only if this version has not been seen before."""
        version = (path, self._cache_key(info))
        known = self._entries.get(version)
        if known is not None:
            return known
        with self._etag_lock:
            cached = self._etags.get(self._cache_key(info))
        if cached is None:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
            try:
                current = os.fstat(fd)
                etag, text, _ = self._digest_fd(fd)
            finally:
                os.close(fd)
            self._remember(current, etag, text)
            info = current
        else:
            etag, text = cached
        entry = Entry(path, "file", _mtime(info), size=info.st_size, etag=etag, text=text)
        if len(self._entries) >= _ETAG_CACHE_SIZE:
            self._entries.clear()
        self._entries[(path, self._cache_key(info))] = entry
        return entry

    # ------------------------------------------------------------------ reading

    def tree(self) -> list[Entry]:
        """Every folder, file and link below the root, sorted by path."""
        entries: list[Entry] = []
        with self._open_dir(()) as root:
            self._walk(root, "", entries)
        entries.sort(key=lambda e: e.path)
        return entries

    def _walk(self, dir_fd: int, prefix: str, out: list[Entry]) -> None:
        with os.scandir(dir_fd) as listing:
            children = list(listing)
        for child in children:
            name = child.name
            if name.startswith(TEMP_PREFIX):
                self._sweep_temp(dir_fd, child)
                continue
            path = prefix + name
            try:
                info = child.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode):
                    out.append(self._file_entry(dir_fd, name, path, info))
                elif stat.S_ISDIR(info.st_mode):
                    out.append(self._plain_entry(path, "folder", info))
                    sub = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                    try:
                        self._walk(sub, path + "/", out)
                    finally:
                        os.close(sub)
                elif stat.S_ISLNK(info.st_mode):
                    out.append(self._plain_entry(path, "symlink", info))
            except FileNotFoundError:
                continue  # removed while listing

    @staticmethod
    def _sweep_temp(dir_fd: int, child: os.DirEntry[str]) -> None:
        """Remove a temp file a killed writer left behind, once no live writer can own it."""
        try:
            if time.time() - child.stat(follow_symlinks=False).st_mtime > STALE_TEMP_SECONDS:
                os.unlink(child.name, dir_fd=dir_fd)
        except OSError:
            pass  # gone already, or busy: the next listing tries again

    def _plain_entry(self, path: str, kind: str, info: os.stat_result) -> Entry:
        version = (path, (info.st_mode, info.st_mtime_ns))
        known = self._entries.get(version)
        if known is None:
            known = self._entries[version] = Entry(path, kind, _mtime(info))
        return known

    def files(self) -> Iterator[tuple[Entry, int]]:
        """Each folder and regular file with an open descriptor (files only; closed after use).

        Used by the archive: yields ``(entry, fd)`` with ``fd`` -1 for folders.
        """
        with self._open_dir(()) as root:
            yield from self._iter_files(root, ())

    def _iter_files(self, dir_fd: int, parts: tuple[str, ...]) -> Iterator[tuple[Entry, int]]:
        with os.scandir(dir_fd) as listing:
            children = sorted(listing, key=lambda e: e.name)
        for child in children:
            if child.name.startswith(TEMP_PREFIX):
                continue
            try:
                info = child.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    sub = os.open(child.name, _DIR_FLAGS, dir_fd=dir_fd)
                    try:
                        yield Entry(join((*parts, child.name)), "folder", _mtime(info)), -1
                        yield from self._iter_files(sub, (*parts, child.name))
                    finally:
                        os.close(sub)
                elif stat.S_ISREG(info.st_mode):
                    fd = os.open(child.name, _FILE_FLAGS, dir_fd=dir_fd)
                    try:
                        current = os.fstat(fd)
                        yield (
                            Entry(join((*parts, child.name)), "file", _mtime(current), size=current.st_size),
                            fd,
                        )
                    finally:
                        os.close(fd)
            except FileNotFoundError:
                continue

    def read_file(self, parts: tuple[str, ...]) -> FileContent:
        with self._open_dir(parts[:-1]) as parent:
            try:
                fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                raise NotFound(f"{join(parts)} does not exist") from None
            except OSError as exc:
                raise self._walk_error(exc, parts) from None
            try:
                info = os.fstat(fd)
                if stat.S_ISDIR(info.st_mode):
                    raise NotAFile(f"{join(parts)} is a folder")
                if not stat.S_ISREG(info.st_mode):
                    raise NotAFile(f"{join(parts)} is not a regular file")
                # Writers replace files by rename, so this descriptor keeps one consistent version.
                chunks = []
                while chunk := os.read(fd, _CHUNK):
                    chunks.append(chunk)
                data = b"".join(chunks)
            finally:
                os.close(fd)
        digest = make_etag(hashlib.sha256(data).digest())
        text = looks_like_text(data[:_TEXT_SNIFF], complete=len(data) <= _TEXT_SNIFF)
        self._remember(info, digest, text)
        return FileContent(
            Entry(join(parts), "file", _mtime(info), size=len(data), etag=digest, text=text), data
        )

    def _current_etag(self, parent: int, name: str) -> str:
        fd = os.open(name, _FILE_FLAGS, dir_fd=parent)
        try:
            return self._digest_fd(fd)[0]
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ writing

    def write_file(
        self, parts: tuple[str, ...], data: bytes, *, if_match: str | None, if_none_match: str | None
    ) -> WriteResult:
        """Create (``If-None-Match: *``) or update (``If-Match: <etag>`` or ``*``) a file."""
        path = join(parts)
        if len(data) > self.max_file_bytes:
            raise FileTooLarge(f"{path} is {len(data)} bytes; the limit is {self.max_file_bytes} bytes")
        if if_none_match is None and if_match is None:
            raise PreconditionRequired(
                f"send If-None-Match: * to create {path}, or If-Match: <etag> to update it"
            )
        if if_none_match is not None and if_none_match.strip() != "*":
            raise PreconditionRequired("If-None-Match only supports * (create if absent)")
        with self._lock, self._open_dir(parts[:-1], create=if_none_match is not None) as parent:
            name = parts[-1]
            existing = self._lstat(parent, name)
            if existing is not None and stat.S_ISLNK(existing.st_mode):
                raise PathRejected(f"{path} is a symbolic link; links are not followed")
            if existing is not None and stat.S_ISDIR(existing.st_mode):
                raise AlreadyExists(f"{path} is a folder")
            old_etag: str | None = None
            if if_none_match is not None:
                if existing is not None:
                    raise AlreadyExists(f"{path} already exists")
                self._check_case_conflict(parent, name, parts)
            else:
                if existing is None:
                    raise EtagMismatch(f"{path} no longer exists; someone deleted or moved it")
                old_etag = self._current_etag(parent, name)
                if if_match is not None and if_match.strip() != "*" and if_match.strip() != old_etag:
                    raise EtagMismatch(f"{path} was changed by someone else since you opened it")
            mode = stat.S_IMODE(existing.st_mode) if existing is not None else 0o644
            info = self._replace(parent, name, data, mode)
        etag = make_etag(hashlib.sha256(data).digest())
        text = looks_like_text(data[:_TEXT_SNIFF], complete=len(data) <= _TEXT_SNIFF)
        self._remember(info, etag, text)
        entry = Entry(path, "file", _mtime(info), size=len(data), etag=etag, text=text)
        return WriteResult(entry, created=existing is None, old_etag=old_etag)

    def _replace(self, parent: int, name: str, data: bytes, mode: int) -> os.stat_result:
        temp = f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        fd = os.open(
            temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=parent
        )
        try:
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view[:_CHUNK])
                    view = view[written:]
                os.fsync(fd)
                info = os.fstat(fd)
            finally:
                os.close(fd)
            _retry(os.replace, temp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=parent)
            raise
        _fsync_dir(parent)
        return info

    def make_folder(self, parts: tuple[str, ...]) -> Entry:
        with self._lock, self._open_dir(parts[:-1], create=True) as parent:
            if self._lstat(parent, parts[-1]) is not None:
                raise AlreadyExists(f"{join(parts)} already exists")
            self._check_case_conflict(parent, parts[-1], parts)
            os.mkdir(parts[-1], 0o755, dir_fd=parent)
            info = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            _fsync_dir(parent)
        return Entry(join(parts), "folder", _mtime(info))

    def delete(self, parts: tuple[str, ...], *, recursive: bool, if_match: str | None = None) -> Entry:
        path = join(parts)
        with self._lock, self._open_dir(parts[:-1]) as parent:
            name = parts[-1]
            info = self._lstat(parent, name)
            if info is None:
                raise NotFound(f"{path} does not exist")
            if stat.S_ISDIR(info.st_mode):
                if recursive:
                    _retry(shutil.rmtree, name, dir_fd=parent)
                else:
                    try:
                        _retry(os.rmdir, name, dir_fd=parent)
                    except OSError as exc:
                        if exc.errno == errno.ENOTEMPTY:
                            raise FolderNotEmpty(
                                f"{path} is not empty; delete it with recursive=true"
                            ) from None
                        raise
                entry = Entry(path, "folder", _mtime(info))
            else:
                etag = None
                if stat.S_ISREG(info.st_mode):
                    etag = self._current_etag(parent, name)
                    if if_match is not None and if_match.strip() not in ("*", etag):
                        raise EtagMismatch(f"{path} was changed by someone else since you opened it")
                _retry(os.unlink, name, dir_fd=parent)
                kind = "file" if stat.S_ISREG(info.st_mode) else "symlink"
                entry = Entry(path, kind, _mtime(info), size=info.st_size, etag=etag)
            _fsync_dir(parent)
        return entry

    def move(self, source: tuple[str, ...], target: tuple[str, ...]) -> Entry:
        """Rename or move a file or folder; never replaces an existing entry."""
        if target[: len(source)] == source and len(target) > len(source):
            raise PathRejected(f"cannot move {join(source)} into itself")
        if source == target:
            raise AlreadyExists(f"{join(target)} is where {join(source)} already is")
        case_only = (
            len(source) == len(target)
            and source[:-1] == target[:-1]
            and (source[-1].casefold() == target[-1].casefold())
        )
        with self._lock, self._open_dir(source[:-1]) as src_parent:
            info = self._lstat(src_parent, source[-1])
            if info is None:
                raise NotFound(f"{join(source)} does not exist")
            if stat.S_ISLNK(info.st_mode):
                raise PathRejected(f"{join(source)} is a symbolic link; links are not moved")
            with self._open_dir(target[:-1], create=True) as dst_parent:
                existing = self._lstat(dst_parent, target[-1])
                # On a case-insensitive share "FOO" -> "foo" finds itself; that is a rename, not a clash.
                if existing is not None and not (case_only and os.path.samestat(existing, info)):
                    raise AlreadyExists(f"{join(target)} already exists; moves never replace")
                self._check_case_conflict(
                    dst_parent, target[-1], target, allow=source[-1] if case_only else None
                )
                _retry(os.rename, source[-1], target[-1], src_dir_fd=src_parent, dst_dir_fd=dst_parent)
                _fsync_dir(dst_parent)
                moved = os.stat(target[-1], dir_fd=dst_parent, follow_symlinks=False)
                if stat.S_ISDIR(moved.st_mode):
                    return Entry(join(target), "folder", _mtime(moved))
                return self._file_entry(dst_parent, target[-1], join(target), moved)


def _fsync_dir(fd: int) -> None:
    """Persist a rename in its folder; some file systems (SMB) cannot fsync folders."""
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
