"""The sync orchestration through the real Durable replay code: retries with growing delays."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import azure.functions as func
import pytest
from gitrepos import Repo, assert_mirrors

from slipway.bootstrap import build_services
from slipway.config import load_settings
from slipway.functions.gitsync import FETCH_RETRY_SECONDS, SYNC_INSTANCE, gitsync_blueprint
from slipway.gitsync.connection import Connection
from slipway.local.durable import DurableHarness, VirtualClock
from slipway.local.durable_history import HistoryEventType


def test_a_failing_fetch_is_retried_with_growing_delays_then_a_repaired_remote_syncs(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    repo = Repo(tmp_path / "repo")
    repo.write("flow.py", "print(1)\n")
    repo.commit_push("first")
    remotes = tmp_path / "remotes"
    env = {**base_env, "SLIPWAY_GIT_DIR": str(tmp_path / "git"), "SLIPWAY_GITHUB_WEB_URL": remotes.as_uri()}
    services = build_services(load_settings(env))
    services.gitsync.connections.save(
        Connection(
            repository="octo/flows",
            branch="main",
            remote_url=f"{remotes.as_uri()}/octo/flows.git",
            hook_id=None,
            hook_managed=False,
            webhook_url="",
            connected_at=datetime.now(UTC),
            connected_by="test",
        )
    )
    app = func.FunctionApp()
    app.register_functions(gitsync_blueprint(services))
    harness = DurableHarness(app, clock=VirtualClock())

    # The remote does not exist yet: every pass fails to fetch.
    services.sync_requests.add("push", "delivery-a")
    harness.start_new("workspace_sync", SYNC_INSTANCE)
    asyncio.run(harness.run_until_idle())
    status = harness.get_status(SYNC_INSTANCE)
    assert status is not None and status["runtimeStatus"] == "Completed"
    failed = [r for r in services.gitsync.syncs(20) if r.result == "failed"]
    assert len(failed) == len(FETCH_RETRY_SECONDS) + 1
    assert all(r.message.startswith("fetch failed") for r in failed)
    history = harness.history(SYNC_INSTANCE)
    timers = [e for e in history if e["EventType"] == HistoryEventType.TIMER_CREATED]
    delays = []
    for timer in timers[: len(FETCH_RETRY_SECONDS)]:
        fire_at = datetime.fromisoformat(timer["FireAt"].replace("Z", "+00:00"))
        created = datetime.fromisoformat(timer["Timestamp"].replace("Z", "+00:00"))
        delays.append(round((fire_at - created).total_seconds()))
    assert delays == list(FETCH_RETRY_SECONDS)
    # The request was not lost: it waits for the next pass.
    assert [r.delivery for r in services.sync_requests.list()] == ["delivery-a"]

    # The remote appears; the next pass syncs and handles the waiting request.
    (remotes / "octo").mkdir(parents=True)
    (remotes / "octo" / "flows.git").symlink_to(repo.bare, target_is_directory=True)
    harness.start_new("workspace_sync", SYNC_INSTANCE)
    asyncio.run(harness.run_until_idle())
    assert_mirrors(repo, "main", Path(env["SLIPWAY_WORKSPACE_DIR"]))
    latest = services.gitsync.syncs(1)[0]
    assert (latest.result, latest.deliveries) == ("succeeded", ("delivery-a",))
    assert services.sync_requests.list() == []


def test_the_reconcile_timer_queues_a_catch_up_sync_only_when_the_branch_moved(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    import json

    from slipway.adapters.queues import decode_wire
    from slipway.names import SYNC_QUEUE

    repo = Repo(tmp_path / "repo")
    repo.write("flow.py", "print(1)\n")
    first = repo.commit_push("first")
    env = {**base_env, "SLIPWAY_GIT_DIR": str(tmp_path / "git")}
    services = build_services(load_settings(env))
    while services.queues.receive_messages(SYNC_QUEUE, max_messages=32, visibility_timeout=1):
        for message in services.queues.receive_messages(SYNC_QUEUE, max_messages=32, visibility_timeout=1):
            services.queues.delete_message(SYNC_QUEUE, message)
    services.gitsync.connections.save(
        Connection(
            repository="octo/flows",
            branch="main",
            remote_url=repo.url,
            hook_id=None,
            hook_managed=False,
            webhook_url="",
            connected_at=datetime.now(UTC),
            connected_by="test",
            last_synced_commit=first,
        )
    )
    assert services.gitsync.poll_remote() is False
    repo.write("flow.py", "print(2)\n")
    repo.commit_push("pushed while the webhook was down")
    assert services.gitsync.poll_remote() is True
    messages = [json.loads(decode_wire(m)) for m in services.queues.peek_messages(SYNC_QUEUE)]
    assert messages == [{"trigger": "reconcile", "delivery": ""}]


def test_a_very_long_git_error_does_not_push_the_custom_status_past_the_extensions_limit(
    base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = build_services(load_settings({**base_env, "SLIPWAY_GIT_DIR": str(tmp_path / "git")}))
    # What git's stderr can hold: many lines of non-ASCII text (3 bytes a character in UTF-8, 2 in UTF-16).
    message = "fetch failed: " + "é" * 30_000
    monkeypatch.setattr(
        services.gitsync,
        "run_pass",
        lambda: {"result": "failed", "retryable": True, "more": False, "message": message},
    )
    app = func.FunctionApp()
    app.register_functions(gitsync_blueprint(services))
    harness = DurableHarness(app, clock=VirtualClock())
    harness.start_new("workspace_sync", SYNC_INSTANCE)
    asyncio.run(harness.run_until_idle())
    status = harness.get_status(SYNC_INSTANCE)
    assert status is not None and status["runtimeStatus"] == "Completed", status
    shown = status["customStatus"]["last"]["message"]
    assert shown.startswith("fetch failed: éé") and len(shown) <= 1001
