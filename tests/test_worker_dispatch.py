"""`slipway dev` dispatches as the Python worker does, and Slipway holds up under it.

The runner invokes every function through the worker's own ``invocation_request`` on one
thread pool of ``PYTHON_THREADPOOL_THREAD_COUNT`` threads (16 in the image), enforces
host.json's ``functionTimeout`` as the host does, and buffers HTTP responses. These tests
run the product as a user does, as a child process, with the image's thread count.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import httpx
import pytest
from runner_process import REPO_ROOT, Runner, start_runner
from workflow_files import write_workflow

from slipway.local.invocation import http_answer, http_request_input
from slipway.local.worker import LIBRARY_ENV, Invocation, Worker, WorkerRestarted

TERMINAL = {"succeeded", "failed", "canceled"}
# The image's setting: with steps as synchronous activities, 16 running steps held every
# thread of the worker's pool.
THREADS = "16"


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    started = start_runner(
        tmp_path_factory.mktemp("dispatch"), extra_env={"PYTHON_THREADPOOL_THREAD_COUNT": THREADS}
    )
    try:
        yield started
    finally:
        started.stop()


def _start(runner: Runner, name: str) -> str:
    answer = runner.api("POST", f"/api/workflows/{name}/runs", json={"params": {}})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["run"]["id"])


def _run(runner: Runner, run_id: str) -> dict[str, Any]:
    return dict(runner.api("GET", f"/api/runs/{run_id}").json())


def test_webhook_and_cancel_answer_while_every_worker_thread_could_be_taken_by_steps(
    runner: Runner,
) -> None:
    write_workflow(
        runner.workspace,
        "long_step",
        """
        from slipway.sdk import Workflow, shell

        workflow = Workflow(description="one long command")


        @workflow.step(timeout=300)
        def wait(ctx):
            shell("sleep 120")
        """,
    )
    runs = [_start(runner, "long_step") for _ in range(18)]
    try:

        def steps_running() -> int:
            return sum(
                1
                for run_id in runs
                for step in _run(runner, run_id).get("steps", [])
                if step["status"] == "running"
            )

        # 16 steps at a time in one worker, two more waiting for a thread: as many long steps as
        # there are worker threads, and more.
        runner.wait(lambda: steps_running() >= 16, "16 steps running", timeout=90)

        began = time.monotonic()
        answer = httpx.post(
            f"{runner.url}/api/github/webhook",
            content=b'{"zen": "Keep it logically awesome."}',
            headers={
                "X-GitHub-Event": "ping",
                "X-GitHub-Delivery": "d-1",
                "Content-Type": "application/json",
            },
            timeout=30,
        )
        webhook_seconds = time.monotonic() - began
        assert answer.status_code in (401, 404, 409), answer.text  # unsigned, nothing connected
        assert webhook_seconds < 1.0, f"the webhook took {webhook_seconds:.2f} s with the pool full of steps"

        victim = next(
            r for r in runs if any(step["status"] == "running" for step in _run(runner, r).get("steps", []))
        )
        began = time.monotonic()
        assert runner.api("POST", f"/api/runs/{victim}/cancel").status_code in (200, 202)
        ended = runner.wait(
            lambda: (run := _run(runner, victim))["status"] in TERMINAL and run,
            "the canceled run",
            timeout=30,
        )
        cancel_seconds = time.monotonic() - began
        assert ended["status"] == "canceled"
        assert cancel_seconds < 10.0, f"cancel took {cancel_seconds:.1f} s with the pool full of steps"
    finally:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda r: runner.api("POST", f"/api/runs/{r}/cancel"), runs))
        runner.wait(
            lambda: all(_run(runner, r)["status"] in TERMINAL for r in runs), "every run to end", timeout=60
        )


def _blocking_app() -> func.FunctionApp:
    app = func.FunctionApp()

    @app.route(route="block", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
    def block(req: func.HttpRequest) -> func.HttpResponse:
        # Synchronous and blocking: it holds a worker thread past functionTimeout if asked.
        seconds = float(req.get_json()["seconds"])
        time.sleep(seconds)
        return func.HttpResponse(f"slept {seconds:g} s")

    return app


def _block_request(seconds: float) -> Any:
    return http_request_input(
        method="POST", url="http://localhost/block", headers={"content-type": "application/json"},
        query={}, params={}, body=json.dumps({"seconds": seconds}).encode(),
    )  # fmt: skip


def test_an_invocation_past_function_timeout_fails_everything_in_flight_as_a_worker_restart_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = Worker(
        _blocking_app(),
        library=Path(os.environ[LIBRARY_ENV]),
        function_directory=str(REPO_ROOT),
        function_timeout=timedelta(seconds=2),
    )

    async def scenario() -> tuple[list[Any], float, Invocation]:
        began = time.monotonic()
        culprit = asyncio.create_task(worker.invoke("block", {"req": _block_request(20)}))
        await asyncio.sleep(0.5)
        bystander = asyncio.create_task(worker.invoke("block", {"req": _block_request(1.9)}))
        outcomes = await asyncio.gather(culprit, bystander, return_exceptions=True)
        elapsed = time.monotonic() - began
        after = await worker.invoke("block", {"req": _block_request(0)})
        return outcomes, elapsed, after

    try:
        with caplog.at_level(logging.ERROR, logger="slipway.local.worker"):
            (culprit, bystander), elapsed, after = asyncio.run(scenario())
    finally:
        worker.close()
    # The one over the limit and the one that merely shared its worker process both fail, at the limit.
    assert isinstance(culprit, WorkerRestarted)
    assert "Timeout value of 00:00:02 exceeded by function 'Functions.block'" in str(culprit)
    assert isinstance(bystander, WorkerRestarted)
    assert elapsed < 5
    assert worker.restarts == 1
    assert "the host restarts the worker" in caplog.text
    # The new worker serves what comes next.
    assert after.ok and http_answer(after).body == b"slept 0 s"
