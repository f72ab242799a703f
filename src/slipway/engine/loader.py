"""Loading workflow files by version.

A workflow is ``workflows/<name>.py`` in the workspace. Its version is the SHA-256 of its
source. Loading compiles the source with the file's real path as the code's file name, so a
debugger maps breakpoints in the user's file onto the code that runs, even when that code is a
pinned earlier version of the file. Each version is executed once per process and cached.
Helpers beside the workflows start with ``_`` and are not listed as workflows. A step whose
timeout is longer than the Functions host lets an invocation run (``slipway.hostlimits``) is
a load error at the step's line.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import threading
import traceback
import types
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from slipway.hostlimits import HostLimits
from slipway.sdk import Workflow

WORKFLOWS_FOLDER = "workflows"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_SOURCE_BYTES = 1024 * 1024
_CACHE_SIZE = 128


@dataclass(frozen=True)
class LoadError:
    message: str
    file: str
    line: int


@dataclass(frozen=True)
class LoadedWorkflow:
    """One version of a workflow file, executed, or the reason it does not load."""

    name: str
    path: Path
    version: str
    source: bytes
    workflow: Workflow | None
    error: LoadError | None


class VersionStore(Protocol):
    """Where pinned sources are kept, addressed by their version."""

    def put_if_absent(self, container: str, name: str, data: bytes) -> bool: ...

    def get(self, container: str, name: str) -> bytes | None: ...


VERSIONS_CONTAINER = "slipway-workflow-versions"


def source_version(source: bytes) -> str:
    return hashlib.sha256(source).hexdigest()[:20]


class WorkflowLoader:
    """Finds workflow files, loads them by version and keeps every pinned source."""

    def __init__(
        self, workspace_dir: Path, versions: VersionStore, *, host_limits: HostLimits | None = None
    ) -> None:
        self._folder = workspace_dir / WORKFLOWS_FOLDER
        self._versions = versions
        self.host_limits = host_limits or HostLimits()
        self._cache: OrderedDict[tuple[str, str], LoadedWorkflow] = OrderedDict()
        self._pinned: set[str] = set()
        self._lock = threading.Lock()

    @property
    def folder(self) -> Path:
        return self._folder

    def path_of(self, name: str) -> Path:
        return self._folder / f"{name}.py"

    def names(self) -> list[str]:
        """Names of the workflow files, sorted."""
        try:
            entries = list(os.scandir(self._folder))
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = []
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            if ext == ".py" and NAME_PATTERN.match(stem) and entry.is_file(follow_symlinks=False):
                found.append(stem)
        return sorted(found, key=str.lower)

    def read_source(self, name: str) -> bytes | None:
        """The file's current source, or None when there is no such workflow file."""
        if not NAME_PATTERN.match(name):
            return None
        try:
            fd = os.open(self.path_of(name), os.O_RDONLY | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError, OSError):
            return None
        with os.fdopen(fd, "rb") as handle:
            return handle.read(MAX_SOURCE_BYTES + 1)

    def load_current(self, name: str) -> LoadedWorkflow | None:
        source = self.read_source(name)
        if source is None:
            return None
        return self.load(name, source)

    def pin(self, loaded: LoadedWorkflow) -> None:
        """Keep the source of ``loaded`` so runs of this version can load it later, anywhere."""
        if loaded.version in self._pinned:
            return
        self._versions.put_if_absent(VERSIONS_CONTAINER, f"{loaded.version}.py", loaded.source)
        with self._lock:
            self._pinned.add(loaded.version)

    def load_version(self, name: str, version: str) -> LoadedWorkflow | None:
        """The pinned version, or None when its source was never kept."""
        with self._lock:
            cached = self._cache.get((name, version))
        if cached is not None:
            return cached
        source = self._versions.get(VERSIONS_CONTAINER, f"{version}.py")
        if source is None or source_version(source) != version:
            return None
        return self.load(name, source)

    def load(self, name: str, source: bytes) -> LoadedWorkflow:
        version = source_version(source)
        key = (name, version)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        loaded = self._execute(name, version, source)
        with self._lock:
            self._cache[key] = loaded
            while len(self._cache) > _CACHE_SIZE:
                _, evicted = self._cache.popitem(last=False)
                sys.modules.pop(_module_name(evicted.name, evicted.version), None)
        return loaded

    def _relative(self, file: str) -> str:
        """A workspace file as users name it (``workflows/x.py``); others as they are."""
        workspace = str(self._folder.parent)
        if file.startswith(workspace + os.sep):
            return file[len(workspace) + 1 :]
        return file

    def _execute(self, name: str, version: str, source: bytes) -> LoadedWorkflow:
        path = self.path_of(name)
        filename = str(path)

        def failed(message: str, file: str = filename, line: int = 1) -> LoadedWorkflow:
            error = LoadError(message, self._relative(file), line)
            return LoadedWorkflow(name, path, version, source, None, error)

        if len(source) > MAX_SOURCE_BYTES:
            return failed(f"the file is larger than {MAX_SOURCE_BYTES // 1024} KB")
        try:
            code = compile(source, filename, "exec", dont_inherit=True)
        except SyntaxError as exc:
            return failed(f"SyntaxError: {exc.msg}", exc.filename or filename, exc.lineno or 1)
        except ValueError as exc:  # null bytes
            return failed(f"SyntaxError: {exc}")
        module_name = _module_name(name, version)
        module = types.ModuleType(module_name)
        module.__file__ = filename
        # Registered while it runs so dataclasses and typing can find the module by name.
        sys.modules[module_name] = module
        try:
            exec(code, module.__dict__)  # noqa: S102 - running the workspace's workflow is the point
        except BaseException as exc:
            sys.modules.pop(module_name, None)
            if isinstance(exc, KeyboardInterrupt):
                raise
            file, line = _innermost_user_frame(exc, filename)
            return failed(f"{type(exc).__name__}: {exc}", file, line)
        declared = [value for value in vars(module).values() if isinstance(value, Workflow)]
        if not declared:
            sys.modules.pop(module_name, None)
            return failed("the file declares no workflow: add `workflow = Workflow(...)` from slipway.sdk")
        if len(declared) > 1:
            sys.modules.pop(module_name, None)
            return failed("the file declares more than one Workflow; keep one per file")
        if not declared[0].steps:
            sys.modules.pop(module_name, None)
            return failed("the workflow declares no steps: decorate a function with @workflow.step()")
        limit = self.host_limits.step_seconds
        for step in [*declared[0].steps.values(), *declared[0].failure_handlers.values()]:
            if step.timeout is not None and step.timeout > limit:
                sys.modules.pop(module_name, None)
                return failed(
                    f"step {step.name!r}: timeout={step.timeout:g} s is more than a step may run "
                    f"here, {limit:g} s ({self.host_limits.explain()}); shorten it or raise "
                    "functionTimeout in host.json",
                    filename,
                    step.line,
                )
        return LoadedWorkflow(name, path, version, source, declared[0], None)


def _module_name(name: str, version: str) -> str:
    return f"slipway_workflow_{name.replace('-', '_')}_{version}"


def _innermost_user_frame(exc: BaseException, filename: str) -> tuple[str, int]:
    """Where in the workspace the error was raised: the innermost frame in a workspace file,
    else the workflow file's own innermost frame, else its first line."""
    frames = traceback.extract_tb(exc.__traceback__)
    workspace = os.path.dirname(os.path.dirname(filename))
    for frame in reversed(frames):
        if frame.filename.startswith(workspace + os.sep) and frame.lineno:
            return frame.filename, frame.lineno
    for frame in reversed(frames):
        if frame.filename == filename and frame.lineno:
            return frame.filename, frame.lineno
    return filename, 1
