"""Workflow runs through `slipway dev` as a user drives it: the API, the runs queue, the
orchestration on the real clock, step timeouts, cancel killing commands, pinned versions,
redelivered and poisoned messages, logs (incremental; buffered as under the host) with their limits."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from runner_process import Runner, start_runner
from workflow_files import write_workflow

from slipway.engine.runs import RunStore, new_run_id
from slipway.names import RUNS_QUEUE, poison_queue

TERMINAL = {"succeeded", "failed", "canceled"}


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    started = start_runner(tmp_path_factory.mktemp("runs"), extra_env={"SLIPWAY_RUN_LOG_LIMIT_MB": "1"})
    try:
        yield started
    finally:
        started.stop()


def start(runner: Runner, name: str, params: dict[str, Any] | None = None) -> str:
    answer = runner.api("POST", f"/api/workflows/{name}/runs", json={"params": params or {}})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["run"]["id"])


def get_run(runner: Runner, run_id: str) -> dict[str, Any]:
    return dict(runner.api("GET", f"/api/runs/{run_id}").json())


def finished(runner: Runner, run_id: str, timeout: float = 30) -> dict[str, Any]:
    return runner.wait(
        lambda: (run := get_run(runner, run_id))["status"] in TERMINAL and run,
        f"run {run_id} to end",
        timeout,
    )


def steps(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in run["steps"]}


def log_lines(runner: Runner, run_id: str, after: int = 0) -> list[dict[str, Any]]:
    return list(runner.api("GET", f"/api/runs/{run_id}/logs", params={"after": after}).json()["lines"])


def drop_box(tmp_path: Path) -> Path:
    """A folder the steps may write to: they run as another user than the tests."""
    folder = tmp_path / "drop"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o777)
    return folder


def group_alive(pgid: int) -> bool:
    """Whether any process is still in process group ``pgid``."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def test_a_step_timeout_fails_the_step_kills_its_command_and_runs_on_failure(
    runner: Runner, tmp_path: Path
) -> None:
    pid_file = drop_box(tmp_path) / "pid"
    write_workflow(
        runner.workspace,
        "slow",
        f"""
        import time
        from slipway.sdk import Workflow, shell

        workflow = Workflow()

        @workflow.step(timeout=1.5)
        def hang(ctx):
            shell("echo $$ > {pid_file}; sleep 60")

        @workflow.step(timeout=1)
        def think(ctx):
            while True:  # plain Python that never returns: its process is stopped all the same
                pass

        @workflow.on_failure
        def report(ctx):
            print("cleaning up after", ctx.failure["step"])
        """,
    )
    began = time.monotonic()
    run = finished(runner, start(runner, "slow"))
    assert time.monotonic() - began < 15
    assert run["status"] == "failed"
    by_name = steps(run)
    assert by_name["think"]["status"] == "timed_out"
    assert by_name["think"]["error"].startswith("timed out after 1 s")
    assert by_name["hang"]["status"] in ("timed_out", "failed")
    assert by_name["report"]["status"] == "succeeded"
    pgid = int(pid_file.read_text())
    runner.wait(lambda: not group_alive(pgid), "the timed-out command's processes to be gone", timeout=5)
    text = "\n".join(line["text"] for line in log_lines(runner, run["id"]))
    assert "cleaning up after" in text
    # The late result of the timed-out attempt never turns the step green.
    time.sleep(3)
    assert steps(get_run(runner, run["id"]))["think"]["status"] == "timed_out"


def test_cancel_during_a_long_command_kills_it_and_ends_the_run_canceled(
    runner: Runner, tmp_path: Path
) -> None:
    pid_file = drop_box(tmp_path) / "pid"
    write_workflow(
        runner.workspace,
        "long",
        f"""
        from slipway.sdk import Workflow, shell

        workflow = Workflow()

        @workflow.step()
        def build(ctx):
            shell("echo $$ > {pid_file}; echo building; sleep 120; echo never")

        @workflow.step(after=[build])
        def after_build(ctx, build):
            return "never"
        """,
    )
    run_id = start(runner, "long")
    runner.wait(lambda: pid_file.exists() and pid_file.read_text().strip(), "the command to start")
    pgid = int(pid_file.read_text())
    assert group_alive(pgid)
    began = time.monotonic()
    answer = runner.api("POST", f"/api/runs/{run_id}/cancel")
    assert answer.status_code == 202 and answer.json()["cancel_requested"] is True
    run = finished(runner, run_id)
    assert time.monotonic() - began < 10
    assert run["status"] == "canceled"
    assert {n: s["status"] for n, s in steps(run).items()} == {"build": "canceled", "after_build": "canceled"}
    runner.wait(lambda: not group_alive(pgid), "the command's processes to be gone", timeout=10)
    text = [line["text"] for line in log_lines(runner, run_id)]
    assert "building" in text and "never" not in text
    assert any("cancel requested by" in line for line in text)
    # The killed step's last words come before the run's end, so a reader that stops there has them.
    assert text[-1] == "● run canceled: canceled while running"
    assert any(line.startswith("✘ build failed") for line in text)


