"""GitHub → /workspace through `slipway dev`: connect, push + webhook, a storm of deliveries.

Real pieces throughout: a git repository (bare remote on disk, fetched over file://), the
fake GitHub REST API of tests/fakes/github.py for what PyGithub asks, and the real local
runner with its queue trigger, singleton sync orchestration and Azurite.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from fakes.github import FakeGitHub, FakeToken
from gitrepos import Repo, assert_mirrors
from runner_process import Runner, start_runner

from slipway.adapters.secrets import FileSecretStore
from slipway.gitsync.connection import TOKEN_SECRET, WEBHOOK_SECRET
from slipway.gitsync.signature import sign

TOKEN = "github_pat_flow_0123456789abcdef0123"
PUBLIC = "https://slipway.example.test"


@dataclass
class World:
    runner: Runner
    github: FakeGitHub
    repo: Repo
    secrets: FileSecretStore

    def api(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        return httpx.request(method, self.runner.url + path, timeout=60, **kwargs)  # type: ignore[arg-type]

    def connect(self) -> dict[str, object]:
        body = {"repository": "octo/flows", "branch": "main", "token": TOKEN}
        response = self.api("POST", "/api/github/connect", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def webhook_secret(self) -> str:
        hook = next(iter(self.github.repos["octo/flows"].hooks.values()))
        return str(hook["config"]["secret"])

    def deliver_push(self, delivery: str, before: str, after: str) -> httpx.Response:
        body = json.dumps(
            {"ref": "refs/heads/main", "before": before, "after": after, "deleted": False}
        ).encode()
        headers = {
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": delivery,
            "X-GitHub-Hook-ID": "1",
            "X-Hub-Signature-256": sign(self.webhook_secret(), body),
            "Content-Type": "application/json",
        }
        return self.api("POST", "/api/github/webhook", content=body, headers=headers)

    def syncs(self) -> list[dict[str, object]]:
        return self.api("GET", "/api/github/syncs?limit=200").json()["entries"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("github-flow")
    repo = Repo(root / "repo")
    repo.write_many({"workflows/hello.py": "print('hello')\n", "README.md": "# flows\n"})
    repo.commit_push("first")
    remotes = root / "remotes"
    (remotes / "octo").mkdir(parents=True)
    (remotes / "octo" / "flows.git").symlink_to(repo.bare, target_is_directory=True)
    with FakeGitHub() as github:
        github.tokens[TOKEN] = FakeToken()
        github.add_repo("octo/flows", branches={"main": repo.head()})
        runner = start_runner(
            root,
            extra_env={
                "SLIPWAY_GITHUB_API_URL": github.url,
                "SLIPWAY_GITHUB_WEB_URL": remotes.as_uri(),
                "SLIPWAY_PUBLIC_BASE_URL": PUBLIC,
            },
        )
        # The repository brings its own workflows/hello.py; the seeded example would be a manual edit.
        runner.remove_example()
        try:
            yield World(runner, github, repo, FileSecretStore(root / "data" / "secrets.json"))
        finally:
            runner.stop()


@pytest.fixture
def connected(world: World) -> Iterator[World]:
    world.connect()
    try:
        yield world
    finally:
        world.api("POST", "/api/github/disconnect")


def test_dry_run_counts_what_the_first_sync_would_overwrite_and_delete(world: World) -> None:
    world.runner.workspace.joinpath("README.md").write_text("edited by hand\n")
    world.runner.workspace.joinpath("notes.txt").write_text("mine\n")
    body = {"repository": "https://github.com/octo/flows", "branch": "main", "token": TOKEN, "dry_run": True}
    answer = world.api("POST", "/api/github/connect", json=body).json()
    assert (answer["would_add"], answer["would_overwrite"], answer["would_delete"]) == (1, 1, 1)
    assert answer["overwrite_paths"] == ["README.md"] and answer["delete_paths"] == ["notes.txt"]
    # Nothing changed: no secrets, no webhook, still editable.
    assert world.secrets.get_secret(TOKEN_SECRET) is None
    assert world.github.repos["octo/flows"].hooks == {}
    assert world.api("GET", "/api/workspace/tree").json()["mode"] == "manual"
    assert world.runner.workspace.joinpath("notes.txt").exists()


def test_push_and_webhook_update_the_workspace_the_journal_and_the_mode(connected: World) -> None:
    world = connected
    assert_mirrors(world.repo, "main", world.runner.workspace)
    status = world.api("GET", "/api/github").json()
    assert status["connected"] and status["repository"] == "octo/flows"
    assert status["webhook"] == {
        "id": status["webhook"]["id"],
        "url": PUBLIC + "/api/github/webhook",
        "managed": True,
        "reachable": True,
    }
    assert status["state"] == "connected" and status["sync"]["state"] in ("idle", "running")
    assert world.api("GET", "/api/workspace/tree").json()["github"] == {
        "repository": "octo/flows",
        "branch": "main",
    }
    # The token and the webhook secret are in the secret store and nowhere in the API's answers.
    assert world.secrets.get_secret(TOKEN_SECRET) == TOKEN
    assert TOKEN not in json.dumps(status) and world.webhook_secret() not in json.dumps(status)

    before = world.repo.head()
    world.repo.write("workflows/new.py", "print('new')\n")
    world.repo.remove("README.md")
    after = world.repo.commit_push("second")
    started = time.monotonic()
    assert world.deliver_push("delivery-push-1", before, after).status_code == 202
    world.runner.wait(
        lambda: any("delivery-push-1" in e["deliveries"] for e in world.syncs()), "the push to sync"
    )
    elapsed = time.monotonic() - started
    assert_mirrors(world.repo, "main", world.runner.workspace)
    entry = next(e for e in world.syncs() if "delivery-push-1" in e["deliveries"])
    assert (entry["result"], entry["trigger"], entry["after"]) == ("succeeded", "push", after)
    assert (entry["added"], entry["deleted"]) == (1, 1)
    assert elapsed < 30
    assert TOKEN not in world.runner.log.read_text()


def test_disconnect_removes_the_webhook_and_secrets_and_editing_works_again(world: World) -> None:
    world.connect()
    answer = world.api("POST", "/api/github/disconnect").json()
    assert answer == {"connected": False, "webhook_removed": True}
    assert world.github.repos["octo/flows"].hooks == {}
    assert world.secrets.get_secret(TOKEN_SECRET) is None and world.secrets.get_secret(WEBHOOK_SECRET) is None
    files_before = sorted(p.name for p in world.runner.workspace.rglob("*"))
    assert files_before  # the files stay
    created = world.api(
        "PUT", "/api/workspace/files/after-disconnect.py", content=b"x", headers={"If-None-Match": "*"}
    )
    assert created.status_code == 201


def test_fifty_deliveries_for_ten_pushes_end_on_the_last_commit_one_sync_at_a_time(connected: World) -> None:
    world = connected
    heads = [world.repo.head()]
    for n in range(10):
        world.repo.write(f"storm/file-{n}.txt", f"push {n}\n")
        if n % 3 == 2:
            world.repo.remove(f"storm/file-{n - 1}.txt")
        heads.append(world.repo.commit_push(f"push {n}"))
    deliveries = [(f"storm-{n}", heads[n], heads[n + 1]) for n in range(10)]
    # Every delivery five times (GitHub retries, manual redeliveries), all at once, shuffled.
    batch = [d for d in deliveries for _ in range(5)]
    batch = batch[1::2] + batch[::2]
    barrier = threading.Barrier(len(batch))
    statuses: list[int] = []

    def send(item: tuple[str, str, str]) -> None:
        barrier.wait()
        statuses.append(world.deliver_push(*item).status_code)

    threads = [threading.Thread(target=send, args=(item,)) for item in batch]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) == 50 and set(statuses) <= {200, 202}

    ids = {d[0] for d in deliveries}

    def drained() -> bool:
        # The queue trigger records requests a moment after the webhook answered: idle alone
        # may come before them, so the last commit must be journaled as well.
        synced = any(e["after"] == heads[-1] and e["result"] == "succeeded" for e in world.syncs())
        return synced and world.api("GET", "/api/github").json()["sync"]["state"] == "idle"

    world.runner.wait(drained, "every delivery to be served", timeout=60)
    assert_mirrors(world.repo, "main", world.runner.workspace)
    entries = [e for e in world.syncs() if any(d.startswith("storm-") for d in e["deliveries"])]
    handled = [d for e in entries for d in e["deliveries"] if d.startswith("storm-")]
    # A delivery is journaled with the pass that synced its commit, at most once; passes that
    # found the workspace already there (the later deliveries) leave no row.
    assert len(handled) == len(set(handled)) and set(handled) <= ids and handled
    assert all(e["result"] == "succeeded" for e in entries)
    assert entries[0]["after"] == heads[-1]
    afters = [e["after"] for e in world.syncs() if e["result"] == "succeeded" and e["trigger"] == "push"]
    assert len(afters) == len(set(afters)), "each commit is journaled once"
    # Never two syncs at a time: the passes' time spans do not overlap.
    spans = sorted(
        (_at(e) - timedelta(milliseconds=int(e["duration_ms"])), _at(e))
        for e in world.syncs()
        if e["result"] != "skipped"
    )
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - timedelta(milliseconds=5)


def _at(entry: dict[str, object]):  # type: ignore[no-untyped-def]
    from datetime import datetime

    return datetime.fromisoformat(str(entry["at"]).replace("Z", "+00:00"))


def test_two_pushes_100_ms_apart_sync_both_and_the_sync_then_rests(connected: World) -> None:
    world = connected
    start = world.repo.head()
    world.repo.write("close/one.txt", "one\n")
    first = world.repo.commit_push("one")
    assert world.deliver_push("close-1", start, first).status_code == 202
    time.sleep(0.1)
    world.repo.write("close/two.txt", "two\n")
    second = world.repo.commit_push("two")
    assert world.deliver_push("close-2", first, second).status_code == 202

    def synced_second() -> bool:
        return any(e["after"] == second for e in world.syncs())

    world.runner.wait(synced_second, "the second push to sync", timeout=60)
    assert_mirrors(world.repo, "main", world.runner.workspace)
    rows = [e for e in world.syncs() if {"close-1", "close-2"} & set(e["deliveries"])]
    # Past the orchestration's linger (5 s): no pass runs any more, none is journaled.
    time.sleep(8)
    assert world.api("GET", "/api/github").json()["sync"]["state"] == "idle"
    later = [
        e
        for e in world.syncs()
        if e["trigger"] != "connect" and (e["after"] in (first, second) or not e["deliveries"])
    ]
    assert len(rows) <= 2 and len(later) == len(rows), later
    passes = world.runner.log.read_text().count("gitsync: sync pass")
    time.sleep(3)
    assert world.runner.log.read_text().count("gitsync: sync pass") == passes, (
        "the sync orchestration keeps running"
    )


def test_disconnect_during_a_sync_waits_for_it_and_no_edit_saved_after_is_overwritten(
    connected: World,
) -> None:
    world = connected
    before = world.repo.head()
    world.repo.write_many({f"bulk/file-{n:04d}.txt": f"from github {n}\n" * 40 for n in range(3000)})
    after = world.repo.commit_push("bulk")
    assert world.deliver_push("bulk-1", before, after).status_code == 202

    def applying() -> bool:
        running = world.api("GET", "/api/github").json()["sync"]["running"]
        return bool(running) and running["phase"] in ("fetching", "applying")

    world.runner.wait(applying, "the bulk sync to run", timeout=60)
    answer = world.api("POST", "/api/github/disconnect")
    assert answer.status_code == 200, answer.text
    assert world.api("GET", "/api/github").json()["connected"] is False
    # Editing is open again, and stays the editor's: nothing of the sync writes after this.
    current = world.api("GET", "/api/workspace/files/bulk/file-0001.txt")
    condition = (
        {"If-Match": current.headers["ETag"]} if current.status_code == 200 else {"If-None-Match": "*"}
    )
    saved = world.api("PUT", "/api/workspace/files/bulk/file-0001.txt", content=b"mine\n", headers=condition)
    assert saved.status_code in (200, 201), saved.text
    time.sleep(4)
    assert (world.runner.workspace / "bulk" / "file-0001.txt").read_bytes() == b"mine\n"
    assert world.api("GET", "/api/github").json()["sync"]["state"] == "idle"
