"""`slipway dev` end to end, as a real process: HTTP, queues, orchestrations, poison, Ctrl-C."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from runner_process import REPO_ROOT, Runner, port_open, start_runner

from slipway.adapters.queues import decode_wire
from slipway.local.azurite import free_port

RUNNER_APP = REPO_ROOT / "tests" / "runner_app"


@pytest.fixture
def probe_runner(tmp_path: Path) -> Iterator[Runner]:
    runner = start_runner(
        tmp_path, RUNNER_APP, {"PROBE_QUEUE": "probe-runs", "PROBE_SCHEDULE": "*/1 * * * * *"}
    )
    try:
        yield runner
    finally:
        runner.stop()


def test_queue_message_starts_an_orchestration_that_runs_to_completion(probe_runner: Runner) -> None:
    queues = probe_runner.queue_bus()
    queues.send_message("probe-runs", {"id": "run-1"})
    result = probe_runner.temp / "probe-run-1.json"
    probe_runner.wait(result.exists, "the orchestration to record its result")
    assert json.loads(result.read_text()) == {"id": "run-1", "parts": [0, 10, 20]}
    # The message was consumed, not left for another delivery.
    probe_runner.wait(lambda: queues.approximate_count("probe-runs") == 0, "the message to be deleted")


def test_timer_triggers_fire_on_their_schedule(probe_runner: Runner) -> None:
    ticks = probe_runner.temp / "ticks.txt"
    # The schedule says every second: three ticks arrive within a few seconds.
    probe_runner.wait(
        lambda: ticks.exists() and ticks.read_text().count("tick") >= 3, "three timer ticks", timeout=15
    )


def test_a_message_that_keeps_failing_lands_in_the_poison_queue_unchanged(probe_runner: Runner) -> None:
    queues = probe_runner.queue_bus()
    queues.send_message("probe-runs", {"id": "doomed", "fail": True})
    poisoned = probe_runner.wait(lambda: queues.peek_messages("probe-runs-poison"), "a poison message")
    assert json.loads(decode_wire(poisoned[0])) == {"id": "doomed", "fail": True}
    assert queues.approximate_count("probe-runs") == 0
    log = probe_runner.log.read_text()
    # host.json of the test app sets maxDequeueCount 2: two failed deliveries, then poison.
    assert log.count("queue function failed") == 2
    assert "message moved to poison queue" in log


def test_ready_and_the_function_key_route_answer_through_the_runner(probe_runner: Runner) -> None:
    ready = httpx.get(probe_runner.url + "/api/health/ready", timeout=30)
    assert ready.status_code == 200, ready.text
    assert [c["name"] for c in ready.json()["checks"]] == ["tables", "queues", "workspace", "temp"]
    # The automation function is a native HTTP function: same API, admin principal.
    me = httpx.get(probe_runner.url + "/api/automation/me", timeout=30)
    assert me.status_code == 200
    assert me.json() == {
        "name": "function-key",
        "provider": "functionkey",
        "roles": ["reader", "editor", "admin"],
    }


def test_ctrl_c_stops_the_runner_and_its_azurite(tmp_path: Path) -> None:
    runner = start_runner(tmp_path)
    ports = runner.azurite_ports()
    assert port_open(ports.queue)
    assert runner.stop() == 0
    assert not port_open(ports.queue)
    assert not port_open(ports.table)
    assert not port_open(int(runner.url.rsplit(":", 1)[1]))


def test_default_app_is_ready_with_every_check_listed(tmp_path: Path) -> None:
    runner = start_runner(tmp_path)
    try:
        response = httpx.get(runner.url + "/api/health/ready", timeout=30)
        assert response.status_code == 200, response.text
        checks = response.json()["checks"]
        assert [c["name"] for c in checks] == ["tables", "queues", "workspace", "temp"]
        assert all(c["ok"] for c in checks)
        # The status page is served at / from web/.
        page = httpx.get(runner.url + "/", timeout=10)
        assert page.status_code == 200 and "<title>Slipway</title>" in page.text
    finally:
        assert runner.stop() == 0


def test_listening_beyond_loopback_without_a_token_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")}
    result = subprocess.run(
        [sys.executable, "-m", "slipway.cli", "dev", "--host", "0.0.0.0", "--port", str(free_port()),
         "--data", str(tmp_path / "data"), "--app-root", str(REPO_ROOT)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 without SLIPWAY_API_TOKEN" in result.stderr


def test_beyond_loopback_every_request_needs_the_token_and_keys_are_enforced(tmp_path: Path) -> None:
    token = "k" * 40
    runner = start_runner(tmp_path, extra_env={"SLIPWAY_API_TOKEN": token}, host="0.0.0.0")
    try:
        assert httpx.get(runner.url + "/api/me").status_code == 401
        me = httpx.get(runner.url + "/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["provider"] == "token"
        # The function-key route checks the key like the host does; the runner's key is the token.
        assert httpx.get(runner.url + "/api/automation/me").status_code == 401
        assert (
            httpx.get(runner.url + "/api/automation/me", headers={"x-functions-key": "wrong"}).status_code
            == 401
        )
        keyed = httpx.get(runner.url + f"/api/automation/me?code={token}")
        assert keyed.status_code == 200 and keyed.json()["provider"] == "functionkey"
    finally:
        assert runner.stop() == 0
