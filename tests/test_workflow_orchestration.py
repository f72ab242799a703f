"""The run orchestration through the real Durable replay code (every episode replayed from the
start): a DAG fanned out, outputs passed along, retries with doubling waits, on_failure."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from workflow_files import write_workflow

from slipway.bootstrap import Services, build_services
from slipway.config import load_settings
from slipway.functions.workflows import (
    _PROGRESS_BUDGET_BYTES,
    ORCHESTRATOR,
    STEP_ACTIVITY,
    workflows_blueprint,
)
from slipway.local.durable import DurableHarness, VirtualClock
from slipway.local.durable_history import HistoryEventType

DAG = """
    import time
    from slipway.sdk import Param, Workflow

    workflow = Workflow(params={"word": Param(str, default="ship")})


    def gate(ctx, me, other):
        # Wait (up to 20 s) for the other step to arrive too: each step is its own process.
        (ctx.workdir / me).touch()
        deadline = time.monotonic() + 20
        while not (ctx.workdir / other).exists():
            assert time.monotonic() < deadline, f"{other} never ran alongside {me}"
            time.sleep(0.02)

    @workflow.step()
    def fetch(ctx):
        return {"word": ctx.params["word"]}

    # left and right only run after fetch, and wait for each other: they must run together.
    @workflow.step(after=[fetch])
    def left(ctx, fetch):
        gate(ctx, "left", "right")
        return fetch["word"].upper()

    @workflow.step(after=[fetch])
    def right(ctx, fetch):
        gate(ctx, "right", "left")
        return fetch["word"][::-1]

    @workflow.step(after=[left, right])
    def join(ctx, left, right):
        print(f"joining {left} and {right}")
        return f"{left}-{right}"
"""

FLAKY = """
    from slipway.sdk import Workflow

    workflow = Workflow()

    @workflow.step(retries=3, retry_delay=2)
    def flaky(ctx):
        if ctx.attempt < 3:
            raise ConnectionError(f"attempt {ctx.attempt}: the network blinked")
        return "third time lucky"
"""

DOOMED = """
    from slipway.sdk import Workflow

    workflow = Workflow()

    @workflow.step()
    def prepare(ctx):
        return "prepared"

    @workflow.step(after=[prepare], retries=1, retry_delay=5)
    def publish(ctx, prepare):
        raise RuntimeError("the registry said no")

    @workflow.step(after=[publish])
    def announce(ctx, publish):
        return "never"

    @workflow.on_failure
    def roll_back(ctx):
        print(f"rolling back after {ctx.failure['step']}: {ctx.failure['error']}; had {sorted(ctx.outputs)}")
        return "rolled back"
