"""The workflow service: what the API, the queue trigger and the run activities call."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from slipway.adapters.queues import QueueBus
from slipway.engine import params as run_params
from slipway.engine.errors import EnvironmentPreparing, RunFinished, WorkflowLoadFailed, WorkflowNotFound
from slipway.engine.execution import run_workdir
from slipway.engine.loader import LoadedWorkflow, WorkflowLoader
from slipway.engine.logs import RunLogStore, RunLogWriter
from slipway.engine.runs import (
    CANCELED,
    FAILED,
    MAX_ERROR_CHARS,
    QUEUED,
    RUN_TERMINAL,
    RUNNING,
    STEP_TERMINAL,
    RunStore,
    StepSpec,
    new_run_id,
    now_iso,
    run_view,
    valid_run_id,
)
from slipway.hostlimits import HostLimits
from slipway.names import RUNS_QUEUE

log = logging.getLogger("slipway.engine.service")

START, CANCEL = "start", "cancel"
# A running run whose cancel was not acted on within this long is terminated by the reaper.
CANCEL_GRACE_SECONDS = 60
MAX_PARAMS_BYTES = 64 * 1024


def parse_message(body: bytes) -> dict[str, str]:
    """A runs-queue message, or ValueError (the host retries it, then parks it as poison)."""
    message = json.loads(body)
    if not isinstance(message, dict) or message.get("action") not in (START, CANCEL):
        raise ValueError("not a run message: expected a JSON object with action 'start' or 'cancel'")
    run_id = message.get("run_id")
    if not isinstance(run_id, str) or not valid_run_id(run_id):
        raise ValueError("run_id is missing or malformed")
    return {"action": message["action"], "run_id": run_id}


def workflow_view(loaded: LoadedWorkflow) -> dict[str, Any]:
    view: dict[str, Any] = {
        "name": loaded.name,
        "path": f"workflows/{loaded.name}.py",
        "version": loaded.version,
        "description": "",
        "params": [],
        "steps": [],
        "on_failure": [],
        "secrets": [],
        "preparing": loaded.preparing,
        "error": None,
    }
    if loaded.error is not None:
        view["error"] = {
            "message": loaded.error.message,
            "file": loaded.error.file,
            "line": loaded.error.line,
        }
        return view
    if loaded.workflow is None:  # its environment is being built
        return view
    workflow = loaded.workflow
    view["secrets"] = list(workflow.secrets)
    view["description"] = workflow.description
    view["params"] = run_params.describe(workflow.params)
    view["steps"] = [
        {"name": s.name, "after": list(s.after), "retries": s.retries, "timeout": s.timeout, "line": s.line}
        for s in workflow.steps.values()
    ]
    view["on_failure"] = [{"name": s.name, "line": s.line} for s in workflow.failure_handlers.values()]
    return view


def plan_of(loaded: LoadedWorkflow, limits: HostLimits) -> list[StepSpec]:
    """The steps as the orchestrator walks them. Every step has a ``timeout`` (seconds per
    attempt): its own, or the longest the host lets a step run when it declared none."""
    assert loaded.workflow is not None
    steps = [*loaded.workflow.steps.values(), *loaded.workflow.failure_handlers.values()]
    note = f"the longest a step without its own timeout may run: {limits.explain()}"
    return [
        StepSpec(s.name, s.after, s.retries + 1, s.retry_delay, s.timeout, s.on_failure)
        if s.timeout is not None
        else StepSpec(s.name, s.after, s.retries + 1, s.retry_delay, limits.step_seconds, s.on_failure, note)
        for s in steps
    ]


class WorkflowService:
    def __init__(
        self,
        loader: WorkflowLoader,
        runs: RunStore,
        log_store: RunLogStore,
        log_writer: RunLogWriter,
        queues: QueueBus,
        temp_dir: Path,
    ) -> None:
        self.loader = loader
        self.runs = runs
        self.log_store = log_store
        self.log_writer = log_writer
        self._queues = queues
        self._temp_dir = temp_dir

    def seed_example(self) -> bool:
        return seed_example(self.loader.folder.parent)

    # ------------------------------------------------------------------- workflows

    def list_workflows(self) -> list[dict[str, Any]]:
        found = []
        for name in self.loader.names():
            loaded = self.loader.load_current(name)
            if loaded is not None:
                found.append(workflow_view(loaded))
        return found

    def get_workflow(self, name: str) -> dict[str, Any]:
        return workflow_view(self._current(name))

    def _current(self, name: str, *, wait: bool = False) -> LoadedWorkflow:
        loaded = self.loader.load_current(name, wait=wait)
        if loaded is None:
            raise WorkflowNotFound(f"no workflow named {name!r}: expected the file workflows/{name}.py")
        return loaded

    # ------------------------------------------------------------------------ runs

    def start_run(self, name: str, given: Any, requested_by: str) -> dict[str, Any]:
        """Validate, pin the version and queue the run; the run as it now is (queued)."""
        loaded = self._current(name, wait=True)
        if loaded.error is not None:
            error = loaded.error
            raise WorkflowLoadFailed(f"{error.file}:{error.line}: {error.message}")
        if loaded.workflow is None:
            raise EnvironmentPreparing(
                f"the Python packages of {name} are still being installed; start the run again in a moment"
            )
        values = run_params.validate(loaded.workflow.params, given)
        self.loader.pin(loaded)
        run_id = new_run_id()
        row = self.runs.create_run(
            run_id,
            workflow=name,
            version=loaded.version,
            params=values,
            requested_by=requested_by,
            snapshot=loaded.snapshot.id,
            environment=loaded.interpreter.lock if loaded.interpreter else "",
        )
        try:
            self._queues.send_message(RUNS_QUEUE, {"action": START, "run_id": run_id})
        except Exception:
            self._fail_queued(run_id, "the run could not be queued (storage unavailable); start it again")
            raise
        log.info("run queued", extra={"run_id": run_id, "workflow": name, "version": loaded.version})
        return run_view(row)

    def get_run(self, run_id: str) -> dict[str, Any]:
        return run_view(self.runs.get_run(run_id), self.runs.list_steps(run_id))

    def list_runs(self, workflow: str | None, limit: int) -> list[dict[str, Any]]:
        return [run_view(row) for row in self.runs.list_runs(workflow=workflow, limit=limit)]

    def cancel_run(self, run_id: str, requested_by: str) -> dict[str, Any]:
        """Ask the run to stop. A queued run is canceled at once; a running one when its
        orchestration hears of it (running commands are killed within a second or two)."""
        stamp = now_iso()

        def request(row: dict[str, Any]) -> dict[str, Any] | None:
            if row["status"] in RUN_TERMINAL:
                raise RunFinished(f"run {run_id} already ended: {row['status']}")
            if row.get("cancel_requested") and row["status"] != QUEUED:
                return None
            row.update(cancel_requested=True, canceled_by=requested_by, cancel_requested_at=stamp)
            if row["status"] == QUEUED:
                row.update(
                    status=CANCELED, finished=stamp, error=f"canceled by {requested_by} before it started"
                )
            return row

        written = self.runs.update_run(run_id, request)
        if written is not None and written["status"] != CANCELED:
            self._queues.send_message(RUNS_QUEUE, {"action": CANCEL, "run_id": run_id})
        if written is not None:
            self.log_writer.line(run_id, "", "system", f"■ cancel requested by {requested_by}")
            self.log_writer.flush(run_id)
        return self.get_run(run_id)

    def read_logs(self, run_id: str, after: int, limit: int) -> dict[str, Any]:
        status = self.runs.get_run(run_id)["status"]
        return self.log_store.page(
            run_id, after=after, limit=limit, status=status, finished=status in RUN_TERMINAL
        )

    # -------------------------------------------------------------- queue trigger

    def run_to_start(self, run_id: str) -> bool:
        """Whether a start message should start an orchestration for ``run_id``."""
        try:
            row = self.runs.get_run(run_id)
        except Exception as exc:
            if getattr(exc, "code", "") == "run_not_found":
                log.warning("start message for unknown run %s dropped", run_id)
                return False
            raise
        return row["status"] == QUEUED

    def mark_unstartable(self, run_id: str, reason: str) -> None:
        self._fail_queued(run_id, reason)

    def _fail_queued(self, run_id: str, reason: str) -> None:
        def fail(row: dict[str, Any]) -> dict[str, Any] | None:
            if row["status"] != QUEUED:
                return None
            row.update(status=FAILED, finished=now_iso(), error=reason[:MAX_ERROR_CHARS])
            return row

        self.runs.update_run(run_id, fail)

    # --------------------------------------------------------------------- reaper

    def unfinished_runs(self) -> list[dict[str, Any]]:
        return self.runs.list_runs(statuses=(QUEUED, RUNNING), limit=1000)

    def reap(self, row: dict[str, Any], orchestration: str | None, now: datetime) -> str | None:
        """Settle a run whose orchestration cannot settle it; "terminate" when the caller
        should terminate the orchestration (a cancel it did not act on in time)."""
        run_id = row["run_id"]
        if row["status"] == RUNNING and orchestration is None:
            self._settle(
                run_id, FAILED, "the run's orchestration is gone (the worker restarted); start it again"
            )
        elif orchestration in ("Completed", "Failed", "Terminated"):
            canceled = orchestration == "Terminated" and row.get("cancel_requested")
            self._settle(
                run_id,
                CANCELED if canceled else FAILED,
                "canceled"
                if canceled
                else f"the orchestration ended ({orchestration}) without recording the result",
            )
        elif row.get("cancel_requested") and row.get("cancel_requested_at"):
            asked = datetime.fromisoformat(str(row["cancel_requested_at"]).replace("Z", "+00:00"))
            if (now - asked).total_seconds() > CANCEL_GRACE_SECONDS:
                return "terminate"
        return None

    def _settle(self, run_id: str, status: str, error: str) -> None:
        def end(current: dict[str, Any]) -> dict[str, Any] | None:
            if current["status"] in RUN_TERMINAL:
                return None
            current.update(status=status, finished=now_iso(), error=error)
            return current

        if self.runs.update_run(run_id, end) is not None:
            log.warning("run settled by the reaper", extra={"run_id": run_id, "status": status})
            self.log_writer.line(run_id, "", "system", f"● run {status}: {error}")
            self.log_writer.flush(run_id)

    # ----------------------------------------------------------------- activities

    def plan(self, run_id: str) -> dict[str, Any]:
        """The run's plan as data (first activity of the orchestration); marks it running."""
        row = self.runs.get_run(run_id)
        if row["status"] in RUN_TERMINAL:
            return {"status": row["status"], "error": row.get("error")}
        if row.get("cancel_requested"):
            return {
                "status": CANCELED,
                "error": f"canceled by {row.get('canceled_by', 'someone')} before it started",
            }
        loaded = self.loader.load_version(
            row["workflow"],
            row["version"],
            row.get("snapshot"),
            environment=row.get("environment"),
            log=lambda text: self.log_writer.line(run_id, "", "system", text),
        )
        if loaded is None:
            return {"status": FAILED, "error": f"version {row['version']} of {row['workflow']} was not kept"}
        if loaded.error is not None:
            error = loaded.error
            return {"status": FAILED, "error": f"{error.file}:{error.line}: {error.message}"}
        if loaded.workflow is None:
            return {"status": FAILED, "error": "the workflow's Python environment could not be prepared"}
        specs = plan_of(loaded, self.loader.host_limits)
        self.runs.create_steps(run_id, specs)
        started = now_iso()

        def start(current: dict[str, Any]) -> dict[str, Any] | None:
            if current["status"] != QUEUED:
                return None
            current.update(status=RUNNING, started=started)
            return current

        self.runs.update_run(run_id, start)
        self.log_writer.line(run_id, "", "system", f"● {row['workflow']} {row['version'][:12]} started")
        return {
            "status": "ready",
            "steps": [s.as_data() for s in specs if not s.on_failure],
            "on_failure": [s.as_data() for s in specs if s.on_failure],
        }

    def record(self, request: Mapping[str, Any]) -> None:
        """An orchestrator decision about a step (a timeout) into its row and the log."""
        run_id, name, attempt = request["run_id"], request["step"], request["attempt"]
        status, error = request["status"], request.get("error")

        def mark(row: dict[str, Any]) -> dict[str, Any] | None:
            if row.get("attempt") != attempt or row.get("status") in STEP_TERMINAL:
                return None
            row.update(status=status, finished=now_iso(), error=error)
            return row

        self.runs.update_step(run_id, name, mark)
        self.log_writer.line(run_id, name, "system", f"✘ {name}: {error}")
        self.log_writer.flush(run_id)

    def finish(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The run's end: final step states, the run row, the log's last line, the workdir gone."""
        run_id, status = request["run_id"], request["status"]
        error = (request.get("error") or None) and str(request["error"])[:MAX_ERROR_CHARS]
        finished = now_iso()
        recorded = {row["RowKey"]: row.get("status") for row in self.runs.list_steps(run_id)}
        for name, (step_status, _attempt) in request.get("steps", {}).items():
            if recorded.get(name) == step_status:
                continue

            # The orchestrator's view is the run's truth: a timed-out attempt that finished late
            # stays timed out.
            def settle(row: dict[str, Any], step_status: str = step_status) -> dict[str, Any] | None:
                if row.get("status") == step_status:
                    return None
                row["status"] = step_status
                if step_status != "skipped" and not row.get("finished"):
                    row["finished"] = finished
                return row

            self.runs.update_step(run_id, name, settle)
        dropped = self.log_store.dropped(run_id)
        if dropped:
            self.log_writer.line(
                run_id, "", "system", f"[{dropped} log lines beyond the limit were not stored]"
            )
        self.log_writer.line(run_id, "", "system", f"● run {status}" + (f": {error}" if error else ""))
        self.log_writer.flush(run_id)

        def end(row: dict[str, Any]) -> dict[str, Any] | None:
            if row["status"] in RUN_TERMINAL:
                return None
            row.update(status=status, finished=finished, error=error)
            return row

        self.runs.update_run(run_id, end)
        shutil.rmtree(run_workdir(self._temp_dir, run_id), ignore_errors=True)
        return {"status": status}


EXAMPLE_SOURCE = Path(__file__).with_name("examples") / "hello.py"


def seed_example(workspace_dir: Path) -> bool:
    """Write ``workflows/hello.py`` into a workspace that is still empty; True if it did."""
    try:
        if not workspace_dir.is_dir() or any(workspace_dir.iterdir()):
            return False
        folder = workspace_dir / "workflows"
        folder.mkdir(exist_ok=True)
        target = folder / "hello.py"
        # O_EXCL: two workers starting together write it once, and a user's file is never replaced.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        log.warning("could not write the example workflow: %s", exc)
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(EXAMPLE_SOURCE.read_bytes())
    return True
