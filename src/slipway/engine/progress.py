"""The state of a run's plan as the orchestrator walks it: pure data, no I/O, no clock.

The orchestrator replays from the start at every episode, so everything here is a function
of the plan and the results it was given, in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MAX_RETRY_DELAY_SECONDS = 3600.0


def retry_delay(base: float, attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): doubling, capped at an hour."""
    return min(base * (2 ** (attempt - 1)), MAX_RETRY_DELAY_SECONDS)


class PlanWalk:
    """Which steps may start, and what a result means (done, retry later, failed for good).

    ``sequential`` walks run one step at a time in plan order and keep going after a failure
    (the ``on_failure`` handlers); otherwise steps start as soon as what they run after has
    succeeded, and a step that fails for good stops new steps from starting.
    """

    def __init__(self, steps: Sequence[Mapping[str, Any]], *, sequential: bool = False) -> None:
        self.specs = {spec["name"]: spec for spec in steps}
        self.sequential = sequential
        self.state: dict[str, dict[str, Any]] = {
            name: {"status": "waiting", "attempt": 0} for name in self.specs
        }
        self.failure: dict[str, str] | None = None

    @property
    def stopped(self) -> bool:
        return self.failure is not None and not self.sequential

    def ready(self) -> list[str]:
        if self.stopped:
            return []
        if self.sequential:
            if any(s["status"] in ("running", "retrying") for s in self.state.values()):
                return []
            waiting = [name for name, s in self.state.items() if s["status"] == "waiting"]
            return waiting[:1]
        return [
            name
            for name, spec in self.specs.items()
            if self.state[name]["status"] == "waiting"
            and all(self.state[dep]["status"] == "succeeded" for dep in spec["after"])
        ]

    def start(self, name: str) -> int:
        state = self.state[name]
        state["status"] = "running"
        state["attempt"] += 1
        return int(state["attempt"])

    def succeeded(self, name: str) -> None:
        self.state[name]["status"] = "succeeded"

    def attempt_failed(self, name: str, error: str, *, timed_out: bool = False) -> float | None:
        """Record a failed attempt; the delay before the next one, or None if it failed for good."""
        state = self.state[name]
        spec = self.specs[name]
        if state["attempt"] < spec["attempts"]:
            state["status"] = "retrying"
            return retry_delay(spec["retry_delay"], state["attempt"])
        state["status"] = "timed_out" if timed_out else "failed"
        state["error"] = error
        if self.failure is None:
            self.failure = {"step": name, "error": error}
        return None

    def finish_unstarted(self, status: str) -> None:
        """Mark what never ran (``skipped``), or everything unfinished (``canceled``)."""
        for state in self.state.values():
            if state["status"] == "waiting" or (
                status == "canceled" and state["status"] in ("running", "retrying")
            ):
                state["status"] = status

    def summary(self) -> dict[str, Any]:
        return {name: [state["status"], state["attempt"]] for name, state in self.state.items()}
