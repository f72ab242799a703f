"""Loading workflow files, always in a child process, by version.

A workflow is ``workflows/<name>.py`` in the workspace; files that declare no ``Workflow(...)``
(helpers it imports) and names starting with ``_`` are not listed. Loading one means importing
it in a process of its own (:mod:`slipway.isolation`), from a snapshot of the whole
``workflows/`` folder (:mod:`slipway.engine.snapshots`), in the workflow's Python environment,
and reading back its description: parameters, secrets, steps. The platform never imports user
code. A load is bounded in time: an import that never returns is a load error naming the line
it hung at, and the API answers at once. A step whose timeout is longer than the Functions host
lets an invocation run (``slipway.hostlimits``) is a load error at the step's line.

Descriptions are cached per (file, snapshot, environment): one child per version, however many
listings ask at once.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from slipway.engine.snapshots import FOLDER, Snapshot, Snapshots
from slipway.hostlimits import HostLimits
from slipway.isolation.launcher import Launcher
from slipway.sdk import PARAM_TYPES, Param

WORKFLOWS_FOLDER = FOLDER
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_SOURCE_BYTES = 1024 * 1024
_CACHE_SIZE = 512
# A load that timed out is not retried for this long (every listing would wait again).
_TIMEOUT_REMEMBERED_SECONDS = 60.0
_TYPES = {label: kind for kind, label in PARAM_TYPES.items()}
_HUNG_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)')


@dataclass(frozen=True)
class LoadError:
    message: str
    file: str
    line: int


@dataclass(frozen=True)
class StepInfo:
    """A step as the workflow declares it."""

    name: str
    after: tuple[str, ...]
    retries: int
    retry_delay: float
    timeout: float | None
    line: int
    on_failure: bool = False


@dataclass(frozen=True)
class WorkflowInfo:
    """A workflow's declaration, as its process described it."""

    description: str
    params: dict[str, Param]
    secrets: tuple[str, ...]
    steps: dict[str, StepInfo]
    failure_handlers: dict[str, StepInfo]


@dataclass(frozen=True)
class Interpreter:
    """Where a workflow's code runs: an environment's python (``site``: with its packages)."""

    python: Path
    site: bool = False
    lock: str = ""


class Interpreters(Protocol):
    """The Python environment of a workflow (its declared packages), built when needed."""

    def for_workflow(
        self, name: str, snapshot_dir: Path, *, log: Callable[[str], None] | None, wait: bool
    ) -> Interpreter | LoadError | None:
        """The interpreter; a LoadError for packages that do not resolve; None while it is
        being built and ``wait`` is false."""
        ...


@dataclass(frozen=True)
class LoadedWorkflow:
    """One version of a workflow file, described, or the reason it does not load."""

    name: str
    path: Path
    version: str
    source: bytes
    snapshot: Snapshot
    workflow: WorkflowInfo | None
    error: LoadError | None
    interpreter: Interpreter | None = None
    preparing: bool = False
    contents: Mapping[str, bytes] = field(default_factory=dict, repr=False, compare=False)


class VersionStore(Protocol):
    """Where pinned sources are kept, addressed by their version."""

    def put_if_absent(self, container: str, name: str, data: bytes) -> bool: ...

    def get(self, container: str, name: str) -> bytes | None: ...


VERSIONS_CONTAINER = "slipway-workflow-versions"


def source_version(source: bytes) -> str:
    return hashlib.sha256(source).hexdigest()[:20]


class _PlatformPython:
    """No packages of its own: the platform's interpreter without its site-packages."""

    def for_workflow(
        self, name: str, snapshot_dir: Path, *, log: Callable[[str], None] | None, wait: bool
    ) -> Interpreter | LoadError | None:
        import sys

        return Interpreter(Path(sys.executable))