def test_a_step_that_sees_the_cancel_before_the_orchestration_does_still_ends_the_run_canceled(
    runner: Runner, tmp_path: Path
) -> None:
    pid_file = drop_box(tmp_path) / "pid"
    write_workflow(
        runner.workspace,
        "noticed",
        f"""
        from slipway.sdk import Workflow, shell

        workflow = Workflow()

        @workflow.step()
        def build(ctx):
            shell("echo $$ > {pid_file}; sleep 120")

        @workflow.on_failure
        def rollback(ctx):
            print("must not run for a cancel")
        """,
    )
    run_id = start(runner, "noticed")
    runner.wait(lambda: pid_file.exists() and pid_file.read_text().strip(), "the command to start")
    # Only the flag, as when the cancel message is still on its way through the queue.
    RunStore(runner.table_store()).update_run(run_id, lambda row: {**row, "cancel_requested": True})
    run = finished(runner, run_id)
    assert run["status"] == "canceled"
    assert {n: s["status"] for n, s in steps(run).items()} == {"build": "canceled", "rollback": "skipped"}
    assert not group_alive(int(pid_file.read_text()))


def test_editing_a_workflow_during_a_run_changes_only_the_next_run(runner: Runner, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    source = f"""
        import time
        from pathlib import Path
        from slipway.sdk import Workflow

        workflow = Workflow()

        @workflow.step()
        def wait(ctx):
            while not Path({str(gate)!r}).exists():
                time.sleep(0.05)

        @workflow.step(after=[wait])
        def answer(ctx, wait):
            return "old"
        """
    path = write_workflow(runner.workspace, "edited", source)
    first = start(runner, "edited")
    runner.wait(
        lambda: steps(get_run(runner, first)).get("wait", {}).get("status") == "running",
        "the first run in flight",
    )
    path.write_text(path.read_text().replace('return "old"', 'return "new"'))
    second = start(runner, "edited")
    gate.write_text("open")
    assert steps(finished(runner, first))["answer"]["output"] == "old"
    assert steps(finished(runner, second))["answer"]["output"] == "new"
    assert get_run(runner, first)["version"] != get_run(runner, second)["version"]


def test_a_redelivered_start_message_does_not_run_the_workflow_twice(runner: Runner, tmp_path: Path) -> None:
    counter = drop_box(tmp_path) / "count"
    write_workflow(
        runner.workspace,
        "once",
        f"""
        from pathlib import Path
        from slipway.sdk import Workflow

        workflow = Workflow()

        @workflow.step()
        def count(ctx):
            with open({str(counter)!r}, "a") as handle:
                handle.write("x")
        """,
    )
    run_id = start(runner, "once")
    assert finished(runner, run_id)["status"] == "succeeded"
    queues = runner.queue_bus()
    for _ in range(2):
        queues.send_message(RUNS_QUEUE, {"action": "start", "run_id": run_id})
    runner.wait(lambda: queues.approximate_count(RUNS_QUEUE) == 0, "the duplicates to be consumed")
    time.sleep(1)
    assert counter.read_text() == "x"
    assert steps(get_run(runner, run_id))["count"]["attempt"] == 1


def test_a_start_message_that_ended_in_the_poison_queue_fails_its_run(runner: Runner) -> None:
    runs = RunStore(runner.table_store())
    run_id = new_run_id()
    runs.create_run(run_id, workflow="ghost", version="0" * 20, params={}, requested_by="test")
    runner.queue_bus().send_message(poison_queue(RUNS_QUEUE), {"action": "start", "run_id": run_id})
    run = finished(runner, run_id)
    assert run["status"] == "failed"
    assert "could not be started" in run["error"]


def test_logs_come_incrementally_with_long_output_marked_and_never_as_a_held_stream(runner: Runner) -> None:
    write_workflow(
        runner.workspace,
        "chatty",
        """
        import sys
        from slipway.sdk import Workflow

        workflow = Workflow()

        @workflow.step()
        def talk(ctx):
            for i in range(5):
                print(f"line {i}")
            print("x" * 20_000)
            sys.stderr.write("a warning\\n")
            for i in range(300):
                print(f"filler {i} " + "y" * 5000)
            return "done"
        """,
    )
    run_id = start(runner, "chatty")
    # Under slipway dev, as under the Functions host, responses are buffered: asked for the live
    # stream, the API answers at once with a JSON page and says so, and the client polls.
    asked = httpx.get(
        f"{runner.url}/api/runs/{run_id}/logs", headers={"Accept": "text/event-stream"}, timeout=10
    )
    assert asked.headers["content-type"].startswith("application/json")
    assert asked.headers["x-slipway-streaming"] == "buffered"
    lines: list[dict[str, Any]] = []
    after = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        page = runner.api("GET", f"/api/runs/{run_id}/logs", params={"after": after}).json()
        lines += page["lines"]
        after = page["next"]
        if page["complete"]:
            break
        time.sleep(0.2)
    assert page["complete"] and page["status"] == "succeeded"
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))  # none missed, none twice
    texts = [line["text"] for line in lines]
    assert texts[texts.index("line 0") : texts.index("line 0") + 5] == [f"line {i}" for i in range(5)]
    assert any(t.endswith("[line truncated: 12000 more characters]") for t in texts)
    assert any(line["stream"] == "stderr" and line["text"] == "a warning" for line in lines)
    # 300 lines of 5 KB pass the 1 MB limit: a marker says so, and the end says how much was lost.
    assert any("log limit of 1 MB reached" in t for t in texts)
    assert any(t.endswith("log lines beyond the limit were not stored]") for t in texts)
    # The same lines by polling, from any point on.
    middle = lines[len(lines) // 2]["seq"]
    page = runner.api("GET", f"/api/runs/{run_id}/logs", params={"after": middle}).json()
    assert [line["seq"] for line in page["lines"]] == [line["seq"] for line in lines if line["seq"] > middle]
    assert page["complete"] is True


def test_unknown_runs_and_workflows_answer_404(runner: Runner) -> None:
    assert runner.api("GET", "/api/runs/0000000000ff-00000000").status_code == 404
    assert runner.api("GET", "/api/runs/not-a-run").json()["error"]["code"] == "run_not_found"
    assert runner.api("POST", "/api/workflows/missing/runs", json={}).status_code == 404
    assert os.environ.get("CI", "") in ("", "true")


def test_a_dag_with_fan_out_retries_and_on_failure_runs_through_the_queue(runner: Runner) -> None:
    write_workflow(
        runner.workspace,
        "pipeline",
        """
        from slipway.sdk import Param, Workflow, shell

        workflow = Workflow(params={"break_it": Param(bool, default=False)})

        @workflow.step()
        def source(ctx):
            return {"files": ["a.txt", "b.txt", "c.txt"]}

        @workflow.step(after=[source])
        def count(ctx, source):
            return len(source["files"])

        @workflow.step(after=[source])
        def listing(ctx, source):
            return shell("printf '%s\\\\n' " + " ".join(source["files"])).stdout.split()

        @workflow.step(after=[count, listing], retries=3, retry_delay=0.2)
        def flaky_upload(ctx, count, listing):
            if ctx.attempt < 3:
                raise ConnectionError(f"upload attempt {ctx.attempt} dropped")
            if ctx.params["break_it"]:
                raise RuntimeError("the target refused the upload")
            return f"uploaded {count}: {','.join(listing)}"

        @workflow.step(after=[flaky_upload])
        def announce(ctx, flaky_upload):
            print(flaky_upload)

        @workflow.on_failure
        def undo(ctx):
            print(f"undoing after {ctx.failure['step']}")
        """,
    )
    good = finished(runner, start(runner, "pipeline"))
    assert good["status"] == "succeeded"
    rows = steps(good)
    assert {n: (s["status"], s["attempt"]) for n, s in rows.items()} == {
        "source": ("succeeded", 1),
        "count": ("succeeded", 1),
        "listing": ("succeeded", 1),
        "flaky_upload": ("succeeded", 3),
        "announce": ("succeeded", 1),
        "undo": ("skipped", 0),
    }
    assert rows["flaky_upload"]["output"] == "uploaded 3: a.txt,b.txt,c.txt"
    assert rows["flaky_upload"]["attempts"] == 4
    text = [line["text"] for line in log_lines(runner, good["id"])]
    assert "uploaded 3: a.txt,b.txt,c.txt" in text
    assert sum("upload attempt" in line and "dropped" in line for line in text) >= 2

    bad = finished(runner, start(runner, "pipeline", {"break_it": True}))
    assert bad["status"] == "failed"
    assert bad["error"] == "step flaky_upload failed: RuntimeError: the target refused the upload"
    rows = steps(bad)
    assert (rows["flaky_upload"]["status"], rows["flaky_upload"]["attempt"]) == ("failed", 4)
    assert (rows["announce"]["status"], rows["undo"]["status"]) == ("skipped", "succeeded")
    assert "undoing after flaky_upload" in [line["text"] for line in log_lines(runner, bad["id"])]
