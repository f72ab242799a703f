"""Running one attempt of one step, in the worker that received the activity.

The step's function runs in this thread with its output (``print``, ``ctx.log``, ``shell``)
routed into the run's log. Its result is stored in the step's row, where dependants read it:
orchestration histories carry only small outcomes, never step data.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from slipway import sdk
from slipway.engine.loader import WorkflowLoader
from slipway.engine.logs import RunLogWriter
from slipway.engine.runs import MAX_ERROR_CHARS, RunStore, now_iso

log = logging.getLogger("slipway.engine.execution")

MAX_OUTPUT_CHARS = 32_000
_CANCEL_CHECK_SECONDS = 1.0
_shutting_down = threading.Event()


def stop_running_steps() -> None:
    """The process is stopping: every running ``shell`` command is killed now."""
    _shutting_down.set()


def run_workdir(temp_dir: Path, run_id: str) -> Path:
    return temp_dir / "runs" / run_id


class CancelWatch:
    """Whether a run was asked to stop: its row's flag, read at most once a second per run.

    The flag is in Table storage because the API that sets it and the worker that runs the
    step may be different processes or machines.
    """

    def __init__(self, runs: RunStore) -> None:
        self._runs = runs
        self._lock = threading.Lock()
        self._checked: dict[str, tuple[float, bool]] = {}

    def seed(self, run_id: str, row: Mapping[str, Any]) -> None:
        """A run row just read: its flag counts as a fresh check."""
        with self._lock:
            self._checked[run_id] = (time.monotonic(), bool(row.get("cancel_requested")))

    def canceled(self, run_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            checked = self._checked.get(run_id)
        if checked is not None and (checked[1] or now - checked[0] < _CANCEL_CHECK_SECONDS):
            return checked[1]
        try:
            flag = bool(self._runs.get_run(run_id).get("cancel_requested"))
        except Exception:  # a storage blip must not fail the step; try again next time
            log.warning("could not read the cancel flag of run %s", run_id, exc_info=True)
            flag = False
        with self._lock:
            self._checked[run_id] = (now, flag)
            if len(self._checked) > 10_000:
                self._checked.clear()
        return flag


class _AttemptRuntime:
    def __init__(
        self,
        writer: RunLogWriter,
        cancels: CancelWatch,
        run_id: str,
        step: str,
        timeout: float | None,
        workdir: Path,
    ) -> None:
        self.workdir = workdir
        self._writer = writer
        self._cancels = cancels
        self._run_id = run_id
        self._step = step
        self._timeout = timeout
        self._started = time.monotonic()

    def write(self, text: str, stream: str) -> None:
        self._writer.write(self._run_id, self._step, stream, text)

    def remaining_seconds(self) -> float | None:
        if self._timeout is None:
            return None
        return self._timeout - (time.monotonic() - self._started)

    def should_stop(self) -> str | None:
        if _shutting_down.is_set():
            return "stopped: Slipway is shutting down"
        remaining = self.remaining_seconds()
        if remaining is not None and remaining <= 0:
            return f"stopped: the step's timeout of {self._timeout:g} s passed"
        if self._cancels.canceled(self._run_id):
            return "stopped: the run was canceled"
        return None


class _RoutedStream(io.TextIOBase):
    """sys.stdout/sys.stderr: text written by a running step goes to its run's log."""

    def __init__(self, original: TextIO, stream: str) -> None:
        self._original = original
        self._stream = stream

    def write(self, text: str) -> int:
        runtime = sdk._runtime.get()
        if runtime is None:
            return self._original.write(text)
        runtime.write(text, self._stream)
        return len(text)

    def flush(self) -> None:
        self._original.flush()

    def fileno(self) -> int:
        return self._original.fileno()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._original, "encoding", "utf-8")


_routing_lock = threading.Lock()


def route_output() -> None:
    """Route ``print`` from steps into run logs (once per process)."""
    with _routing_lock:
        if not isinstance(sys.stdout, _RoutedStream):
            sys.stdout = _RoutedStream(sys.stdout, "stdout")
        if not isinstance(sys.stderr, _RoutedStream):
            sys.stderr = _RoutedStream(sys.stderr, "stderr")


