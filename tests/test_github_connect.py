"""Connecting, as an admin would meet it: repositories the share cannot hold, a development
URL GitHub cannot reach, and a journal longer than one page. Real git, Azurite, and the fake
GitHub REST API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fakes.github import FakeGitHub, FakeToken
from gitrepos import Repo

from slipway.bootstrap import Services, build_services
from slipway.config import load_settings
from slipway.gitsync.journal import SyncRecord
from slipway.gitsync.service import GitSyncError, webhook_unreachable
from slipway.names import STATE_TABLE

TOKEN = "github_pat_connect_0123456789abcdef01"


@dataclass
class World:
    services: Services
    github: FakeGitHub
    repo: Repo
    workspace: Path


def _world(base_env: dict[str, str], tmp_path: Path, github: FakeGitHub, public: str) -> World:
    repo = Repo(tmp_path / "repo")
    repo.write("workflows/hello.py", "print('hello')\n")
    repo.commit_push("first")
    remotes = tmp_path / "remotes"
    (remotes / "octo").mkdir(parents=True)
    (remotes / "octo" / "flows.git").symlink_to(repo.bare, target_is_directory=True)
    github.tokens[TOKEN] = FakeToken()
    github.add_repo("octo/flows", branches={"main": repo.head()})
    env = {
        **base_env,
        "SLIPWAY_GIT_DIR": str(tmp_path / "git"),
        "SLIPWAY_GITHUB_API_URL": github.url,
        "SLIPWAY_GITHUB_WEB_URL": remotes.as_uri(),
        "SLIPWAY_PUBLIC_BASE_URL": public,
    }
    services = build_services(load_settings(env))
    tables = services.gitsync._lease.tables
    for row in ("sync-lease", "connection"):
        tables.upsert_entity(STATE_TABLE, {"PartitionKey": "github", "RowKey": row})
        tables.delete_entity(STATE_TABLE, "github", row)
    return World(services, github, repo, Path(env["SLIPWAY_WORKSPACE_DIR"]))


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


def test_a_repository_with_names_differing_only_in_case_is_a_409_naming_them(
    base_env: dict[str, str], tmp_path: Path, github: FakeGitHub
) -> None:
    world = _world(base_env, tmp_path, github, "https://slipway.example.test")
    world.repo.write_many({"README.md": "# upper\n", "readme.md": "# lower\n"})
    world.repo.commit_push("both readmes")
    github.repos["octo/flows"].branches["main"] = world.repo.head()
    (world.workspace / "mine.py").write_text("print('mine')\n")
    for dry_run in (True, False):
        with pytest.raises(GitSyncError) as refused:
            world.services.gitsync.connect("ada", "octo/flows", "main", TOKEN, dry_run=dry_run)
        assert (refused.value.status, refused.value.code) == (409, "tree_refused")
        assert "README.md" in refused.value.message and "readme.md" in refused.value.message
    # Nothing was changed: not connected, editable, no webhook, no secret, the files as they were.
    assert world.services.gitsync.status()["connected"] is False
    assert not world.services.gitsync._modes.get().read_only
    assert github.repos["octo/flows"].hooks == {}
    assert world.services.secrets.get_secret("github-token") is None
    assert sorted(p.name for p in world.workspace.iterdir()) == ["mine.py"]


def test_a_development_url_gets_no_webhook_and_the_status_says_why(
    base_env: dict[str, str], tmp_path: Path, github: FakeGitHub
) -> None:
    world = _world(base_env, tmp_path, github, "http://127.0.0.1:7071")
    answer = world.services.gitsync.connect("ada", "octo/flows", "main", TOKEN, dry_run=False)
    webhook = answer["webhook"]
    assert isinstance(webhook, dict)
    assert (webhook["managed"], webhook["reachable"]) == (False, False)
    assert "127.0.0.1" in str(webhook["message"]) and "SLIPWAY_PUBLIC_BASE_URL" in str(webhook["message"])
    assert github.repos["octo/flows"].hooks == {}, "a webhook GitHub can never deliver to was created"
    status = world.services.gitsync.status()
    assert status["webhook"]["reachable"] is False  # type: ignore[index]
    assert "five minutes" in status["webhook"]["message"]  # type: ignore[index]
    world.services.gitsync.disconnect("ada")


@pytest.mark.parametrize(
    ("url", "reachable"),
    [
        ("https://slipway.example.com/api/github/webhook", True),
        ("https://20.50.1.2/api/github/webhook", True),
        ("http://127.0.0.1:7071/api/github/webhook", False),
        ("http://localhost:7071/api/github/webhook", False),
        ("http://app.localhost/api/github/webhook", False),
        ("http://[::1]:7071/api/github/webhook", False),
        ("http://10.0.0.4/api/github/webhook", False),
        ("http://192.168.1.20/api/github/webhook", False),
        ("http://169.254.169.254/api/github/webhook", False),
        ("http://slipway/api/github/webhook", False),
        ("http://0.0.0.0:7071/api/github/webhook", False),
        ("ftp://slipway.example.com/api/github/webhook", False),
        ("", False),
    ],
)
def test_which_webhook_urls_github_can_reach(url: str, reachable: bool) -> None:
    assert (webhook_unreachable(url) is None) is reachable


def test_the_journal_pages_past_500_rows_newest_first_without_repeats(
    base_env: dict[str, str], tmp_path: Path, github: FakeGitHub
) -> None:
    world = _world(base_env, tmp_path, github, "https://slipway.example.test")
    journal = world.services.gitsync._journal
    marker = tmp_path.name
    start = datetime.now(UTC)
    for n in range(620):
        at = start + timedelta(milliseconds=n)
        journal.record(
            SyncRecord("push", "succeeded", f"{marker} {n}", (f"d-{n}",), after=f"{n:040d}", at=at)
        )
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        records, cursor = world.services.gitsync.sync_page(500, cursor)
        pages += 1
        seen += [r.message for r in records if r.message.startswith(marker)]
        if cursor is None:
            break
    assert pages >= 2
    numbers = [int(m.split()[1]) for m in seen]
    assert numbers == sorted(numbers, reverse=True) and len(numbers) == 620 == len(set(numbers))