class WorkflowLoader:
    """Finds workflow files and describes them, each version once, in child processes."""

    def __init__(
        self,
        workspace_dir: Path,
        versions: VersionStore,
        *,
        snapshots: Snapshots,
        launcher: Launcher,
        home: Path,
        interpreters: Interpreters | None = None,
        host_limits: HostLimits | None = None,
        load_timeout: float = 10.0,
    ) -> None:
        self._folder = workspace_dir / WORKFLOWS_FOLDER
        self._versions = versions
        self.snapshots = snapshots
        self.launcher = launcher
        self.interpreters: Interpreters = interpreters or _PlatformPython()
        self.host_limits = host_limits or HostLimits()
        self.load_timeout = load_timeout
        self._home = home
        self._cache: OrderedDict[tuple[str, str, str], tuple[LoadedWorkflow, float]] = OrderedDict()
        self._loading: dict[tuple[str, str, str], threading.Event] = {}
        self._lock = threading.Lock()

    @property
    def folder(self) -> Path:
        return self._folder

    @property
    def workspace_dir(self) -> Path:
        return self._folder.parent

    def path_of(self, name: str) -> Path:
        return self._folder / f"{name}.py"

    def names(self) -> list[str]:
        """Names of the workflow files, sorted: ``.py`` files at the top of ``workflows/`` that
        declare a Workflow (or do not parse, so their error shows)."""
        try:
            entries = list(os.scandir(self._folder))
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = []
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            if ext == ".py" and NAME_PATTERN.match(stem) and entry.is_file(follow_symlinks=False):
                source = self.read_source(stem)
                if source is not None and _declares_workflow(source):
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

    def load_current(self, name: str, *, wait: bool = False) -> LoadedWorkflow | None:
        """The workflow as the workspace has it now (None: no such file). ``wait``: build its
        environment if needed, up to the load bound; otherwise a load whose environment is not
        ready is answered at once as ``preparing`` while it builds."""
        source = self.read_source(name)
        if source is None:
            return None
        snapshot, contents = self.snapshots.current()
        return self._describe(name, source, snapshot, contents, log=None, wait=wait)

    def pin(self, loaded: LoadedWorkflow) -> None:
        """Keep the snapshot of ``loaded`` so runs of it can load later, on any instance."""
        self.snapshots.keep(loaded.snapshot, loaded.contents)

    def load_version(
        self,
        name: str,
        version: str,
        snapshot_id: str | None,
        *,
        environment: str | None = None,
        log: Callable[[str], None] | None = None,
    ) -> LoadedWorkflow | None:
        """The pinned version (building its environment if needed, its progress to ``log``),
        or None when it was never kept."""
        contents: dict[str, bytes] | None = None
        if snapshot_id:
            snapshot = self.snapshots.fetch(snapshot_id)
        else:  # a run queued before whole-folder snapshots: its one file
            source = self._versions.get(VERSIONS_CONTAINER, f"{version}.py")
            if source is None or source_version(source) != version:
                return None
            snapshot, contents = self.snapshots.single_file(name, source)
        if snapshot is None:
            return None
        if contents is None:
            contents = {}
        source = contents.get(f"{FOLDER}/{name}.py")
        if source is None:
            materialised = self.snapshots.materialise(snapshot)
            path = materialised / FOLDER / f"{name}.py"
            source = path.read_bytes() if path.is_file() else b""
        return self._describe(name, source, snapshot, contents, log=log, wait=True, environment=environment)

    def materialise(self, loaded: LoadedWorkflow) -> Path:
        return self.snapshots.materialise(loaded.snapshot, loaded.contents)

    # ------------------------------------------------------------------ describing

    def _describe(
        self,
        name: str,
        source: bytes,
        snapshot: Snapshot,
        contents: Mapping[str, bytes],
        *,
        log: Callable[[str], None] | None,
        wait: bool,
        environment: str | None = None,
    ) -> LoadedWorkflow:
        version = source_version(source)

        def loaded(**fields: Any) -> LoadedWorkflow:
            base: dict[str, Any] = {"workflow": None, "error": None}
            base.update(fields)
            return LoadedWorkflow(
                name, self.path_of(name), version, source, snapshot, contents=contents, **base
            )

        if len(source) > MAX_SOURCE_BYTES:
            return loaded(error=LoadError(f"the file is larger than {MAX_SOURCE_BYTES // 1024} KB",
                                          self._relative(name), 1))  # fmt: skip
        if f"{FOLDER}/{name}.py" not in snapshot.files:
            return loaded(error=LoadError("the file changed while it was being read; try again",
                                          self._relative(name), 1))  # fmt: skip
        snapshot_dir = self.snapshots.materialise(snapshot, contents)
        for_lock = getattr(self.interpreters, "for_lock", None)
        if environment and for_lock is not None:
            # A run's steps use the environment it was queued with, never a fresh resolution.
            interpreter = for_lock(environment, log=log)
        else:
            interpreter = self.interpreters.for_workflow(name, snapshot_dir, log=log, wait=wait)
        if interpreter is None:
            return loaded(preparing=True)
        if isinstance(interpreter, LoadError):
            return loaded(error=interpreter)
        key = (name, snapshot.id, interpreter.lock)
        while True:
            with self._lock:
                cached = self._cache.get(key)
                if cached is not None and (cached[1] == 0 or time.monotonic() < cached[1]):
                    self._cache.move_to_end(key)
                    return cached[0]
                waiting = self._loading.get(key)
                if waiting is None:
                    self._loading[key] = threading.Event()
                    break
            waiting.wait(self.load_timeout + 5)
        try:
            result, expires = self._run_describe(name, snapshot_dir, interpreter, loaded)
            with self._lock:
                self._cache[key] = (result, expires)
                while len(self._cache) > _CACHE_SIZE:
                    self._cache.popitem(last=False)
            return result
        finally:
            with self._lock:
                self._loading.pop(key).set()

    def _run_describe(
        self,
        name: str,
        snapshot_dir: Path,
        interpreter: Interpreter,
        loaded: Callable[..., LoadedWorkflow],
    ) -> tuple[LoadedWorkflow, float]:
        stderr: list[str] = []

        def collect(stream: str, line: str) -> None:
            if stream == "stderr" and len(stderr) < 2000:
                stderr.append(line)

        request = {
            "mode": "describe",
            "workflow": name,
            "snapshot": str(snapshot_dir),
            "real": str(self.workspace_dir),
            "hang_report": max(self.load_timeout - 0.5, 0.1),
        }
        outcome = self.launcher.run(
            request,
            python=interpreter.python,
            site=interpreter.site,
            home=self._home,
            on_output=collect,
            should_stop=lambda: None,
            timeout=self.load_timeout,
        )
        answer = outcome.answer or {}
        if answer.get("t") == "described":
            return self._checked(loaded, answer, interpreter), 0.0
        if answer.get("t") == "load_error":
            error = LoadError(
                str(answer.get("message")), str(answer.get("file")), int(answer.get("line") or 1)
            )
            return loaded(error=error, interpreter=interpreter), 0.0
        if outcome.stopped is not None:
            file, line = self._hung_at(name, stderr)
            error = LoadError(
                f"loading took longer than {self.load_timeout:g} s and was stopped: code that runs "
                "when the file is imported must return (move long work into a step)",
                file,
                line,
            )
            return loaded(
                error=error, interpreter=interpreter
            ), time.monotonic() + _TIMEOUT_REMEMBERED_SECONDS
        tail = "; ".join(stderr[-3:])
        error = LoadError(
            f"loading the file failed: {outcome.describe_exit()}" + (f" ({tail[:500]})" if tail else ""),
            self._relative(name),
            1,
        )
        return loaded(error=error, interpreter=interpreter), time.monotonic() + _TIMEOUT_REMEMBERED_SECONDS

    def _hung_at(self, name: str, stderr: list[str]) -> tuple[str, int]:
        """The innermost workspace line of the traceback the child printed when it hung."""
        workspace = str(self.workspace_dir) + os.sep
        for text in stderr:  # faulthandler prints the innermost frame first
            match = _HUNG_FRAME.search(text)
            if match and match["file"].startswith(workspace):
                return match["file"][len(workspace) :], int(match["line"])
        return self._relative(name), 1

    def _checked(
        self, loaded: Callable[..., LoadedWorkflow], answer: Mapping[str, Any], interpreter: Interpreter
    ) -> LoadedWorkflow:
        try:
            info = _workflow_info(answer)
        except (KeyError, TypeError, ValueError) as exc:
            error = LoadError(f"the workflow's description could not be read: {exc}", "", 1)
            return loaded(error=error, interpreter=interpreter)
        limit = self.host_limits.step_seconds
        for step in [*info.steps.values(), *info.failure_handlers.values()]:
            if step.timeout is not None and step.timeout > limit:
                error = LoadError(
                    f"step {step.name!r}: timeout={step.timeout:g} s is more than a step may run "
                    f"here, {limit:g} s ({self.host_limits.explain()}); shorten it or raise "
                    "functionTimeout in host.json",
                    loaded().path.relative_to(self.workspace_dir).as_posix(),
                    step.line,
                )
                return loaded(error=error, interpreter=interpreter)
        return loaded(workflow=info, interpreter=interpreter)

    def _relative(self, name: str) -> str:
        return f"{FOLDER}/{name}.py"