class StepExecutor:
    def __init__(
        self,
        loader: WorkflowLoader,
        runs: RunStore,
        writer: RunLogWriter,
        cancels: CancelWatch,
        temp_dir: Path,
    ) -> None:
        self._loader = loader
        self._runs = runs
        self._writer = writer
        self._cancels = cancels
        self._temp_dir = temp_dir

    def run_attempt(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Run attempt ``attempt`` of ``step``; the outcome for the orchestrator, never raises
        for the step's own failures."""
        run_id, name, attempt = str(request["run_id"]), str(request["step"]), int(request["attempt"])
        failure = request.get("failure")
        run = self._runs.get_run(run_id)
        self._cancels.seed(run_id, run)
        loaded = self._loader.load_version(run["workflow"], run["version"])
        if loaded is None or loaded.workflow is None:
            return self._refuse(
                run_id, name, attempt, f"version {run['version']} of {run['workflow']} cannot be loaded"
            )
        workflow = loaded.workflow
        step = workflow.steps.get(name) or workflow.failure_handlers.get(name)
        if step is None:
            return self._refuse(run_id, name, attempt, f"version {run['version']} has no step {name!r}")
        started = now_iso()
        began = time.monotonic()

        def begin(row: dict[str, Any]) -> dict[str, Any] | None:
            if (
                row.get("status") in ("succeeded", "failed", "timed_out", "skipped", "canceled")
                or row.get("attempt", 0) >= attempt
            ):
                return None
            row.update(
                status="running",
                attempt=attempt,
                started=started,
                finished=None,
                duration_ms=None,
                error=None,
            )
            return row

        self._runs.update_step(run_id, name, begin)
        label = f"{name} (attempt {attempt} of {step.retries + 1})" if step.retries else name
        self._writer.line(run_id, name, "system", f"▶ {label}")
        if self._cancels.canceled(run_id):
            return self._end(
                run_id, name, attempt, began, ok=False, error="the run was canceled", canceled=True
            )
        if step.on_failure:
            outputs = self._runs.outputs(run_id, workflow.steps)
            arguments: dict[str, Any] = {}
        else:
            outputs = self._runs.outputs(run_id, step.after)
            arguments = {dependency: outputs.get(dependency) for dependency in step.after}
        workdir = run_workdir(self._temp_dir, run_id)
        workdir.mkdir(parents=True, exist_ok=True)
        context = sdk.StepContext(
            run_id=run_id,
            workflow=run["workflow"],
            step=name,
            attempt=attempt,
            params=json.loads(run.get("params") or "{}"),
            outputs=outputs,
            workdir=workdir,
            failure=failure,
        )
        # The plan's timeout (the step's own, or the host's limit when it declared none).
        timeout = request.get("timeout", step.timeout)
        runtime = _AttemptRuntime(self._writer, self._cancels, run_id, name, timeout, workdir)
        route_output()
        token = sdk._runtime.set(runtime)
        try:
            result = step.function(context, **arguments)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            self._write_traceback(run_id, name, exc)
            canceled = self._cancels.canceled(run_id)
            return self._end(
                run_id, name, attempt, began, ok=False, error=_error_text(exc), canceled=canceled
            )
        finally:
            sdk._runtime.reset(token)
        try:
            encoded = json.dumps(result)
        except (TypeError, ValueError) as exc:
            return self._end(run_id, name, attempt, began, ok=False,
                             error=f"the step returned a value that is not JSON: {exc}")  # fmt: skip
        if len(encoded) > MAX_OUTPUT_CHARS:
            return self._end(
                run_id, name, attempt, began, ok=False,
                error=f"the step's output is {len(encoded)} characters of JSON; at most {MAX_OUTPUT_CHARS} "
                "pass between steps: write large data to ctx.workdir and return its path",
            )  # fmt: skip
        return self._end(run_id, name, attempt, began, ok=True, output=encoded)

    def _end(
        self,
        run_id: str,
        name: str,
        attempt: int,
        began: float,
        *,
        ok: bool,
        error: str | None = None,
        output: str | None = None,
        canceled: bool = False,
    ) -> dict[str, Any]:
        seconds = time.monotonic() - began
        self._writer.line(
            run_id, name, "system",
            f"✔ {name} succeeded in {seconds:.2f} s" if ok else f"✘ {name} failed after {seconds:.2f} s: {error}",
        )  # fmt: skip
        self._writer.flush(run_id)
        finished = now_iso()

        def end(row: dict[str, Any]) -> dict[str, Any] | None:
            # A late attempt (timed out, superseded, or the run already finished) changes nothing.
            if row.get("attempt") != attempt or row.get("status") != "running":
                return None
            if ok:
                status = "succeeded"
            elif canceled:
                status = "canceled"
            else:
                status = "retrying" if attempt < int(row.get("attempts", 1)) else "failed"
            row.update(status=status, finished=finished, duration_ms=int(seconds * 1000), error=error)
            if output is not None:
                row["output"] = output
            return row

        self._runs.update_step(run_id, name, end)
        return {"ok": ok, "error": error, "canceled": canceled}

    def _refuse(self, run_id: str, name: str, attempt: int, error: str) -> dict[str, Any]:
        self._writer.line(run_id, name, "system", f"✘ {error}")
        self._writer.flush(run_id)
        return {"ok": False, "error": error}

    def _write_traceback(self, run_id: str, name: str, exc: BaseException) -> None:
        frames = traceback.extract_tb(exc.__traceback__)[1:]  # drop this module's call frame
        text = "Traceback (most recent call last):\n" + "".join(traceback.format_list(frames))
        text += "".join(traceback.format_exception_only(type(exc), exc))
        self._writer.write(run_id, name, "stderr", text)


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return message[:MAX_ERROR_CHARS]
