"""Which Python a workflow runs in: its declared packages, resolved and built once per instance.

A workflow declares packages with inline script metadata (PEP 723, a ``# /// script`` block with
``dependencies = [...]``) and the workspace may add ``workflows/requirements.txt`` for all of
them. No packages: the platform's interpreter without its site-packages (the standard library
and the SDK only). Packages: ``slipway.environments`` resolves them into a lock and builds an
environment keyed by the lock's hash, on local disk, once; every run records the key and
every step of it runs in that same environment, on any instance (the lock text is kept in
the version store, so another instance builds the same set instead of resolving again).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from slipway.engine.loader import Interpreter, LoadError
from slipway.engine.snapshots import CONTAINER, FOLDER, VersionStore
from slipway.environments.requirements import RequirementsError, requirements_of
from slipway.environments.resolution import Lock, ResolutionError
from slipway.environments.store import Environments

log = logging.getLogger("slipway.engine.interpreters")

SHARED_REQUIREMENTS = f"{FOLDER}/requirements.txt"
# Environments no current workflow uses are removed once idle this long (a run of an older
# version may still need one for a while).
_IDLE_SECONDS = 3600.0
_SWEEP_EVERY_SECONDS = 600.0


class WorkflowInterpreters:
    def __init__(self, environments: Environments, versions: VersionStore, *, timeout: float) -> None:
        self._environments = environments
        self._versions = versions
        self._timeout = timeout
        self._building: dict[str, threading.Thread] = {}
        self._in_use: dict[str, float] = {}
        self._locks: dict[str, Lock] = {}  # kept locks read once: a lock never changes
        self._lock = threading.Lock()
        self._swept = time.monotonic()

    def for_workflow(
        self, name: str, snapshot_dir: Path, *, log: Callable[[str], None] | None, wait: bool
    ) -> Interpreter | LoadError | None:
        workflows = snapshot_dir / FOLDER
        source = (workflows / f"{name}.py").read_bytes()
        shared_path = workflows / "requirements.txt"
        shared = shared_path.read_bytes() if shared_path.is_file() else None
        try:
            requirements = requirements_of(source, f"{FOLDER}/{name}.py", shared, SHARED_REQUIREMENTS)
        except RequirementsError as exc:
            return LoadError(exc.message, exc.file, exc.line)
        if not requirements:
            return Interpreter(Path(sys.executable))
        try:
            lock = self._environments.resolve(requirements, timeout=self._timeout)
        except ResolutionError as exc:
            return LoadError(exc.message, exc.file or f"{FOLDER}/{name}.py", exc.line or 1)
        self._versions.put_if_absent(CONTAINER, f"locks/{lock.key}.txt", lock.text.encode())
        return self._ready(lock, log=log, wait=wait)

    def for_lock(self, key: str, *, log: Callable[[str], None] | None) -> Interpreter | LoadError:
        """The environment a run recorded, built from its kept lock (never resolved again)."""
        lock = self._locks.get(key)
        if lock is None:
            text = self._versions.get(CONTAINER, f"locks/{key}.txt")
            if text is None:
                return LoadError(f"the run's package lock {key[:12]} was not kept", "", 1)
            lock = Lock.of(text.decode())
            with self._lock:
                self._locks[key] = lock
        ready = self._ready(lock, log=log, wait=True)
        assert ready is not None
        return ready

    def _ready(
        self, lock: Lock, *, log: Callable[[str], None] | None, wait: bool
    ) -> Interpreter | LoadError | None:
        with self._lock:
            self._in_use[lock.key] = time.monotonic()
        if self._environments.is_ready(lock):
            self._maybe_sweep()
            return Interpreter(self._environments.python_of(lock), site=True, lock=lock.key)
        if not wait:
            self._build_in_background(lock)
            return None
        say = log or (lambda line: None)
        say(f"● preparing the Python environment: {', '.join(lock.packages) or 'no packages'}")
        began = time.monotonic()
        try:
            python = self._environments.ensure(lock, log=lambda line: say(f"  {line}"), timeout=self._timeout)
        except Exception as exc:  # a build that fails is the workflow's load error
            return LoadError(f"installing its packages failed: {exc}", "", 1)
        say(f"● environment ready in {time.monotonic() - began:.1f} s")
        return Interpreter(python, site=True, lock=lock.key)

    def _build_in_background(self, lock: Lock) -> None:
        with self._lock:
            running = self._building.get(lock.key)
            if running is not None and running.is_alive():
                return

            def build() -> None:
                try:
                    self._environments.ensure(lock, log=lambda line: None, timeout=self._timeout)
                except Exception:
                    log.warning("building an environment failed", extra={"lock": lock.key}, exc_info=True)

            thread = threading.Thread(target=build, name="slipway-environment", daemon=True)
            self._building[lock.key] = thread
        thread.start()

    def _maybe_sweep(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._swept < _SWEEP_EVERY_SECONDS:
                return
            self._swept = now
            keep = {key for key, used in self._in_use.items() if now - used < _IDLE_SECONDS}
        removed = self._environments.sweep(keep, idle_seconds=_IDLE_SECONDS)
        if removed:
            log.info("unused environments removed", extra={"count": len(removed)})
