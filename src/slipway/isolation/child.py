"""Inside the user process: load the workflow from its snapshot, then describe it or run a step.

The snapshot (a read-only copy of ``workflows/`` as the run pinned it) is what ``import`` sees:
``import helpers`` finds ``workflows/helpers.py`` of the same moment. Its modules are compiled
under the user's real paths (``/workspace/workflows/helpers.py``), so tracebacks and a
debugger's breakpoints name the files the user edits.

The request (see :mod:`slipway.isolation.launcher`) says what to do; the answer goes to the
events descriptor: ``described`` or ``load_error`` for a load, ``result`` for a step. A step's
``print`` output is this process's stdout and stderr, read by the platform as they are.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib.machinery
import importlib.util
import json
import os
import signal
import sys
import time
import traceback
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slipway import sdk
from slipway.isolation.protocol import EVENTS_FD, send

MAX_OUTPUT_CHARS = 32_000


class StopRequested(BaseException):
    """The platform stopped the step (timeout, cancel, shutdown): unwinds through ``finally``."""


class SnapshotFinder:
    """Finds modules in the snapshot, and names their code by the user's real paths."""

    def __init__(self, snapshot: Path, real: Path) -> None:
        self.snapshot = snapshot
        self.real = real

    def _in_snapshot(self, folder: str) -> Path | None:
        path = Path(folder)
        if path == self.real or self.real in path.parents:
            return self.snapshot / path.relative_to(self.real)
        return None

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        tail = fullname.rpartition(".")[2]
        folders = [self.snapshot] if path is None else [p for p in map(self._in_snapshot, path) if p]
        for folder in folders:
            package = folder / tail / "__init__.py"
            module = folder / f"{tail}.py"
            for candidate, is_package in ((package, True), (module, False)):
                if candidate.is_file():
                    real = self.real / candidate.relative_to(self.snapshot)
                    loader = SnapshotLoader(fullname, str(real), candidate)
                    spec = importlib.util.spec_from_file_location(
                        fullname,
                        str(real),
                        loader=loader,
                        submodule_search_locations=[str(real.parent)] if is_package else None,
                    )
                    return spec
        return None


class SnapshotLoader:
    """Compiles a snapshot file as if it were the user's file (``importlib.abc`` is not
    imported for this: it pulls in ``importlib.resources``, a quarter of a step's start-up)."""

    def __init__(self, fullname: str, real: str, snapshot_file: Path) -> None:
        self.name = fullname
        self.path = real
        self.snapshot_file = snapshot_file

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        code = compile(self.snapshot_file.read_bytes(), self.path, "exec", dont_inherit=True)
        exec(code, module.__dict__)  # noqa: S102 - running the workspace's workflow is the point

    def get_source(self, fullname: str) -> str:
        return self.snapshot_file.read_text(encoding="utf-8", errors="replace")


class ChildRuntime:
    """What ``slipway.sdk`` writes to while a step runs in this process."""

    def __init__(self, workdir: Path, timeout: float | None) -> None:
        self.workdir = workdir
        self._deadline = time.monotonic() + timeout if timeout else None
        self.stop_reason: str | None = None

    def write(self, text: str, stream: str) -> None:
        if stream == "stdout":
            _write_fd(1, text)
        elif stream == "stderr":
            _write_fd(2, text)
        else:
            send(EVENTS_FD, {"t": stream, "text": text})

    def remaining_seconds(self) -> float | None:
        if self._deadline is None:
            return None
        return self._deadline - time.monotonic()

    def should_stop(self) -> str | None:
        if self.stop_reason is not None:
            return self.stop_reason
        remaining = self.remaining_seconds()
        if remaining is not None and remaining <= 0:
            return "stopped: the step's timeout passed"
        return None


def _write_fd(fd: int, text: str) -> None:
    sys.stdout.flush() if fd == 1 else sys.stderr.flush()
    data = memoryview(text.encode("utf-8", "replace"))
    while data:
        data = data[os.write(fd, data) :]