def _workflow_info(answer: Mapping[str, Any]) -> WorkflowInfo:
    def steps(items: list[Mapping[str, Any]]) -> dict[str, StepInfo]:
        return {
            str(s["name"]): StepInfo(
                str(s["name"]),
                tuple(str(a) for a in s["after"]),
                int(s["retries"]),
                float(s["retry_delay"]),
                None if s["timeout"] is None else float(s["timeout"]),
                int(s["line"]),
                bool(s["on_failure"]),
            )
            for s in items
        }

    params = {
        str(name): Param(_TYPES[p["type"]], p["default"], p["choices"], str(p.get("help") or ""))
        for name, p in dict(answer["params"]).items()
    }
    return WorkflowInfo(
        str(answer.get("description") or ""),
        params,
        tuple(str(s) for s in answer.get("secrets") or ()),
        steps(list(answer["steps"])),
        steps(list(answer["on_failure"])),
    )


def _declares_workflow(source: bytes) -> bool:
    """Whether a file is a workflow rather than a helper: it mentions ``Workflow(``. A file that
    does not parse is listed too, so its error is shown."""
    if b"Workflow" in source:
        return True
    try:
        compile(source, "<check>", "exec", dont_inherit=True, flags=0x400)  # PyCF_ONLY_AST
    except (SyntaxError, ValueError):
        return True
    return False
