"""The sync lease and a connect's recovery, against Azurite, with real processes killed.

A lease is short and renewed by its holder; a holder killed with SIGKILL is taken over at once
when it ran in this container (its process is gone) and after the expiry otherwise. "Sync
now" behind a running sync says what it waits for; a cancel reaches the holder. A connect
killed during its first sync is found and finished by the next status read.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fakes.github import FakeGitHub, FakeToken
from gitrepos import Repo, assert_mirrors

from slipway.adapters.tables import TableStore
from slipway.bootstrap import Services, build_services
from slipway.config import load_settings
from slipway.gitsync.connection import TOKEN_SECRET, WEBHOOK_SECRET, Connection
from slipway.gitsync.lease import LeaseBusy, SyncLease
from slipway.names import STATE_TABLE

TOKEN = "github_pat_lease_0123456789abcdef0123"
REPO_ROOT = Path(__file__).resolve().parents[1]


def _tables(services: Services) -> TableStore:
    return services.gitsync._lease.tables  # the store the service's own lease writes


@pytest.fixture
def services(base_env: dict[str, str], tmp_path: Path) -> Iterator[Services]:
    built = build_services(load_settings({**base_env, "SLIPWAY_GIT_DIR": str(tmp_path / "git")}))
    _clear(built)
    yield built
    _clear(built)


def _clear(services: Services) -> None:
    # One Azurite serves the whole test run: leave no lease, connection or request behind.
    tables = _tables(services)
    for row in ("sync-lease", "connection"):
        tables.upsert_entity(STATE_TABLE, {"PartitionKey": "github", "RowKey": row})
        tables.delete_entity(STATE_TABLE, "github", row)
    services.sync_requests.remove(services.sync_requests.list())


_HOLDER = """
import sys, time
from slipway.bootstrap import build_services
from slipway.config import load_settings
import os
services = build_services(load_settings(dict(os.environ)))
with services.gitsync._lease.hold(trigger="push") as held:
    held.update(phase="applying", commit="c0ffee" * 6 + "abcd")
    print("held", flush=True)
    time.sleep(600)
