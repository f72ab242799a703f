"""Running one attempt of one step, in a process of its own (``slipway.isolation``).

The worker that received the activity starts the step's process, streams its output
(``print``, ``ctx.log``, ``shell``) into the run's log with the workflow's secrets masked, and
stops it (and everything it started) on the step's timeout, a cancel or shutdown. The result
is stored in the step's row, where dependants read it: orchestration histories carry only
small outcomes, never step data or secrets.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from slipway.engine.loader import WorkflowLoader
from slipway.engine.logs import RunLogWriter
from slipway.engine.runs import MAX_ERROR_CHARS, RunStore, now_iso
from slipway.isolation.boundary import prepare_folder
from slipway.masking import SecretMask

log = logging.getLogger("slipway.engine.execution")

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
    """Why a running attempt must stop now, asked every tenth of a second while it runs."""

    def __init__(self, cancels: CancelWatch, run_id: str) -> None:
        self._cancels = cancels
        self._run_id = run_id

    def should_stop(self) -> str | None:
        if _shutting_down.is_set():
            return "stopped: Slipway is shutting down"
        if self._cancels.canceled(self._run_id):
            return "stopped: the run was canceled"
        return None


class SecretValues(Protocol):
    def get_values(self, names: Iterable[str]) -> dict[str, str]: ...


class StepExecutor:
    def __init__(
        self,
        loader: WorkflowLoader,
        runs: RunStore,
        writer: RunLogWriter,
        cancels: CancelWatch,
        temp_dir: Path,
        *,
        secrets: SecretValues | None = None,
    ) -> None:
        self._loader = loader
        self._runs = runs
        self._writer = writer
        self._cancels = cancels
        self._temp_dir = temp_dir
        self._secrets = secrets

    def run_attempt(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Run attempt ``attempt`` of ``step`` in a process of its own; the outcome for the
        orchestrator, never raises for the step's own failures."""
        run_id, name, attempt = str(request["run_id"]), str(request["step"]), int(request["attempt"])
        failure = request.get("failure")
        run = self._runs.get_run(run_id)
        self._cancels.seed(run_id, run)
        loaded = self._loader.load_version(
            run["workflow"],
            run["version"],
            run.get("snapshot"),
            environment=run.get("environment"),
            log=lambda text: self._writer.line(run_id, name, "system", text),
        )
        if loaded is None or loaded.workflow is None or loaded.interpreter is None:
            reason = (
                loaded.error.message if loaded is not None and loaded.error is not None else "it was not kept"
            )
            return self._refuse(
                run_id,
                name,
                attempt,
                f"version {run['version']} of {run['workflow']} cannot be loaded: {reason}",
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
        values = self._secrets.get_values(workflow.secrets) if self._secrets and workflow.secrets else {}
        missing = [secret for secret in workflow.secrets if secret not in values]
        if missing:
            error = f"secret {', '.join(missing)} is not set: an admin sets it under Secrets"
            return self._end(run_id, name, attempt, began, ok=False, error=error)
        mask = SecretMask(values.values())
        workdir = run_workdir(self._temp_dir, run_id)
        prepare_folder(workdir, self._loader.launcher.identity)
        # The plan's timeout (the step's own, or the host's limit when it declared none).
        timeout = request.get("timeout", step.timeout)
        child_request = {
            "mode": "step",
            "workflow": run["workflow"],
            "snapshot": str(self._loader.materialise(loaded)),
            "real": str(self._loader.workspace_dir),
            "step": name,
            "context": {
                "run_id": run_id,
                "workflow": run["workflow"],
                "attempt": attempt,
                "params": json.loads(run.get("params") or "{}"),
                "outputs": outputs,
                "workdir": str(workdir),
                "failure": failure,
            },
            "arguments": arguments,
            "secrets": values,
            "timeout": timeout,
        }

        def output(stream: str, line: str) -> None:
            self._writer.write(run_id, name, stream, mask.clean(line) + "\n")

        outcome = self._loader.launcher.run(
            child_request,
            python=loaded.interpreter.python,
            site=loaded.interpreter.site,
            home=workdir / ".home",
            on_output=output,
            should_stop=_AttemptRuntime(self._cancels, run_id).should_stop,
            timeout=float(timeout) if timeout else None,
        )
        if outcome.killed:
            shown = ", ".join(f"{p['pid']} {str(p['cmd'])[:80]}" for p in outcome.killed[:10])
            more = f" and {len(outcome.killed) - 10} more" if len(outcome.killed) > 10 else ""
            text = f"■ stopped {len(outcome.killed)} process(es) the step left running: {shown}{more}"
            self._writer.line(run_id, name, "system", mask.clean(text))
        answer = outcome.answer or {}
        canceled = self._cancels.canceled(run_id)
        if outcome.stopped is not None:
            return self._end(run_id, name, attempt, began, ok=False, error=outcome.stopped, canceled=canceled)
        if answer.get("t") == "result" and answer.get("ok"):
            return self._end(run_id, name, attempt, began, ok=True, output=mask.clean(str(answer["output"])))
        if answer.get("t") == "result":
            error = mask.clean(str(answer.get("error")))[:MAX_ERROR_CHARS]
        elif answer.get("t") == "load_error":
            error = mask.clean(f"{answer.get('file')}:{answer.get('line')}: {answer.get('message')}")
        else:
            error = f"the step ended without a result: {outcome.describe_exit()}"
        return self._end(run_id, name, attempt, began, ok=False, error=error, canceled=canceled)

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
