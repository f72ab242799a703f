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

import azure.durable_functions as df
import azure.functions as func
import httpx
import pytest
from runner_process import Runner, start_runner
from test_workflow_runs import get_run, start
from workflow_files import write_workflow

from slipway.functions.catalog import indexed_functions
from slipway.local.durable import DurableHarness, SystemClock
from slipway.local.http_dispatch import HttpDispatcher, http_routes
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
    write_workflow(
        runner.workspace,
        "python_sleep",
        """
        import time
        from slipway.sdk import Workflow

        workflow = Workflow(description="Python that cannot be interrupted")


        @workflow.step(timeout=300)
        def wait(ctx):
            time.sleep(120)
        """,
    )
    runs = [start(runner, "python_sleep")]
    runner.wait(
        lambda: any(s["status"] == "running" for s in get_run(runner, runs[0]).get("steps", [])),
        "the Python step to run",
        timeout=60,
    )
    runs += [start(runner, "long_step") for _ in range(17)]
    try:

        def steps_running() -> int:
            return sum(
                1
                for run_id in runs
                for step in get_run(runner, run_id).get("steps", [])
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

        shell_victim = next(
            r
            for r in runs[1:]
            if any(step["status"] == "running" for step in get_run(runner, r).get("steps", []))
        )
        # A command is killed; plain Python cannot be, and the run ends after the cancel's grace.
        for victim in (shell_victim, runs[0]):
            began = time.monotonic()
            assert runner.api("POST", f"/api/runs/{victim}/cancel").status_code in (200, 202)
            ended = runner.wait(
                lambda victim=victim: (run := get_run(runner, victim))["status"] in TERMINAL and run,
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
            lambda: all(get_run(runner, r)["status"] in TERMINAL for r in runs),
            "every run to end",
            timeout=60,
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


def _echo_app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="echo/{*rest}", methods=["GET", "POST", "HEAD"])
    def echo(req: func.HttpRequest) -> func.HttpResponse:
        seen = {
            "url": req.url,
            "rest": req.route_params.get("rest"),
            "header": req.headers.get("x-a"),
            "params": dict(req.params),
        }
        response = func.HttpResponse(json.dumps(seen), mimetype="application/json")
        response.headers.add("Set-Cookie", "s1=v1; Path=/x; HttpOnly; Secure; SameSite=Strict; Max-Age=60")
        return response

    return app


def test_http_requests_reach_functions_as_the_host_sends_them() -> None:
    app = _echo_app()
    worker = Worker(app, library=Path(os.environ[LIBRARY_ENV]), function_timeout=None)
    dispatcher = HttpDispatcher(
        http_routes(indexed_functions(app), route_prefix="api"), worker=worker, function_key=""
    )

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=dispatcher)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            got = await client.get(
                "/api/echo/a%23b%3Fc.txt?k=1&k=2&empty=",
                headers=[("X-A", "1"), ("X-A", "2")],
            )
            head = await client.head("/api/echo/x")
        return got, head

    try:
        got, head = asyncio.run(scenario())
    finally:
        worker.close()
    seen = got.json()
    # The path keeps its escapes: "#" and "?" in a file name do not cut the URL.
    assert seen["url"] == "http://localhost/api/echo/a%23b%3Fc.txt?k=1&k=2&empty="
    assert seen["rest"] == "a#b?c.txt"
    # Repeated headers and query keys are joined with ",", empty query values left out.
    assert seen["header"] == "1,2"
    assert seen["params"] == {"k": "1,2"}
    cookie = got.headers["set-cookie"].lower()
    for attribute in ("s1=v1", "path=/x", "httponly", "secure", "samesite=strict", "max-age=60"):
        assert attribute in cookie
    assert got.headers["content-length"] == str(len(got.content))
    assert head.status_code == 200 and head.content == b""


def test_orchestrations_in_flight_at_a_worker_restart_are_delivered_again_not_failed() -> None:
    calls: dict[str, int] = {"slow_once": 0, "brief": 0}
    blueprint = df.Blueprint()

    @blueprint.orchestration_trigger(context_name="context")
    def calls_slow(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
        return (yield context.call_activity("slow_once", None))

    @blueprint.orchestration_trigger(context_name="context")
    def calls_brief(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
        return (yield context.call_activity("brief", None))

    @blueprint.activity_trigger(input_name="nothing")
    def slow_once(nothing: str) -> str:
        calls["slow_once"] += 1
        if calls["slow_once"] == 1:
            time.sleep(4)  # past the 2 s functionTimeout: the worker restarts
        return "slow done"

    @blueprint.activity_trigger(input_name="nothing")
    def brief(nothing: str) -> str:
        calls["brief"] += 1
        time.sleep(1.5 if calls["brief"] == 1 else 0)  # in flight at the restart
        return "brief done"

    app = func.FunctionApp()
    app.register_functions(blueprint)
    worker = Worker(
        app, library=Path(os.environ[LIBRARY_ENV]),
        function_timeout=timedelta(seconds=2),
    )  # fmt: skip
    harness = DurableHarness(app, clock=SystemClock(), worker=worker)

    async def scenario() -> None:
        stop = asyncio.Event()
        driver = asyncio.create_task(harness.serve(stop))
        harness.start_new("calls_slow", "slow-1")
        await asyncio.sleep(1.0)
        harness.start_new("calls_brief", "brief-1")
        try:
            for instance_id in ("slow-1", "brief-1"):
                await harness.wait_for_status(instance_id, timeout=30)
        finally:
            stop.set()
            await driver

    try:
        asyncio.run(scenario())
    finally:
        worker.close()
    # As the extension treats a worker restart: a platform failure, the work delivered again.
    for instance_id, output in (("slow-1", "slow done"), ("brief-1", "brief done")):
        status = harness.get_status(instance_id)
        assert status["runtimeStatus"] == "Completed", status
        assert status["output"] == output
    assert calls == {"slow_once": 2, "brief": 2}
    assert worker.restarts == 1


def test_ctrl_c_stops_the_runner_while_a_step_spins_in_plain_python(tmp_path: Path) -> None:
    (tmp_path / "workspace").mkdir()
    drop = tmp_path / "drop"
    drop.mkdir()
    drop.chmod(0o777)
    started = start_runner(tmp_path)
    try:
        write_workflow(
            started.workspace,
            "spin",
            """
            import os, time
            from slipway.sdk import Workflow

            PID_FILE = "DROP/pid"
            workflow = Workflow(description="Python that never looks at its stop flag")


            @workflow.step(timeout=600)
            def spin(ctx):
                open(PID_FILE, "w").write(str(os.getpid()))
                end = time.monotonic() + 300
                while time.monotonic() < end:
                    pass
            """.replace("DROP", str(drop)),
        )
        run_id = start(started, "spin")
        started.wait(
            lambda: any(s["status"] == "running" for s in get_run(started, run_id).get("steps", [])),
            "the step to run",
            timeout=30,
        )
    finally:
        began = time.monotonic()
        code = started.stop()
        stopped_in = time.monotonic() - began
    # The step's process is stopped with the runner (SIGTERM, then SIGKILL): no thread is left
    # spinning, so the runner stops well within the host's grace period.
    assert stopped_in < 20, f"Ctrl-C took {stopped_in:.1f} s"
    assert code == 0
    assert "function thread(s) still running" not in started.log.read_text()
    step_pid = int((drop / "pid").read_text())
    assert not Path(f"/proc/{step_pid}").exists(), "the step's process outlived the runner"