"""


def _child_env(base_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**os.environ, **base_env, "SLIPWAY_GIT_DIR": str(tmp_path / "git")}


def test_a_holder_killed_in_this_container_is_taken_over_at_once(
    services: Services, base_env: dict[str, str], tmp_path: Path
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER], env=_child_env(base_env, tmp_path), stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        holder = services.gitsync._lease.current()
        assert holder is not None and holder.holder.endswith(f":{child.pid}")
        assert (holder.phase, holder.trigger) == ("applying", "push")
        with pytest.raises(LeaseBusy, match="applying c0ffee"), services.gitsync._lease.hold(wait_seconds=0):
            pass
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    started = time.monotonic()
    with services.gitsync._lease.hold(wait_seconds=5):
        taken = time.monotonic() - started
    assert taken < 1.0, f"took {taken:.1f} s to take over a dead holder's lease"


def test_a_live_holder_keeps_a_short_lease_and_a_silent_foreign_one_runs_out(services: Services) -> None:
    tables = _tables(services)
    lease = SyncLease(tables, duration=timedelta(seconds=2), renew_every=timedelta(seconds=0.4))
    release = threading.Event()
    holding = threading.Event()

    def hold() -> None:
        with lease.hold():
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(10)
    time.sleep(3)  # past the duration: the renewals keep it
    with pytest.raises(LeaseBusy), lease.hold(wait_seconds=0):
        pass
    release.set()
    thread.join()

    # A holder on another instance that stopped renewing (its host vanished): the row runs out.
    now = datetime.now(UTC)
    tables.upsert_entity(
        STATE_TABLE,
        {
            "PartitionKey": "github",
            "RowKey": "sync-lease",
            "owner": "elsewhere",
            "holder": "another-instance:4242",
            "holder_started": "1",
            "since": now,
            "expires": now + timedelta(seconds=2),
            "trigger": "push",
            "phase": "fetching",
            "commit": "",
            "cancel_requested_by": "",
        },
    )
    assert lease.current() is not None
    started = time.monotonic()
    with lease.hold(wait_seconds=10):
        waited = time.monotonic() - started
    assert 1.0 < waited < 4.0, waited


def _connect_state(services: Services, *, state: str = "connected", remote: str = "file:///nowhere") -> None:
    services.gitsync.connections.save(
        Connection(
            repository="octo/flows",
            branch="main",
            remote_url=remote,
            hook_id=None,
            hook_managed=False,
            webhook_url="",
            connected_at=datetime.now(UTC),
            connected_by="test",
            state=state,
        )
    )


def test_sync_now_behind_a_running_sync_says_what_it_waits_for_and_cancel_reaches_it(
    services: Services,
) -> None:
    _connect_state(services)
    services.sync_requests.add("push", "waiting-1")
    with services.gitsync._lease.hold(trigger="push") as held:
        held.update(phase="applying", commit="ab" * 20)
        answer = services.gitsync.request_sync("manual")
        assert answer["queued"] is True
        waiting = answer["waiting_for"]
        assert isinstance(waiting, dict) and (waiting["phase"], waiting["commit"]) == ("applying", "ab" * 20)
        assert "applying" in str(answer["message"])
        status = services.gitsync.status()["sync"]
        assert isinstance(status, dict) and status["state"] == "running"

        cancelled = services.gitsync.cancel_sync("ada")
        assert cancelled["dropped_requests"] == 1 and cancelled["cancelled"] is True
        held.refresh()
        assert held.cancelled_by == "ada"
    assert services.sync_requests.list() == []
    assert services.gitsync.status()["sync"]["state"] == "idle"  # type: ignore[index]


_CONNECT = """
import os, sys
from slipway.bootstrap import build_services
from slipway.config import load_settings
services = build_services(load_settings(dict(os.environ)))
services.gitsync.connect("ada", "octo/flows", "main", os.environ["TEST_TOKEN"], dry_run=False)
"""


def test_a_connect_killed_during_its_first_sync_is_finished_by_the_next_status_read(
    services: Services, base_env: dict[str, str], tmp_path: Path
) -> None:
    repo = Repo(tmp_path / "repo")
    repo.write_many({f"flows/file-{n:04d}.txt": f"file {n}\n" * 50 for n in range(3000)})
    repo.commit_push("many files")
    remotes = tmp_path / "remotes"
    (remotes / "octo").mkdir(parents=True)
    (remotes / "octo" / "flows.git").symlink_to(repo.bare, target_is_directory=True)
    with FakeGitHub() as github:
        github.tokens[TOKEN] = FakeToken()
        github.add_repo("octo/flows", branches={"main": repo.head()})
        env = {
            **base_env,
            "SLIPWAY_GIT_DIR": str(tmp_path / "git"),
            "SLIPWAY_GITHUB_API_URL": github.url,
            "SLIPWAY_GITHUB_WEB_URL": remotes.as_uri(),
            "SLIPWAY_PUBLIC_BASE_URL": "https://slipway.example.test",
        }
        services = build_services(load_settings(env))
        child = subprocess.Popen(
            [sys.executable, "-c", _CONNECT], env={**os.environ, **env, "TEST_TOKEN": TOKEN}
        )
        workspace = Path(env["SLIPWAY_WORKSPACE_DIR"])
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                holder = services.gitsync._lease.current()
                if holder is not None and holder.phase == "applying":
                    break
                time.sleep(0.01)
            else:
                raise AssertionError("the connect never reached its first sync's apply")
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        half = sum(1 for p in workspace.rglob("*") if p.is_file() and not p.name.startswith(".slipway-"))
        assert half < 3000, "the kill came after the first sync had finished"
        assert services.secrets.get_secret(TOKEN_SECRET) == TOKEN
        assert services.secrets.get_secret(WEBHOOK_SECRET)

        status = services.gitsync.status()
        assert status["connected"] is True and status["state"] == "connecting"
        assert [r.trigger for r in services.sync_requests.list()] == ["connect"]
        outcome = services.gitsync.run_pass()
        assert outcome["result"] == "succeeded", outcome
        assert services.gitsync.status()["state"] == "connected"
        assert services.gitsync._modes.get().read_only
        assert_mirrors(repo, "main", workspace)
        assert not [p for p in workspace.rglob(".slipway-tmp-*")], "the killed sync's temp files stay"
        # The webhook the killed connect made is the one the connection names, and only one.
        hooks = github.repos["octo/flows"].hooks
        assert len(hooks) == 1 and services.gitsync.connections.get().hook_id in hooks  # type: ignore[union-attr]
        assert json.dumps(status).count(TOKEN) == 0


def test_a_connect_killed_before_it_stored_its_secrets_is_undone(services: Services) -> None:
    _connect_state(services, state="connecting")
    services.gitsync._modes.set_github("octo/flows", "main")
    assert services.gitsync.status() == {"connected": False, "sync": services.gitsync.status()["sync"]}
    assert services.gitsync.connections.get() is None
    assert not services.gitsync._modes.get().read_only


def test_disconnecting_after_a_killed_connect_leaves_no_temp_files(
    services: Services, base_env: dict[str, str], tmp_path: Path
) -> None:
    workspace = Path(base_env["SLIPWAY_WORKSPACE_DIR"])
    (workspace / "flows").mkdir()
    (workspace / "flows" / ".slipway-tmp-0123abcd").write_text("half a file")
    (workspace / ".slipway-tmp-sync-unfinished").mkdir()
    (workspace / "flows" / "kept.py").write_text("print('kept')\n")
    _connect_state(services)
    services.gitsync._modes.set_github("octo/flows", "main")
    services.gitsync.disconnect("ada")
    names = sorted(p.relative_to(workspace).as_posix() for p in workspace.rglob("*"))
    assert names == ["flows", "flows/kept.py"]
    assert not services.gitsync._modes.get().read_only