def _load(request: Mapping[str, Any]) -> tuple[sdk.Workflow | None, dict[str, Any] | None]:
    """Import the workflow module; (workflow, None) or (None, the load error)."""
    snapshot = Path(request["snapshot"])
    real = Path(request["real"])
    name = str(request["workflow"])
    sys.meta_path.insert(0, SnapshotFinder(snapshot / "workflows", real / "workflows"))
    filename = str(real / "workflows" / f"{name}.py")
    workspace = str(real)

    def failed(message: str, file: str = filename, line: int = 1) -> tuple[None, dict[str, Any]]:
        if file.startswith(workspace + os.sep):
            file = file[len(workspace) + 1 :]
        return None, {"t": "load_error", "message": message, "file": file, "line": line}

    # The file is imported under its own name, so other workflow files can import it too;
    # under another when that name is taken (a module of the interpreter's, already loaded).
    module_name = name.replace("-", "_")
    if module_name in sys.modules or not module_name.isidentifier():
        module_name = "__slipway_workflow__"
    source_file = snapshot / "workflows" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(
        module_name, filename, loader=SnapshotLoader(module_name, filename, source_file)
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        return failed(f"SyntaxError: {exc.msg}", exc.filename or filename, exc.lineno or 1)
    except StopRequested:
        raise
    except BaseException as exc:
        file, line = _innermost_user_frame(exc, filename, workspace)
        return failed(f"{type(exc).__name__}: {exc}", file, line)
    declared = [value for value in vars(module).values() if isinstance(value, sdk.Workflow)]
    if not declared:
        return failed("the file declares no workflow: add `workflow = Workflow(...)` from slipway.sdk")
    if len(declared) > 1:
        return failed("the file declares more than one Workflow; keep one per file")
    if not declared[0].steps:
        return failed("the workflow declares no steps: decorate a function with @workflow.step()")
    return declared[0], None


def describe(workflow: sdk.Workflow) -> dict[str, Any]:
    """The workflow as data: what the platform lists, validates and plans from."""
    return {
        "t": "described",
        "description": workflow.description,
        "params": {
            name: {
                "type": sdk.PARAM_TYPES[param.type],
                "default": param.default,
                "choices": list(param.choices) if param.choices is not None else None,
                "help": param.help,
            }
            for name, param in workflow.params.items()
        },
        "secrets": list(workflow.secrets),
        "steps": [_step_data(step) for step in workflow.steps.values()],
        "on_failure": [_step_data(step) for step in workflow.failure_handlers.values()],
    }


def _step_data(step: sdk.Step) -> dict[str, Any]:
    return {
        "name": step.name,
        "after": list(step.after),
        "retries": step.retries,
        "retry_delay": step.retry_delay,
        "timeout": step.timeout,
        "line": step.line,
        "on_failure": step.on_failure,
    }


def _run_step(workflow: sdk.Workflow, request: Mapping[str, Any]) -> dict[str, Any]:
    name = str(request["step"])
    step = workflow.steps.get(name) or workflow.failure_handlers.get(name)
    if step is None:
        return {"t": "result", "ok": False, "error": f"this version has no step {name!r}"}
    context_data = request["context"]
    workdir = Path(context_data["workdir"])
    context = sdk.StepContext(
        run_id=context_data["run_id"],
        workflow=context_data["workflow"],
        step=name,
        attempt=int(context_data["attempt"]),
        params=context_data["params"],
        outputs=context_data["outputs"],
        workdir=workdir,
        failure=context_data.get("failure"),
        secrets=sdk.Secrets(request.get("secrets") or {}, declared=workflow.secrets),
    )
    runtime = ChildRuntime(workdir, request.get("timeout"))
    token = sdk._runtime.set(runtime)
    with contextlib.suppress(OSError):
        os.chdir(workdir)
    try:
        result = step.function(context, **request.get("arguments", {}))
    except StopRequested:
        raise
    except BaseException as exc:
        frames = traceback.extract_tb(exc.__traceback__)[1:]  # drop this module's call frame
        text = "Traceback (most recent call last):\n" + "".join(traceback.format_list(frames))
        text += "".join(traceback.format_exception_only(type(exc), exc))
        _write_fd(2, text)
        return {"t": "result", "ok": False, "error": _error_text(exc)}
    finally:
        sdk._runtime.reset(token)
    try:
        encoded = json.dumps(result)
    except (TypeError, ValueError) as exc:
        return {"t": "result", "ok": False, "error": f"the step returned a value that is not JSON: {exc}"}
    if len(encoded) > MAX_OUTPUT_CHARS:
        return {
            "t": "result",
            "ok": False,
            "error": f"the step's output is {len(encoded)} characters of JSON; at most {MAX_OUTPUT_CHARS} "
            "pass between steps: write large data to ctx.workdir and return its path",
        }
    return {"t": "result", "ok": True, "output": encoded}


def _on_stop(signum: int, frame: object) -> None:
    raise StopRequested("stopped")


def main(request: Mapping[str, Any]) -> int:
    """Run the request; the process's exit code."""
    signal.signal(signal.SIGTERM, _on_stop)
    if request.get("home"):
        os.environ["HOME"] = str(request["home"])
    if request.get("hang_report"):
        # A load that hangs is stopped by the platform; this says where it hung, first.
        faulthandler.dump_traceback_later(float(request["hang_report"]), file=sys.stderr)
    try:
        workflow, error = _load(request)
        if error is not None:
            send(EVENTS_FD, error)
            return 0
        assert workflow is not None
        if request.get("mode") == "describe":
            send(EVENTS_FD, describe(workflow))
            return 0
        send(EVENTS_FD, _run_step(workflow, request))
        return 0
    except StopRequested:
        return 143


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return message[:4000]


def _innermost_user_frame(exc: BaseException, filename: str, workspace: str) -> tuple[str, int]:
    """Where in the workspace the error was raised: the innermost frame in a workspace file,
    else the workflow file's first line."""
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        if frame.filename.startswith(workspace + os.sep) and frame.lineno:
            return frame.filename, frame.lineno
    return filename, 1
