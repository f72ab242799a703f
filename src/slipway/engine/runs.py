"""Runs and their steps in Table storage.

A run is one row in ``SlipwayRuns`` (one partition, newest first: the row key inverts the
time in the run id) and one row per step in ``SlipwayRunSteps`` (partition = run id). Every
change is a conditional write, so a late or repeated writer never moves a run or a step
backwards.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slipway.adapters.tables import EntityNotFound, TableStore
from slipway.engine.errors import RunNotFound
from slipway.names import RUN_STEPS_TABLE, RUNS_TABLE

RUN_PARTITION = "run"
RUN_ID_PATTERN = re.compile(r"^[0-9a-f]{12}-[0-9a-f]{8}$")
_MAX_TIME = 0xFFFFFFFFFFFF

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED = "queued", "running", "succeeded", "failed", "canceled"
RUN_TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELED})
STEP_TERMINAL = frozenset({"succeeded", "failed", "timed_out", "skipped", "canceled"})
MAX_ERROR_CHARS = 4000


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id() -> str:
    """Time-ordered and unique: 12 hex digits of milliseconds, 8 random."""
    return f"{int(time.time() * 1000):012x}-{secrets.token_hex(4)}"


def _row_key(run_id: str) -> str:
    stamp, _, tail = run_id.partition("-")
    return f"{_MAX_TIME - int(stamp, 16):012x}-{tail}"


def valid_run_id(run_id: str) -> bool:
    return bool(RUN_ID_PATTERN.match(run_id))


@dataclass(frozen=True)
class StepSpec:
    """A step as the plan has it (what the orchestrator and the step rows need)."""

    name: str
    after: tuple[str, ...]
    attempts: int
    retry_delay: float
    timeout: float | None
    on_failure: bool
    # Why ``timeout`` is what it is when the step declared none: the host's limit.
    timeout_note: str | None = None

    def as_data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "after": list(self.after),
            "attempts": self.attempts,
            "retry_delay": self.retry_delay,
            "timeout": self.timeout,
            "on_failure": self.on_failure,
            "timeout_note": self.timeout_note,
        }


class RunStore:
    def __init__(self, tables: TableStore) -> None:
        self._tables = tables

    # ------------------------------------------------------------------------ runs

    def create_run(
        self,
        run_id: str,
        *,
        workflow: str,
        version: str,
        params: Mapping[str, Any],
        requested_by: str,
        snapshot: str = "",
        environment: str = "",
    ) -> dict[str, Any]:
        row = {
            "PartitionKey": RUN_PARTITION,
            "RowKey": _row_key(run_id),
            "run_id": run_id,
            "workflow": workflow,
            "version": version,
            # The workflows/ folder as it was queued (slipway.engine.snapshots) and the key of the
            # Python environment it was described in: every step of the run uses both.
            "snapshot": snapshot,
            "environment": environment,
            "params": json.dumps(params),
            "status": QUEUED,
            "requested_by": requested_by,
            "created": now_iso(),
            "cancel_requested": False,
        }
        if not self._tables.create_entity(RUNS_TABLE, row):
            raise RuntimeError(f"run id {run_id} exists already")
        return row

    def get_run(self, run_id: str) -> dict[str, Any]:
        if not valid_run_id(run_id):
            raise RunNotFound(f"no run has the id {run_id!r}")
        found = self._tables.get_entity(RUNS_TABLE, RUN_PARTITION, _row_key(run_id))
        if found is None:
            raise RunNotFound(f"no run has the id {run_id!r}")
        return found

    def update_run(
        self, run_id: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """Apply ``change`` to the run row until it lands; ``change`` returns the new row or
        None to leave it as it is. Returns the row written, or None when nothing was."""
        try:
            return self._tables.update_entity_with(RUNS_TABLE, RUN_PARTITION, _row_key(run_id), change)
        except EntityNotFound:
            raise RunNotFound(f"no run has the id {run_id!r}") from None

    def list_runs(
        self, *, workflow: str | None = None, statuses: tuple[str, ...] = (), limit: int = 50
    ) -> list[dict[str, Any]]:
        query = "PartitionKey eq @pk"
        parameters: dict[str, Any] = {"pk": RUN_PARTITION}
        if workflow is not None:
            query += " and workflow eq @workflow"
            parameters["workflow"] = workflow
        if statuses:
            # Spaces around parameters: the SDK finds them by splitting the filter on spaces.
            query += " and ( " + " or ".join(f"status eq @s{i}" for i in range(len(statuses))) + " )"
            parameters.update({f"s{i}": status for i, status in enumerate(statuses)})
        found = []
        for row in self._tables.query_entities(RUNS_TABLE, query, parameters=parameters, page_size=limit):
            found.append(row)
            if len(found) >= limit:
                break
        return found

    # ----------------------------------------------------------------------- steps

    def create_steps(self, run_id: str, steps: Iterable[StepSpec]) -> None:
        """One row per step, waiting; rows that exist (a replayed plan) are left alone."""
        rows = [
            {
                "PartitionKey": run_id,
                "RowKey": spec.name,
                "order": index,
                "kind": "on_failure" if spec.on_failure else "step",
                "after": json.dumps(list(spec.after)),
                "status": "waiting",
                "attempt": 0,
                "attempts": spec.attempts,
            }
            for index, spec in enumerate(steps)
        ]
        for start in range(0, len(rows), 100):
            chunk = rows[start : start + 100]
            if self._tables.transact(RUN_STEPS_TABLE, [("create", row, {}) for row in chunk]) is None:
                for row in chunk:
                    self._tables.create_entity(RUN_STEPS_TABLE, row)

    def list_steps(self, run_id: str) -> list[dict[str, Any]]:
        rows = list(
            self._tables.query_entities(RUN_STEPS_TABLE, "PartitionKey eq @pk", parameters={"pk": run_id})
        )
        return sorted(rows, key=lambda row: row.get("order", 0))

    def outputs(self, run_id: str, names: Iterable[str]) -> dict[str, Any]:
        wanted = set(names)
        if not wanted:
            return {}
        return {
            row["RowKey"]: json.loads(row["output"])
            for row in self.list_steps(run_id)
            if row["RowKey"] in wanted and row.get("status") == "succeeded" and "output" in row
        }

    def update_step(
        self, run_id: str, step: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> bool:
        """Conditionally apply ``change`` to a step row (None from ``change`` means leave it)."""
        try:
            return self._tables.update_entity_with(RUN_STEPS_TABLE, run_id, step, change) is not None
        except EntityNotFound:
            return False


def run_view(row: Mapping[str, Any], steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A run as the API shows it."""
    view: dict[str, Any] = {
        "id": row["run_id"],
        "workflow": row["workflow"],
        "version": row["version"],
        "params": json.loads(row.get("params") or "{}"),
        "status": row["status"],
        "requested_by": row.get("requested_by", ""),
        "created": row.get("created"),
        "started": row.get("started"),
        "finished": row.get("finished"),
        "duration_ms": _duration_ms(row.get("started"), row.get("finished")),
        "cancel_requested": bool(row.get("cancel_requested")),
        "error": row.get("error"),
    }
    if steps is not None:
        view["steps"] = [step_view(step) for step in steps]
    return view


def step_view(row: Mapping[str, Any]) -> dict[str, Any]:
    output = row.get("output")
    return {
        "name": row["RowKey"],
        "kind": row.get("kind", "step"),
        "after": json.loads(row.get("after") or "[]"),
        "status": row.get("status"),
        "attempt": row.get("attempt", 0),
        "attempts": row.get("attempts", 1),
        "started": row.get("started"),
        "finished": row.get("finished"),
        "duration_ms": row.get("duration_ms"),
        "error": row.get("error"),
        "output": json.loads(output) if output is not None else None,
    }


def _duration_ms(started: str | None, finished: str | None) -> int | None:
    if not started or not finished:
        return None
    begin = datetime.fromisoformat(started.replace("Z", "+00:00"))
    end = datetime.fromisoformat(finished.replace("Z", "+00:00"))
    return int((end - begin).total_seconds() * 1000)