"""


@dataclass
class Engine:
    services: Services
    harness: DurableHarness

    @classmethod
    def of(cls, services: Services) -> Engine:
        """The workflow bindings of ``services`` on a harness with a virtual clock."""
        app = func.FunctionApp()
        app.register_functions(workflows_blueprint(services))
        return cls(services, DurableHarness(app, clock=VirtualClock()))

    def run(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        run = self.services.workflows.start_run(name, params or {}, "test")
        self.harness.start_new(ORCHESTRATOR, run["id"], {"run_id": run["id"]})
        asyncio.run(self.harness.run_until_idle())
        status = self.harness.get_status(run["id"])
        assert status is not None and status["runtimeStatus"] == "Completed", status
        return self.services.workflows.get_run(run["id"])

    def steps(self, run: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {step["name"]: step for step in run["steps"]}

    def log_text(self, run: dict[str, Any]) -> str:
        return "\n".join(
            line["text"] for line in self.services.workflows.read_logs(run["id"], 0, 1000)["lines"]
        )


@pytest.fixture
def engine(base_env: dict[str, str]) -> Iterator[Engine]:
    yield Engine.of(build_services(load_settings(base_env)))


def _workspace(engine: Engine) -> Path:
    return engine.services.settings.workspace_dir


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_independent_steps_run_in_parallel_and_outputs_reach_their_dependants(engine: Engine) -> None:
    name = _unique("dag")
    write_workflow(_workspace(engine), name, DAG)
    run = engine.run(name, {"word": "slip"})
    assert run["status"] == "succeeded"
    steps = engine.steps(run)
    assert {n: s["status"] for n, s in steps.items()} == dict.fromkeys(
        ["fetch", "left", "right", "join"], "succeeded"
    )
    assert steps["join"]["output"] == "SLIP-pils"
    assert steps["fetch"]["output"] == {"word": "slip"}
    assert "joining SLIP and pils" in engine.log_text(run)
    # Fan-out as the history shows it: both branches scheduled before either completed.
    history = engine.harness.history(run["id"])
    kinds = [
        e["EventType"]
        for e in history
        if e["EventType"] in (HistoryEventType.TASK_SCHEDULED, HistoryEventType.TASK_COMPLETED)
    ]
    scheduled = [
        e for e in history if e["EventType"] == HistoryEventType.TASK_SCHEDULED and e["Name"] == STEP_ACTIVITY
    ]
    assert len(scheduled) == 4
    # Each step attempt is raced by its timeout's timer, so timers sit between the two.
    second_step = history.index(scheduled[1])
    first_done = next(
        i
        for i, e in enumerate(history)
        if i > second_step and e["EventType"] == HistoryEventType.TASK_COMPLETED
    )
    assert history.index(scheduled[2]) < first_done
    assert kinds.count(HistoryEventType.TASK_COMPLETED) == kinds.count(HistoryEventType.TASK_SCHEDULED)


def test_a_flaky_step_succeeds_on_its_third_attempt_after_doubling_waits(engine: Engine) -> None:
    name = _unique("flaky")
    write_workflow(_workspace(engine), name, FLAKY)
    run = engine.run(name)
    assert run["status"] == "succeeded"
    step = engine.steps(run)["flaky"]
    assert (step["status"], step["attempt"], step["attempts"], step["output"]) == (
        "succeeded",
        3,
        4,
        "third time lucky",
    )
    log = engine.log_text(run)
    assert "attempt 1: the network blinked" in log and "attempt 2: the network blinked" in log
    assert "flaky (attempt 3 of 4)" in log
    timers = [
        e for e in engine.harness.history(run["id"]) if e["EventType"] == HistoryEventType.TIMER_CREATED
    ]
    waits = [round((_parse(t["FireAt"]) - _parse(t["Timestamp"])).total_seconds()) for t in timers]
    # Each attempt is raced by its timeout's timer (no timeout of its own: the repository's
    # host.json allows 3480 s); between attempts, the doubling waits.
    assert waits == [3480, 2, 3480, 4, 3480]


def test_a_step_that_fails_for_good_runs_on_failure_and_skips_what_depended_on_it(engine: Engine) -> None:
    name = _unique("doomed")
    write_workflow(_workspace(engine), name, DOOMED)
    run = engine.run(name)
    assert run["status"] == "failed"
    assert run["error"] == "step publish failed: RuntimeError: the registry said no"
    steps = engine.steps(run)
    assert {n: (s["status"], s["attempt"]) for n, s in steps.items()} == {
        "prepare": ("succeeded", 1),
        "publish": ("failed", 2),
        "announce": ("skipped", 0),
        "roll_back": ("succeeded", 1),
    }
    assert steps["roll_back"]["kind"] == "on_failure"
    assert (
        "rolling back after publish: RuntimeError: the registry said no; had ['prepare']"
        in engine.log_text(run)
    )
    assert 'raise RuntimeError("the registry said no")' in engine.log_text(run)  # the traceback, in the log


def test_a_run_whose_workflow_file_changed_after_queueing_runs_the_pinned_version(engine: Engine) -> None:
    name = _unique("pinned")
    path = write_workflow(
        _workspace(engine),
        name,
        "from slipway.sdk import Workflow\nworkflow = Workflow()\n\n@workflow.step()\ndef v(ctx):\n    return 1\n",
    )
    run = engine.services.workflows.start_run(name, {}, "test")
    path.write_text(path.read_text().replace("return 1", "return 2"))
    engine.harness.start_new(ORCHESTRATOR, run["id"], {"run_id": run["id"]})
    asyncio.run(engine.harness.run_until_idle())
    assert engine.steps(engine.services.workflows.get_run(run["id"]))["v"]["output"] == 1
    assert engine.steps(engine.run(name))["v"]["output"] == 2


def test_the_orchestration_replays_deterministically_from_the_start_of_every_episode(engine: Engine) -> None:
    """The harness replays the whole history each episode and fails the instance on any
    difference between the actions replayed and those recorded; a clean finish across many
    episodes is the proof."""
    name = _unique("replayed")
    write_workflow(_workspace(engine), name, DOOMED)
    run = engine.run(name)
    history = engine.harness.history(run["id"])
    episodes = sum(1 for e in history if e["EventType"] == HistoryEventType.ORCHESTRATOR_STARTED)
    assert episodes >= 6
    assert not [e for e in history if e["EventType"] == HistoryEventType.EXECUTION_TERMINATED]
    completed = [e for e in history if e["EventType"] == HistoryEventType.EXECUTION_COMPLETED]
    assert len(completed) == 1 and '"failed"' in completed[0]["Result"]


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _many_steps(names: list[str]) -> str:
    """A workflow of independent steps with these names (Python identifiers, any script)."""
    steps = "".join(f"\n@workflow.step()\ndef {name}(ctx):\n    return 1\n" for name in names)
    return "from slipway.sdk import Workflow\n\nworkflow = Workflow()\n" + steps


def _padded_names(count: int, width: int, script: str = "x") -> list[str]:
    return [f"s{i:03d}_" + script * (width - 5) for i in range(count)]


def _final_status_bytes(names: list[str]) -> int:
    """UTF-16 bytes of the run's per-step status once every step succeeded, written compactly
    with ASCII names (as the extension rewrites it before measuring)."""
    steps = {name: ["succeeded", 1] for name in names}
    return 2 * len(json.dumps({"status": "running", "steps": steps}, separators=(",", ":")))


def _with_final_size(names: list[str], size: int) -> list[str]:
    """``names``, lengthened evenly, so that the final per-step status is ``size`` bytes."""
    missing = size - _final_status_bytes(names)
    assert missing >= 0 and missing % 2 == 0
    share, rest = divmod(missing // 2, len(names))
    return [name + "x" * (share + (i < rest)) for i, name in enumerate(names)]


def test_a_plan_whose_per_step_status_fits_the_budget_reports_every_step(engine: Engine) -> None:
    name = _unique("fits")
    steps = _with_final_size(_padded_names(20, 300), _PROGRESS_BUDGET_BYTES)
    write_workflow(_workspace(engine), name, _many_steps(steps))
    run = engine.run(name)
    assert run["status"] == "succeeded"
    status = engine.harness.get_status(run["id"])["customStatus"]
    assert status["status"] == "succeeded"
    assert status["steps"] == {step: ["succeeded", 1] for step in steps}


def test_a_plan_whose_per_step_status_is_over_the_budget_reports_counts(engine: Engine) -> None:
    name = _unique("counts")
    steps = _with_final_size(_padded_names(20, 300), _PROGRESS_BUDGET_BYTES + 2)
    write_workflow(_workspace(engine), name, _many_steps(steps))
    run = engine.run(name)
    assert run["status"] == "succeeded"
    assert engine.harness.get_status(run["id"])["customStatus"] == {
        "status": "succeeded",
        "counts": {"succeeded": 20},
    }


def test_a_run_of_150_steps_with_long_names_completes_and_reports_counts(engine: Engine) -> None:
    # 150 names of 60 characters: about 23 KB of UTF-16 per-step status, over the 16 KB the
    # extension allows (though under 12,000 characters of json.dumps while the steps wait).
    names = _padded_names(150, 60)
    name = _unique("long")
    write_workflow(_workspace(engine), name, _many_steps(names))
    run = engine.run(name)
    assert run["status"] == "succeeded"
    assert {step["name"] for step in run["steps"]} == set(names)
    assert engine.harness.get_status(run["id"])["customStatus"] == {
        "status": "succeeded",
        "counts": {"succeeded": 150},
    }


def test_cjk_step_names_count_as_the_extension_measures_them(engine: Engine) -> None:
    # 40 names of 60 CJK characters, half of them outside the BMP (two UTF-16 units each): about
    # 8 KB as the extension measures it, though json.dumps escapes each character as \uXXXX.
    names = _padded_names(20, 60, "步") + [f"t{i:03d}_" + "\U00020000" * 55 for i in range(20)]
    name = _unique("cjk")
    write_workflow(_workspace(engine), name, _many_steps(names))
    run = engine.run(name)
    assert run["status"] == "succeeded"
    status = engine.harness.get_status(run["id"])["customStatus"]
    assert status["steps"] == {step: ["succeeded", 1] for step in names}
