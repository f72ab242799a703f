"""The folder of built environments on local disk: one virtual environment per lock, built once
(across threads and processes), never writable by the users whose code runs in it.

Layout under the root (``SLIPWAY_ENVIRONMENTS_DIR``)::

    envs/<key>/             a ready environment (0755 folders, 0644/0755 files of the builder)
    envs/<key>/.slipway-ready   written last, before the folder takes its name
    envs/<key>/.last-used   touched by ensure(); sweep() reads its time
    envs/.build-<key>-*     a build under way, or the leftovers of one that was killed
    locks/<key>.lock        the build's file lock (fcntl), held while building or sweeping
    resolutions/            locks by the hash of their inputs
    uv-cache/               uv's cache

An environment is built in its own ``.build-`` folder (uv venv ``--relocatable``) and renamed
into place once complete, so ``envs/<key>`` is never half-built, and a build killed midway
leaves only a ``.build-`` folder, removed by the next build of that key or by sweep().
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import platform
import shutil
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path

from slipway.environments.requirements import Requirement
from slipway.environments.resolution import Lock, Resolver
from slipway.environments.uvcli import UvRunner, find_uv

__all__ = ["EnvironmentBuildError", "Environments"]

READY = ".slipway-ready"
LAST_USED = ".last-used"
LOCK_FILE = "requirements.lock"
_BUILDING = ".build-"
_TOUCH_EVERY_SECONDS = 60.0
_POLL_SECONDS = 0.05


class EnvironmentBuildError(Exception):
    """An environment could not be built (uv failed, or the time ran out); ``message`` ends with
    the tail of uv's output."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class Environments:
    """Environments for workflows under ``root``, for the interpreter ``python`` (by default the
    one running Slipway), installed from ``index_url`` (empty: PyPI) and ``find_links``."""

    def __init__(
        self,
        root: Path,
        *,
        python: str = sys.executable,
        index_url: str = "",
        find_links: str = "",
        uv: Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.python = python
        self._envs = self.root / "envs"
        self._locks = self.root / "locks"
        private = (self._locks, self.root / "uv-cache", self.root / "resolutions")
        for folder, mode in ((self.root, 0o755), (self._envs, 0o755), *((p, 0o700) for p in private)):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(mode)
        self._uv = UvRunner(uv or find_uv(), self.root / "uv-cache", index_url, find_links)
        self._resolver = Resolver(self._uv, python, _identity(python), self.root / "resolutions")
        self._guard = threading.Lock()
        self._building: dict[str, threading.Lock] = {}
        self._touched: dict[str, float] = {}

    # Resolving -----------------------------------------------------------------------------

    @property
    def empty_lock(self) -> Lock:
        """The lock of a workflow that asks for no packages (its environment has none)."""
        return self._resolver.empty

    def resolve(
        self,
        requirements: Sequence[Requirement],
        *,
        timeout: float,
        refresh: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> Lock:
        """Exact versions (with hashes) for ``requirements``; the same inputs are answered from
        the cache unless ``refresh``. Raises :class:`ResolutionError`."""
        return self._resolver.resolve(requirements, timeout=timeout, refresh=refresh, log=log)

    # Building ------------------------------------------------------------------------------

    def path_of(self, lock: Lock) -> Path:
        """Where ``lock``'s environment is (or will be) built."""
        return self._envs / lock.key

    def python_of(self, lock: Lock) -> Path:
        return self.path_of(lock) / "bin" / "python"

    def is_ready(self, lock: Lock) -> bool:
        return (self.path_of(lock) / READY).exists()

    def ensure(self, lock: Lock, *, log: Callable[[str], None], timeout: float) -> Path:
        """The python executable of ``lock``'s environment, built first if it is not ready (uv's
        output goes to ``log``). Raises :class:`EnvironmentBuildError`."""
        if self.is_ready(lock):
            self._touch(lock.key)
            return self.python_of(lock)
        deadline = time.monotonic() + timeout
        with self._guard:
            in_process = self._building.setdefault(lock.key, threading.Lock())
        if not in_process.acquire(timeout=max(timeout, 0.001)):
            raise EnvironmentBuildError(f"timed out after {timeout:g} s waiting for this environment's build")
        try:
            with self._file_lock(lock.key, deadline=deadline, log=log):
                if not self.is_ready(lock):
                    self._build(lock, log=log, deadline=deadline)
        finally:
            in_process.release()
        self._touch(lock.key, force=True)
        return self.python_of(lock)

    def _build(self, lock: Lock, *, log: Callable[[str], None], deadline: float) -> None:
        target = self.path_of(lock)
        for leftover in self._envs.glob(f"{_BUILDING}{lock.key}-*"):
            log(f"[removing the leftovers of an interrupted build: {leftover.name}]")
            shutil.rmtree(leftover, ignore_errors=True)
        if target.exists():
            log("[removing an environment that was never marked ready]")
            _remove(target, self._envs)
        work = self._envs / f"{_BUILDING}{lock.key}-{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        log(f"[building environment {lock.key[:12]}: {len(lock.packages)} packages]")

        def run(args: list[str]) -> None:
            result = self._uv.run(
                args, cwd=self.root, log=lambda _stream, line: log(line), timeout=deadline - time.monotonic()
            )
            if result.stopped is not None or result.exit_code != 0:
                shutil.rmtree(work, ignore_errors=True)
                why = result.stopped or f"uv exited with {result.exit_code}"
                raise EnvironmentBuildError(f"building the environment failed ({why}):\n{result.tail}")

        run(["venv", "--relocatable", "--python", self.python, str(work)])
        (work / LOCK_FILE).write_text(lock.text, encoding="utf-8")
        if lock.packages:
            run(
                [
                    "pip",
                    "install",
                    "--python",
                    str(work / "bin" / "python"),
                    "--no-deps",
                    "--require-hashes",
                    "--no-build",
                    "--compile-bytecode",
                    "-r",
                    str(work / LOCK_FILE),
                ]
            )
        with contextlib.suppress(FileNotFoundError):
            (work / ".lock").unlink()  # uv's own lock of the environment, made 0666
        (work / LAST_USED).touch()
        (work / READY).write_text(" ".join(lock.packages) + "\n", encoding="utf-8")
        _seal(work)
        os.rename(work, target)
        log(f"[environment {lock.key[:12]} ready in {time.monotonic() - started:.1f} s]")

    def _touch(self, key: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._touched.get(key, -_TOUCH_EVERY_SECONDS) < _TOUCH_EVERY_SECONDS:
            return
        self._touched[key] = now
        with contextlib.suppress(OSError):
            os.utime(self._envs / key / LAST_USED)

    @contextlib.contextmanager
    def _file_lock(self, key: str, *, deadline: float, log: Callable[[str], None]) -> Iterator[None]:
        with open(self._locks / f"{key}.lock", "a+b") as handle:
            said = False
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise EnvironmentBuildError(
                            "timed out waiting for another process's build of this environment"
                        ) from None
                    if not said:
                        log("[waiting for another build of this environment]")
                        said = True
                    time.sleep(_POLL_SECONDS)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # Sweeping ------------------------------------------------------------------------------

    def sweep(self, keep: Collection[str], *, idle_seconds: float) -> list[str]:
        """Remove the environments whose key is not in ``keep`` and that no ensure() used for
        ``idle_seconds``, and the leftovers of killed builds; never one being built. Returns
        the keys removed."""
        removed: list[str] = []
        now = time.time()
        for entry in sorted(self._envs.iterdir()):
            name = entry.name
            key = name[len(_BUILDING) :].rsplit("-", 1)[0] if name.startswith(_BUILDING) else name
            if key in keep and not name.startswith(_BUILDING):
                continue
            with open(self._locks / f"{key}.lock", "a+b") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # being built
                try:
                    if not entry.exists():
                        continue
                    if now - _last_used(entry) < idle_seconds:
                        continue
                    _remove(entry, self._envs)
                    if not name.startswith(_BUILDING):
                        self._touched.pop(key, None)
                        removed.append(key)
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        return removed


def _last_used(folder: Path) -> float:
    for name in (LAST_USED, READY):
        with contextlib.suppress(OSError):
            return (folder / name).stat().st_mtime
    return folder.stat().st_mtime


def _remove(folder: Path, envs: Path) -> None:
    """Take ``folder`` out of its name at once, then delete it."""
    trash = envs / f"{_BUILDING}trash-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(folder, trash)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
        return
    shutil.rmtree(trash, ignore_errors=True)


def _seal(folder: Path) -> None:
    """Folders 0755, files 0644 (0755 if executable by their owner); symlinks as they are (os.walk
    lists a symlinked folder without entering it)."""
    for top, _dirs, files in os.walk(folder):
        os.chmod(top, 0o755)  # noqa: S103 - readable and enterable by the step user, writable by none
        for name in files:
            path = os.path.join(top, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                continue
            os.chmod(path, 0o755 if mode & stat.S_IXUSR else 0o644)


def _identity(python: str) -> str:
    """``CPython 3.11.7 at /usr/bin/python3``: what an environment is built for."""
    if python == sys.executable:
        version = f"{platform.python_implementation()} {platform.python_version()}"
    else:
        version = subprocess.run(
            [python, "-c", "import platform as p; print(p.python_implementation(), p.python_version())"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    return f"{version} at {python}"
