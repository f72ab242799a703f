"""The local Durable harness runs real orchestrators through the real SDK replay code.

Every test drives the orchestrators in ``durable_fixtures`` through ``DurableHarness`` and
checks what a user would see (status, output, custom status) and what Azure would have
recorded (the history: sequence numbers, timer due times, retries).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import durable_fixtures as fx
import pytest

from slipway.local.durable import (
    DurableHarness,
    InstanceAlreadyRunningError,
    InstanceGoneError,
    InvalidInstanceIdError,
    OrchestratorNotFoundError,
    SystemClock,
    VirtualClock,
)
from slipway.local.durable_history import HistoryEventType, parse_timestamp

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_probes() -> Iterator[None]:
    fx.PROBES.reset()
    yield
    # Never leave a blocked activity thread behind for the next test.
    fx.PROBES.release.set()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
def harness(clock: VirtualClock) -> DurableHarness:
    return DurableHarness(fx.app, clock=clock)


def drive(harness: DurableHarness) -> None:
    asyncio.run(asyncio.wait_for(harness.run_until_idle(), timeout=20))


def status_of(harness: DurableHarness, instance_id: str) -> dict[str, Any]:
    status = harness.get_status(instance_id)
    assert status is not None
    return status


def events(harness: DurableHarness, instance_id: str, kind: HistoryEventType) -> list[dict[str, Any]]:
    return [item for item in harness.history(instance_id) if item["EventType"] == kind]


def timer_delays(harness: DurableHarness, instance_id: str) -> list[timedelta]:
    """For each TimerCreated: how far after its episode started the timer was set to fire."""
    delays = []
    episode_start = None
    for item in harness.history(instance_id):
        if item["EventType"] == HistoryEventType.ORCHESTRATOR_STARTED:
            episode_start = parse_timestamp(item["Timestamp"])
        elif item["EventType"] == HistoryEventType.TIMER_CREATED:
            assert episode_start is not None
            delays.append(parse_timestamp(item["FireAt"]) - episode_start)
    return delays


def sequence_ids(harness: DurableHarness, instance_id: str) -> list[int]:
    kinds = {
        HistoryEventType.TASK_SCHEDULED,
        HistoryEventType.TIMER_CREATED,
        HistoryEventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
    }
    return [item["EventId"] for item in harness.history(instance_id) if item["EventType"] in kinds]


# --------------------------------------------------------------------------- activities


def test_chained_activities_pass_each_output_to_the_next(harness: DurableHarness) -> None:
    instance_id = harness.start_new("chain", input="A")
    drive(harness)

    status = status_of(harness, instance_id)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == {"letters": "ABCD", "doubled_length": 8}
    # The status shows the input as the JSON text the client sent, as Azure does.
    assert status["input"] == '"A"'
    scheduled = events(harness, instance_id, HistoryEventType.TASK_SCHEDULED)
    assert [(item["EventId"], item["Name"]) for item in scheduled] == [
        (0, "append_letter"),
        (1, "append_letter"),
        (2, "append_letter"),
        (3, "async_double"),
    ]


def test_fan_out_runs_sync_activities_at_the_same_time_and_fans_in_in_order(clock: VirtualClock) -> None:
    harness = DurableHarness(fx.app, clock=clock, max_parallel_activities=6)
    # Each activity waits until all six are inside: they can only all return if they overlap.
    fx.PROBES.barrier = threading.Barrier(6, timeout=5)
    instance_id = harness.start_new("fan_out", input=6)
    drive(harness)

    status = status_of(harness, instance_id)
    assert status["runtimeStatus"] == "Completed", status["output"]
    assert [item["index"] for item in status["output"]] == [0, 1, 2, 3, 4, 5]
    assert len({item["thread"] for item in status["output"]}) == 6


def test_fan_out_never_runs_more_activities_at_once_than_allowed(clock: VirtualClock) -> None:
    harness = DurableHarness(fx.app, clock=clock, max_parallel_activities=2)
    instance_id = harness.start_new("fan_out_tracked", input=6)
    drive(harness)

    assert status_of(harness, instance_id)["output"] == [0, 1, 2, 3, 4, 5]
    assert fx.PROBES.peak == 2


# --------------------------------------------------------------------------- retries


def test_retry_succeeds_after_failed_attempts_waiting_the_interval_between_them(
    harness: DurableHarness, clock: VirtualClock
) -> None:
    instance_id = harness.start_new("retry_until_success", input={"key": "upload", "failures": 2})
    drive(harness)

    status = status_of(harness, instance_id)
    assert status["output"] == "upload succeeded on attempt 3"
    assert len(events(harness, instance_id, HistoryEventType.TASK_SCHEDULED)) == 3
    assert timer_delays(harness, instance_id) == [timedelta(minutes=1), timedelta(minutes=1)]
    # Two minutes of retry delay passed in virtual time only.
    assert clock.now() == START + timedelta(minutes=2)


def test_retry_backoff_doubles_the_delay_and_the_last_failure_reaches_the_orchestrator(
    harness: DurableHarness,
) -> None:
    job = {"key": "deploy", "failures": 99}
    instance_id = harness.start_new("retry_with_backoff", input={"attempts": 4, "job": job})
    drive(harness)

    output = status_of(harness, instance_id)["output"]
    assert output["gave_up"].startswith(
        "Activity function 'flaky' failed: ConnectionError: attempt 4 of deploy failed"
    )
    assert len(events(harness, instance_id, HistoryEventType.TASK_SCHEDULED)) == 4
    # 1 s, 2 s, 4 s between attempts, then the timer DTFx still schedules after the last one.
    assert timer_delays(harness, instance_id) == [
        timedelta(seconds=1),
        timedelta(seconds=2),
        timedelta(seconds=4),
        timedelta(0),
    ]


def test_retry_backoff_is_capped_by_the_maximum_interval(harness: DurableHarness) -> None:
    settings = {"attempts": 5, "max_interval_ms": 3000, "job": {"key": "k", "failures": 99}}
    instance_id = harness.start_new("retry_with_backoff", input=settings)
    drive(harness)

    assert "gave_up" in status_of(harness, instance_id)["output"]
    assert timer_delays(harness, instance_id) == [timedelta(seconds=s) for s in (1, 2, 3, 3, 0)]


def test_retry_timeout_stops_running_attempts_and_the_last_real_failure_reaches_the_orchestrator(
    harness: DurableHarness,
) -> None:
    settings = {"attempts": 5, "timeout_ms": 2500, "job": {"key": "k", "failures": 99}}
    instance_id = harness.start_new("retry_with_backoff", input=settings)
    drive(harness)

    # Attempts at 0 s, 1 s and 3 s; by then the 2.5 s timeout has passed, so the SDK's
    # remaining attempts are recorded as failed without running the activity again.
    assert fx.PROBES.attempts["k"] == 3
    assert "attempt 3 of k failed" in status_of(harness, instance_id)["output"]["gave_up"]
    assert len(events(harness, instance_id, HistoryEventType.TASK_SCHEDULED)) == 5
    assert timer_delays(harness, instance_id) == [timedelta(seconds=s) for s in (1, 2, 0, 0, 0)]


def test_retries_mixed_with_plain_activities_and_timers_keep_sequence_numbers_in_step(
    harness: DurableHarness,
) -> None:
    instance_id = harness.start_new("retries_in_fan_out")
    drive(harness)

    status = status_of(harness, instance_id)
    assert status["runtimeStatus"] == "Completed", status["output"]
    assert status["output"] == [
        "left succeeded on attempt 3",
        "middle",
        "right succeeded on attempt 2",
        "last succeeded on attempt 4",
    ]
    ids = sequence_ids(harness, instance_id)
    assert sorted(ids) == list(range(len(ids)))


def test_retry_timer_and_user_timer_firing_together_take_sequence_numbers_in_sdk_order(
    harness: DurableHarness,
) -> None:
    instance_id = harness.start_new("retry_timer_meets_user_timer")
    drive(harness)

    status = status_of(harness, instance_id)
    assert status["output"] == ["after the timer", "sync succeeded on attempt 2"]
    scheduled = events(harness, instance_id, HistoryEventType.TASK_SCHEDULED)
    assert [(item["EventId"], item["Name"]) for item in scheduled] == [
        (0, "flaky"),
        (3, "echo"),
        (4, "flaky"),
    ]


# --------------------------------------------------------------------------- failures


def test_activity_failure_caught_by_the_orchestrator_lets_it_complete_with_a_fallback(
    harness: DurableHarness,
) -> None:
    instance_id = harness.start_new("fallback_on_failure")
    drive(harness)

    status = status_of(harness, instance_id)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"]["result"] == "fallback"
    # The SDK hands over a plain Exception("<Reason> \n <Details>"), not the activity's ValueError.
    reason, details = status["output"]["error"].split(" \n ", 1)
    assert reason == "Activity function 'explode' failed: ValueError: disk full"
    assert "Traceback" in details
    assert "in explode\n    raise ValueError(message)" in details


def test_uncaught_activity_failure_fails_the_instance_with_its_message(harness: DurableHarness) -> None:
    instance_id = harness.start_new("uncaught_failure")
    drive(harness)

    status = status_of(harness, instance_id)
    assert status["runtimeStatus"] == "Failed"
    assert status["output"].startswith(
        "Orchestrator function 'uncaught_failure' failed: "
        "Activity function 'explode' failed: ValueError: no route to host"
    )


def test_calling_an_activity_that_does_not_exist_fails_that_call_with_a_clear_reason(
    harness: DurableHarness,
) -> None:
    instance_id = harness.start_new("calls_missing_activity")
    drive(harness)

    output = status_of(harness, instance_id)["output"]
    assert output.startswith(
        "Activity function 'no_such_activity' failed: Activity function 'no_such_activity' does not exist."
    )
    assert "'append_letter'" in output


def test_actions_the_harness_cannot_run_fail_the_instance_instead_of_hanging(harness: DurableHarness) -> None:
    instance_id = harness.start_new("durable_http_call")
    drive(harness)

    status = status_of(harness, instance_id)
    assert status["runtimeStatus"] == "Failed"
    assert status["output"] == (
        "Orchestrator function 'durable_http_call' failed: "
        "The local durable harness does not support the action of type CALL_HTTP."
    )


# --------------------------------------------------------------------------- timers


def test_timer_that_lost_the_race_is_canceled_and_does_not_keep_the_instance_open(
    harness: DurableHarness, clock: VirtualClock
) -> None:
    instance_id = harness.start_new("activity_races_timer")
    drive(harness)

    assert status_of(harness, instance_id)["output"] == "work done"
    assert len(events(harness, instance_id, HistoryEventType.TIMER_CREATED)) == 1
    assert events(harness, instance_id, HistoryEventType.TIMER_FIRED) == []
    assert clock.now() == START


def test_timer_wins_when_the_awaited_event_never_comes(harness: DurableHarness) -> None:
    instance_id = harness.start_new("approval_or_timeout")
    drive(harness)

    output = status_of(harness, instance_id)["output"]
    assert output["approved"] is None
    assert datetime.fromisoformat(output["timed_out_at"]) == START + timedelta(minutes=30)
    fired = events(harness, instance_id, HistoryEventType.TIMER_FIRED)
    assert [parse_timestamp(item["FireAt"]) for item in fired] == [START + timedelta(minutes=30)]


def test_timer_beats_a_slow_activity_in_real_time() -> None:
    harness = DurableHarness(fx.app, clock=SystemClock())

    async def scenario() -> dict[str, Any]:
        driver = asyncio.create_task(harness.run_until_idle())
        instance_id = harness.start_new("real_time_race")
        status = await harness.wait_for_status(instance_id, timeout=5)
        # Only now let the slow activity finish; its late result must change nothing.
        fx.PROBES.release.set()
        await asyncio.wait_for(driver, timeout=5)
        return status_of(harness, instance_id) | {"before_release": status}

    status = asyncio.run(scenario())
    assert status["before_release"]["output"] == "timer"
    assert status["output"] == "timer"
    assert status["runtimeStatus"] == "Completed"


def test_timers_longer_than_the_storage_limit_are_split_and_still_fire_on_time(
    harness: DurableHarness,
) -> None:
    instance_id = harness.start_new("long_sleep")
    drive(harness)

    status = status_of(harness, instance_id)
    assert datetime.fromisoformat(status["output"]) == START + timedelta(days=10)
    created = events(harness, instance_id, HistoryEventType.TIMER_CREATED)
    assert [parse_timestamp(item["FireAt"]) - START for item in created] == [
        timedelta(days=3),
        timedelta(days=6),
        timedelta(days=10),
    ]


# --------------------------------------------------------------------------- sub-orchestrations


def test_sub_orchestrations_return_their_output_under_given_and_generated_ids(
    harness: DurableHarness,
) -> None:
    instance_id = harness.start_new("parent", input={"child_id": "child-1"})
    drive(harness)

    assert status_of(harness, instance_id)["output"] == {
        "named": {"letters": "ABCD", "doubled_length": 8},
        "unnamed": {"letters": "XYZ[", "doubled_length": 8},
    }
    created = events(harness, instance_id, HistoryEventType.SUB_ORCHESTRATION_INSTANCE_CREATED)
    execution_id = harness.history(instance_id)[1]["OrchestrationInstance"]["ExecutionId"]
    # DTFx names an unnamed child "<parent execution id>:<sequence number>".
    assert [item["InstanceId"] for item in created] == ["child-1", f"{execution_id}:1"]
    for item in created:
        child = status_of(harness, item["InstanceId"])
        assert (child["name"], child["runtimeStatus"]) == ("chain", "Completed")


def test_failing_sub_orchestration_reaches_the_parent_as_an_exception(harness: DurableHarness) -> None:
    instance_id = harness.start_new("parent_of_failing_child")
    drive(harness)

    status = status_of(harness, instance_id)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"]["child_failed"].startswith(
        "Orchestrator function 'uncaught_failure' failed: "
        "Activity function 'explode' failed: ValueError: no route to host"
    )


def test_sub_orchestration_retry_starts_a_new_child_for_each_attempt(harness: DurableHarness) -> None:
    instance_id = harness.start_new("parent_retrying_child")
    drive(harness)

    assert status_of(harness, instance_id)["output"] == "child succeeded on attempt 3"
    children = [
        item["InstanceId"]
        for item in events(harness, instance_id, HistoryEventType.SUB_ORCHESTRATION_INSTANCE_CREATED)
    ]
    assert len(set(children)) == 3
    assert [status_of(harness, child)["runtimeStatus"] for child in children] == [
        "Failed",
        "Failed",
        "Completed",
    ]
    assert timer_delays(harness, instance_id) == [timedelta(seconds=2), timedelta(seconds=2)]


# --------------------------------------------------------------------------- events and status


def test_event_raised_while_waiting_resumes_the_orchestrator_and_custom_status_follows(
    harness: DurableHarness,
) -> None:
    instance_id = harness.start_new("wait_for_approval")
    drive(harness)
    waiting = status_of(harness, instance_id)
    assert waiting["runtimeStatus"] == "Running"
    assert waiting["customStatus"] == {"stage": "waiting for approval"}

    harness.raise_event(instance_id, "approval", {"by": "ana"})
    drive(harness)

    done = status_of(harness, instance_id)
    assert done["runtimeStatus"] == "Completed"
    assert done["customStatus"] == {"stage": "done"}
    # The SDK client sends the data JSON-encoded and the extension keeps it as a string, so
    # the orchestrator receives JSON text (azure-functions-durable-python#295).
    assert json.loads(done["output"]["decision"]) == {"by": "ana"}


def test_event_raised_before_the_orchestrator_waits_for_it_is_kept_until_it_does(
    harness: DurableHarness,
) -> None:
    instance_id = harness.start_new("wait_for_approval")
    harness.raise_event(instance_id, "approval", "yes")
    drive(harness)

    status = status_of(harness, instance_id)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == {"warm": "warm", "decision": '"yes"'}


def test_event_arriving_before_the_timeout_cancels_the_timer(
    harness: DurableHarness, clock: VirtualClock
) -> None:
    instance_id = harness.start_new("approval_or_timeout")
    harness.raise_event(instance_id, "approval", True)
    drive(harness)

    assert status_of(harness, instance_id)["output"] == {"approved": "true"}
    assert clock.now() == START


def _status_of_utf16_bytes(size: int, char: str = "x") -> dict[str, str]:
    """``{"log": "xx…"}`` whose compact JSON is ``size`` bytes of UTF-16 (``char`` is one code
    unit, or two for a character outside the BMP)."""
    units = len(char.encode("utf-16-le")) // 2
    count, rest = divmod(size // 2 - len('{"log":""}'), units)
    assert rest == 0
    return {"log": char * count}


def test_custom_status_over_16_kb_fails_the_orchestration_as_in_azure(harness: DurableHarness) -> None:
    # MessagePayloadDataConverter compares the whole kilobytes, rounded down, with 16: a status
    # of 16,384 bytes passes, so does one of 17,406 (16 KB and 1,022 bytes); 17,408 bytes fail.
    exact = harness.start_new("oversized_status", input=_status_of_utf16_bytes(16_384))
    rounded_down = harness.start_new("oversized_status", input=_status_of_utf16_bytes(17_406))
    large = harness.start_new("oversized_status", input=_status_of_utf16_bytes(17_408))
    drive(harness)

    for instance_id, size in ((exact, 16_384), (rounded_down, 17_406)):
        status = status_of(harness, instance_id)
        assert (status["runtimeStatus"], status["customStatus"]) == (
            "Completed",
            _status_of_utf16_bytes(size),
        )
    status = status_of(harness, large)
    assert status["runtimeStatus"] == "Failed"
    assert status["output"] == (
        "Orchestrator function 'oversized_status' failed: The UTF-16 size of the JSON-serialized "
        "payload must not exceed 16 KB. The current payload size is 17 KB."
    )
    assert events(harness, large, HistoryEventType.TASK_SCHEDULED) == []


def test_custom_status_size_counts_non_ascii_as_the_extension_writes_it(harness: DurableHarness) -> None:
    """The SDK sends "\\u6b65" for 步, but the extension measures its own compact rewrite, which
    keeps the character: one UTF-16 unit for CJK, two for a character outside the BMP, while
    U+2028 stays escaped (six units)."""
    cjk = harness.start_new("oversized_status", input=_status_of_utf16_bytes(17_406, "步"))
    astral = harness.start_new("oversized_status", input=_status_of_utf16_bytes(17_404, "\U00020000"))
    astral_over = harness.start_new("oversized_status", input=_status_of_utf16_bytes(17_408, "\U00020000"))
    separators = harness.start_new("oversized_status", input={"log": "\u2028" * 1450})  # 17,420 bytes
    drive(harness)

    assert status_of(harness, cjk)["runtimeStatus"] == "Completed"
    assert status_of(harness, astral)["runtimeStatus"] == "Completed"
    assert status_of(harness, astral_over)["runtimeStatus"] == "Failed"
    assert status_of(harness, separators)["runtimeStatus"] == "Failed"


def test_continue_as_new_runs_generations_with_fresh_histories_until_done(harness: DurableHarness) -> None:
    instance_id = harness.start_new("counter", input={"count": 0, "stop_at": 5})
    drive(harness)

    status = status_of(harness, instance_id)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == {"count": 5, "stop_at": 5}
    history = harness.history(instance_id)
    # Only the last generation is left: it started with count 5 and scheduled nothing.
    assert json.loads(json.loads(history[1]["Input"])) == {"count": 5, "stop_at": 5}
    assert events(harness, instance_id, HistoryEventType.TASK_SCHEDULED) == []


def test_terminating_a_waiting_instance_ends_it_with_the_reason(harness: DurableHarness) -> None:
    instance_id = harness.start_new("wait_for_approval")
    drive(harness)

    harness.terminate(instance_id, "no longer needed")
    drive(harness)

    status = status_of(harness, instance_id)
    assert (status["runtimeStatus"], status["output"]) == ("Terminated", "no longer needed")
    assert status["customStatus"] == {"stage": "waiting for approval"}
    with pytest.raises(InstanceGoneError):
        harness.raise_event(instance_id, "approval", "too late")
    with pytest.raises(InstanceGoneError):
        harness.terminate(instance_id, "again")


def test_terminating_while_an_activity_runs_drops_its_late_result(clock: VirtualClock) -> None:
    harness = DurableHarness(fx.app, clock=clock)

    async def scenario() -> str:
        driver = asyncio.create_task(harness.run_until_idle())
        instance_id = harness.start_new("blocked_on_activity")
        await harness.wait_for_status(instance_id, timeout=5, statuses={"Running"})
        harness.terminate(instance_id, "stop")
        await harness.wait_for_status(instance_id, timeout=5)
        fx.PROBES.release.set()
        await asyncio.wait_for(driver, timeout=5)
        return instance_id

    instance_id = asyncio.run(scenario())
    assert status_of(harness, instance_id)["runtimeStatus"] == "Terminated"
    assert events(harness, instance_id, HistoryEventType.TASK_COMPLETED) == []


# --------------------------------------------------------------------------- determinism


def test_orchestrator_deciding_by_the_wall_clock_fails_as_non_deterministic() -> None:
    harness = DurableHarness(fx.app, clock=SystemClock())
    deadline = datetime.now(UTC) + timedelta(milliseconds=300)
    instance_id = harness.start_new("deadline_by_wall_clock", input={"deadline": deadline.isoformat()})
    drive(harness)

    status = status_of(harness, instance_id)
    assert status["runtimeStatus"] == "Failed"
    assert status["output"].startswith(
        "Non-Deterministic workflow detected: A previous execution of this orchestration scheduled an "
        "activity task with sequence number 0 named 'sleep_past', but the current orchestration replay "
        "instead scheduled an activity task named 'echo' with this sequence number."
    )


def test_same_decision_made_with_the_orchestration_clock_replays_consistently() -> None:
    harness = DurableHarness(fx.app, clock=SystemClock())
    deadline = datetime.now(UTC) + timedelta(milliseconds=300)
    instance_id = harness.start_new(
        "deadline_by_orchestration_clock", input={"deadline": deadline.isoformat()}
    )
    drive(harness)

    status = status_of(harness, instance_id)
    assert status["runtimeStatus"] == "Completed", status["output"]
    assert status["output"]["slow"] is True
    assert status["output"]["first"] == deadline.isoformat()
    # new_uuid gives the same value in every replay, so the echoed token matches.
    assert status["output"]["echoed"] == status["output"]["token"]


# --------------------------------------------------------------------------- client operations


def test_start_refuses_a_running_instance_id_and_restarts_a_finished_one(harness: DurableHarness) -> None:
    harness.start_new("wait_for_approval", instance_id="job-1")
    with pytest.raises(InstanceAlreadyRunningError, match="with the status Pending already exists"):
        harness.start_new("chain", instance_id="job-1", input="A")
    drive(harness)
    with pytest.raises(InstanceAlreadyRunningError, match="with the status Running already exists"):
        harness.start_new("chain", instance_id="job-1", input="A")

    harness.terminate("job-1", "make room")
    drive(harness)
    harness.start_new("chain", instance_id="job-1", input="A")
    drive(harness)

    status = status_of(harness, "job-1")
    assert (status["name"], status["runtimeStatus"]) == ("chain", "Completed")


def test_start_rejects_unknown_orchestrators_and_invalid_instance_ids(harness: DurableHarness) -> None:
    with pytest.raises(OrchestratorNotFoundError, match="The function 'nope' doesn't exist"):
        harness.start_new("nope")
    with pytest.raises(InvalidInstanceIdError):
        harness.start_new("chain", instance_id="a/b")
    with pytest.raises(InvalidInstanceIdError):
        harness.start_new("chain", instance_id="@entity")
    assert harness.get_status("never-started") is None


def test_status_history_folds_scheduling_into_completions_like_the_extension(harness: DurableHarness) -> None:
    instance_id = harness.start_new("chain", input="A")
    drive(harness)

    status = harness.get_status(instance_id, show_history=True, show_history_output=True)
    assert status is not None
    history = status["historyEvents"]
    assert [item["EventType"] for item in history] == [
        "ExecutionStarted",
        "TaskCompleted",
        "TaskCompleted",
        "TaskCompleted",
        "TaskCompleted",
        "ExecutionCompleted",
    ]
    assert [item.get("FunctionName") for item in history[1:5]] == ["append_letter"] * 3 + ["async_double"]
    assert history[1]["Result"] == "AB"
    assert history[-1]["OrchestrationStatus"] == "Completed"


def test_work_started_from_another_thread_wakes_a_serving_harness() -> None:
    harness = DurableHarness(fx.app, clock=SystemClock())

    async def scenario() -> dict[str, Any]:
        stop = asyncio.Event()
        server = asyncio.create_task(harness.serve(stop))
        await asyncio.sleep(0.05)
        # serve() is now asleep with nothing to do; a start from another thread must wake it.
        instance_id = await asyncio.to_thread(harness.start_new, "chain", None, "A")
        status = await harness.wait_for_status(instance_id, timeout=5)
        stop.set()
        await asyncio.wait_for(server, timeout=5)
        return status

    status = asyncio.run(scenario())
    assert status["output"] == {"letters": "ABCD", "doubled_length": 8}
