"""The GitHub connection in a real browser (Debian chromium) against the real `slipway dev`.

The repository is a real git repository: a bare remote on disk, reached through
`SLIPWAY_GITHUB_WEB_URL=file://…` (so `octo/flows` is fetched from `<remotes>/octo/flows.git`),
and GitHub's REST API is the fake of `tests/fakes/github.py`. One runner, one fake and one
browser serve the module; the connection is global, so each test leaves it disconnected (and
removes the journal rows it wrote). A sync "running elsewhere" is this process holding the sync
lease in the runner's own storage; the dev-mode test starts a second runner with the default
loopback webhook URL. Set SLIPWAY_E2E_SCREENSHOTS to a folder to keep a screenshot of each stage.
"""

from __future__ import annotations

import io
import os
import socket
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fakes.github import FakeGitHub, FakeToken
from gitrepos import Repo, assert_mirrors
from playwright.sync_api import Browser, Locator, Page, Request, Route, expect
from runner_process import Runner
from ui_pages import open_page, screenshot, start_ui_runner

from slipway.gitsync.journal import SyncJournal, SyncRecord
from slipway.gitsync.lease import SyncLease
from slipway.names import SYNC_JOURNAL_TABLE

PUBLIC_BASE_URL = "https://slipway.example.test"
WEBHOOK_URL = PUBLIC_BASE_URL + "/api/github/webhook"
ADMIN_TOKEN = "github_pat_e2e_admin_0123456789abcdef"  # a token of the fake GitHub
READ_TOKEN = "github_pat_e2e_readonly_0123456789abcd"  # a token of the fake GitHub
BANNER = "Managed by GitHub: octo/flows (main) — editing is disabled"


@dataclass
class World:
    runner: Runner
    github: FakeGitHub
    repo: Repo
    root: Path
    remotes: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("e2e-github")
    # The repository octo/flows: its bare remote is what <remotes>/octo/flows.git names.
    repo = Repo(root / "octo-flows")
    remotes = root / "remotes"
    (remotes / "octo").mkdir(parents=True)
    (remotes / "octo" / "flows.git").symlink_to(repo.bare, target_is_directory=True)
    repo.write_many(
        {
            "README.md": "# flows\n",
            "deploy.py": "print('deploy from git')\n",
            "shared.py": "VALUE = 1\n",
            "flows/build.py": "print('build')\n",
            "flows/lib/util.py": "def util():\n    return 42\n",
        }
    )
    repo.commit_push("first")

    with FakeGitHub() as github:
        github.tokens[ADMIN_TOKEN] = FakeToken()
        github.tokens[READ_TOKEN] = FakeToken(admin=False, hooks=False)
        github.add_repo("octo/flows", branches={"main": repo.head()})
        runner = start_ui_runner(
            root,
            extra_env={
                "SLIPWAY_GITHUB_API_URL": github.url,
                "SLIPWAY_GITHUB_WEB_URL": remotes.as_uri(),
                "SLIPWAY_PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            },
        )
        try:
            yield World(runner, github, repo, root, remotes)
        finally:
            runner.stop()


@pytest.fixture
def console() -> list[str]:
    return []


@pytest.fixture
def page(browser: Browser, world: World, console: list[str]) -> Iterator[Page]:
    try:
        with open_page(browser, viewport={"width": 1360, "height": 820}, accept_downloads=True) as opened:
            opened.on("console", lambda message: console.append(message.text))
            opened.goto(world.runner.url + "/")
            yield opened
    finally:
        # Whatever happened, the next test starts disconnected.
        if world.runner.api("GET", "/api/github").json().get("connected"):
            world.runner.api("POST", "/api/github/disconnect")


def shot(page: Page, name: str) -> None:
    screenshot(page, f"github-{name}")


def row(page: Page, path: str) -> Locator:
    return page.locator(f'.tree-row[data-path="{path}"]')


def open_github(page: Page) -> None:
    page.get_by_role("tab", name="GitHub").click()
    expect(page.locator("#github-status .github-card")).to_have_attribute("data-connected", "false")


def fill_connect(page: Page, repository: str, token: str, branch: str = "main") -> Locator:
    page.get_by_role("button", name="Connect a repository…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Repository").fill(repository)
    expect(dialog.get_by_label("Branch")).to_have_value("main")
    dialog.get_by_label("Branch").fill(branch)
    expect(dialog.get_by_label("Personal access token")).to_have_attribute("type", "password")
    dialog.get_by_label("Personal access token").fill(token)
    return dialog


def _answer_me(principal: dict[str, object]) -> Callable[[Route], None]:
    return lambda route: route.fulfill(json=principal)


def test_connect_sync_and_disconnect(page: Page, world: World, console: list[str]) -> None:
    runner, repo = world.runner, world.repo
    # The runner seeded the example workflow into the empty workspace; this scenario counts
    # only the files below.
    runner.remove_example()
    # Manual edits the first sync will meet: one file the repository changes, one it lacks,
    # one it holds byte for byte.
    (runner.workspace / "shared.py").write_text("VALUE = 0  # edited by hand\n")
    (runner.workspace / "notes").mkdir()
    (runner.workspace / "notes" / "todo.md").write_text("- keep me in the zip\n")
    (runner.workspace / "README.md").write_text("# flows\n")
    page.get_by_role("button", name="Refresh").click()
    expect(row(page, "notes")).to_be_visible()

    open_github(page)
    expect(page.locator("#github-history-note")).to_have_text("No syncs yet.")
    shot(page, "01-not-connected")

    # Step 1: Check is a dry run; it changes nothing and says what connecting would do.
    dialog = fill_connect(page, "https://github.com/octo/flows", ADMIN_TOKEN)
    dialog.get_by_role("button", name="Check").click()
    confirm = dialog.get_by_role("button", name="Connect and sync")
    expect(confirm).to_be_visible()
    counts = dialog.locator(".github-counts")
    expect(counts.locator('[data-count="add"] strong')).to_have_text("3")
    expect(counts.locator('[data-count="overwrite"] strong')).to_have_text("1")
    expect(counts.locator('[data-count="delete"] strong')).to_have_text("1")
    expect(counts.locator('[data-count="unchanged"] strong')).to_have_text("1")
    expect(dialog).to_contain_text(f"at commit {repo.head()[:7]}")
    dialog.locator("details.overwrite summary").click()
    expect(dialog.locator("details.overwrite li")).to_have_text(["shared.py"])
    dialog.locator("details.delete summary").click()
    expect(dialog.locator("details.delete li")).to_have_text(["notes/todo.md"])
    assert (runner.workspace / "shared.py").read_text() == "VALUE = 0  # edited by hand\n"
    assert runner.api("GET", "/api/workspace/tree").json()["mode"] == "manual"

    # FR-012a: the zip download comes before the confirm button, with a note on what is lost.
    download = dialog.get_by_role("link", name="Download the workspace as zip first")
    expect(download).to_be_visible()
    expect(dialog.locator(".github-backup")).to_contain_text("overwrites 1 file and deletes 1 file")
    assert download.evaluate(
        "(link, button) => Boolean(link.compareDocumentPosition(button) & Node.DOCUMENT_POSITION_FOLLOWING)",
        confirm.element_handle(),
    )
    link_box, confirm_box = download.bounding_box(), confirm.bounding_box()
    assert link_box and confirm_box and link_box["y"] + link_box["height"] <= confirm_box["y"]
    shot(page, "02-check")
    with page.expect_download() as download_info:
        download.click()
    with zipfile.ZipFile(io.BytesIO(Path(download_info.value.path()).read_bytes())) as archive:
        assert archive.read("notes/todo.md") == b"- keep me in the zip\n"
        assert archive.read("shared.py") == b"VALUE = 0  # edited by hand\n"

    # Step 2: connect; the webhook is Slipway's to manage (the token's user is an admin).
    started = time.monotonic()
    confirm.click()
    expect(dialog).to_be_hidden(timeout=60_000)
    connected_in = time.monotonic() - started
    card = page.locator("#github-status .github-card")
    expect(card).to_have_attribute("data-connected", "true")
    expect(page.locator("#github-repository")).to_have_text("octo/flows")
    expect(page.locator("#github-branch")).to_have_text("main")
    expect(card).to_contain_text("Managed by Slipway")
    expect(card).to_contain_text(WEBHOOK_URL)
    expect(page.locator("#readonly-banner")).to_have_text(BANNER)
    assert_mirrors(repo, "main", runner.workspace)
    hooks = list(world.github.repos["octo/flows"].hooks.values())
    assert [(h["config"]["url"], h["events"]) for h in hooks] == [(WEBHOOK_URL, ["push"])]

    # The sync history shows the first sync.
    first = page.locator("#github-history tbody tr")
    expect(first).to_have_count(1)
    expect(first).to_have_attribute("data-trigger", "connect")
    expect(first).to_have_attribute("data-result", "succeeded")
    expect(first).to_contain_text(repo.head()[:7])
    expect(first.locator("td.when")).to_have_text("just now")
    expect(first.locator("td.changes")).to_have_text("+3 ~1 \u22121")  # added, changed, deleted
    shot(page, "03-connected")

    # The token went to the server and nowhere else.
    kept = page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}, document.cookie])")
    assert ADMIN_TOKEN not in kept
    assert page.get_by_role("dialog").count() == 0
    assert not any(ADMIN_TOKEN in line for line in console)
    assert ADMIN_TOKEN not in runner.log.read_text()

    # The editor is read-only now.
    page.get_by_role("tab", name="Scripts").click()
    expect(row(page, "flows")).to_be_visible()
    expect(row(page, "notes")).to_have_count(0)
    for name in ("New file", "New folder", "Rename", "Delete", "Save"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_hidden()
    shot(page, "04-read-only")

    # Sync now: a push the webhook could not deliver (GitHub cannot reach this machine).
    repo.write("flows/added.py", "print('added later')\n")
    repo.remove("deploy.py")
    repo.commit_push("second")
    page.get_by_role("tab", name="GitHub").click()
    page.get_by_role("button", name="Sync now").click()
    expect(page.locator(".toast").filter(has_text="Sync queued")).to_be_visible()
    manual = page.locator('#github-history tbody tr[data-trigger="manual"]')
    expect(manual).to_have_count(1, timeout=60_000)
    expect(manual).to_have_attribute("data-result", "succeeded")
    expect(manual).to_contain_text(repo.head()[:7])
    assert_mirrors(repo, "main", runner.workspace)
    page.get_by_role("tab", name="Scripts").click()
    row(page, "flows").click()
    expect(row(page, "flows/added.py")).to_be_visible()
    expect(row(page, "deploy.py")).to_have_count(0)

    # Disconnect: the files stay, the webhook goes, editing comes back.
    page.get_by_role("tab", name="GitHub").click()
    page.get_by_role("button", name="Disconnect…").click()
    confirm_dialog = page.get_by_role("dialog")
    expect(confirm_dialog).to_contain_text("The files stay")
    expect(confirm_dialog).to_contain_text("editing in the browser becomes possible again")
    expect(confirm_dialog).to_contain_text("the webhook is removed from GitHub")
    shot(page, "05-disconnect")
    confirm_dialog.get_by_role("button", name="Disconnect", exact=True).click()
    expect(confirm_dialog).to_be_hidden()
    expect(page.locator("#github-status .github-card")).to_have_attribute("data-connected", "false")
    expect(page.locator("#readonly-banner")).to_be_hidden()
    assert world.github.repos["octo/flows"].hooks == {}
    assert_mirrors(repo, "main", runner.workspace)
    # The history stays.
    expect(page.locator("#github-history tbody tr")).to_have_count(2)

    page.get_by_role("tab", name="Scripts").click()
    page.get_by_role("button", name="New file").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("textbox").fill("after.py")
    dialog.get_by_role("button", name="Create file").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#doc-name")).to_have_text("after.py")
    assert (runner.workspace / "after.py").read_bytes() == b""
    shot(page, "06-editing-again")
    print(f"connect and first sync took {connected_in:.1f} s in the browser")


def test_a_token_that_cannot_manage_webhooks_gets_the_url_and_secret_once(page: Page, world: World) -> None:
    open_github(page)
    dialog = fill_connect(page, "octo/flows", READ_TOKEN)
    dialog.get_by_role("button", name="Check").click()
    dialog.get_by_role("button", name="Connect and sync").click()

    expect(dialog.get_by_role("heading")).to_have_text("Add the webhook in GitHub")
    expect(dialog).to_contain_text("Just the push event")
    expect(dialog).to_contain_text("application/json")
    expect(dialog).to_contain_text("The secret is shown only once")
    url = dialog.locator(".copy-field").filter(has_text="Payload URL").locator("input")
    expect(url).to_have_value(WEBHOOK_URL)
    secret = dialog.locator(".copy-field").filter(has_text="Secret").locator("input")
    assert len(secret.input_value()) >= 20
    expect(dialog.get_by_role("button", name="Copy secret")).to_be_visible()
    expect(dialog.get_by_role("button", name="Copy payload url")).to_be_visible()
    shot(page, "07-manual-webhook")
    # Escape does not throw the secret away; the explicit button closes the step.
    page.keyboard.press("Escape")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="I have added the webhook").click()
    expect(dialog).to_be_hidden()
    card = page.locator("#github-status .github-card")
    expect(card).to_have_attribute("data-connected", "true")
    expect(card).to_contain_text("Added by hand")
    assert world.github.repos["octo/flows"].hooks == {}
    expect(page.locator("#readonly-banner")).to_have_text(BANNER)

    page.get_by_role("button", name="Disconnect…").click()
    confirm = page.get_by_role("dialog")
    expect(confirm).to_contain_text("remove it in the repository settings")
    confirm.get_by_role("button", name="Disconnect", exact=True).click()
    expect(card).to_have_attribute("data-connected", "false")
    expect(page.locator("#readonly-banner")).to_be_hidden()


def test_refusals_are_shown_in_words_and_only_admins_get_actions(page: Page, world: World) -> None:
    open_github(page)
    dialog = fill_connect(page, "octo/flows", "github_pat_wrong")
    check = dialog.get_by_role("button", name="Check")
    check.click()
    alert = dialog.get_by_role("alert")
    expect(alert).to_contain_text("GitHub did not accept the token")

    dialog.get_by_label("Personal access token").fill(ADMIN_TOKEN)
    dialog.get_by_label("Repository").fill("octo/missing")
    check.click()
    expect(alert).to_contain_text("GitHub knows no such repository")

    dialog.get_by_label("Repository").fill("octo/flows")
    dialog.get_by_label("Branch").fill("nope")
    check.click()
    expect(alert).to_contain_text("no such branch")
    shot(page, "08-refused")

    dialog.get_by_label("Branch").fill("main")
    dialog.get_by_label("Personal access token").fill("")
    check.click()
    expect(alert).to_contain_text("Enter a personal access token")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert world.runner.api("GET", "/api/github").json()["connected"] is False

    # Readers (and editors) see the status and the history, and no action.
    for role in ("reader", "editor"):
        page.route("**/api/me", _answer_me({"name": "rita", "provider": "aad", "roles": [role]}))
        page.reload()
        open_github(page)
        expect(page.locator("#github-status")).to_contain_text("Only an admin can connect a repository.")
        expect(page.get_by_role("button", name="Connect a repository…")).to_have_count(0)
        # The history (rows left by the tests before, or "No syncs yet." when run alone).
        expect(
            page.locator("#github-history tbody tr, #github-history-note").locator("visible=true").first
        ).to_be_visible()
        page.unroute("**/api/me")


# --- what syncing does now, Cancel, the journal ----------------------------------------------

SEED = "e2e-seed"  # the delivery id of journal rows a test writes (and removes afterwards)


def connect_by_api(runner: Runner) -> None:
    answer = runner.api(
        "POST",
        "/api/github/connect",
        json={"repository": "octo/flows", "branch": "main", "token": ADMIN_TOKEN},
    )
    assert answer.status_code == 200, answer.text


@pytest.fixture
def journal(world: World) -> Iterator[SyncJournal]:
    """The runner's own sync journal, for rows a test needs; they are removed afterwards."""
    tables = world.runner.table_store()
    yield SyncJournal(tables)
    for entity in list(
        tables.query_entities(SYNC_JOURNAL_TABLE, "PartitionKey eq @pk", parameters={"pk": "sync"})
    ):
        if str(entity.get("deliveries", "")).startswith(SEED):
            tables.delete_entity(SYNC_JOURNAL_TABLE, "sync", entity["RowKey"])


def history_rows(page: Page) -> Locator:
    return page.locator("#github-history tbody tr")


def test_a_running_sync_is_shown_live_and_sync_now_says_what_it_waits_behind(
    page: Page, world: World
) -> None:
    runner, repo = world.runner, world.repo
    connect_by_api(runner)
    me = runner.api("GET", "/api/me").json()["name"]
    holder = f"{socket.gethostname()}:{os.getpid()}"
    head = repo.head()
    # A sync on another instance, as the runner's own passes see it: this process holds the lease
    # in the runner's storage and says what it does.
    with SyncLease(runner.table_store()).hold(trigger="push", phase="fetching") as held:
        page.get_by_role("tab", name="GitHub").click()
        activity = page.locator("#github-sync-state")
        expect(activity).to_have_attribute("data-state", "running")
        expect(activity).to_contain_text("Syncing — fetching since")
        expect(activity).to_contain_text(f"on {holder} (push)")

        # The tab follows it by itself: the next phase shows without Refresh.
        held.update(phase="applying", commit=head)
        expect(activity).to_contain_text(f"Syncing {head[:7]} — applying since", timeout=10_000)
        shot(page, "09-sync-running")

        # Sync now behind it: queued, and the person who pressed it is told what it waits for.
        page.get_by_role("button", name="Sync now").click()
        queued = page.locator(".toast").filter(has_text="Sync queued behind")
        expect(queued).to_contain_text(f"the push sync of {head[:7]}, applying on {holder} since")
        expect(activity).to_contain_text("1 request waiting behind it")

        # Cancel: the waiting request is dropped and the running sync is asked to stop.
        cancel = page.get_by_role("button", name="Cancel sync")
        expect(cancel).to_be_visible()
        cancel.click()
        expect(page.locator(".toast").filter(has_text="Cancel requested")).to_contain_text(
            "1 waiting request dropped"
        )
        expect(activity).to_contain_text(f"cancel requested by {me}")
        expect(activity).not_to_contain_text("waiting behind it")
        expect(page.get_by_role("button", name="Cancelling…")).to_be_disabled()
        held.refresh()
        assert held.cancelled_by == me
        shot(page, "10-sync-cancelling")

        # Another tab: the GitHub tab stops reading while it is not shown.
        reads: list[str] = []

        def count(request: Request) -> None:
            if "/api/github" in request.url:
                reads.append(request.url)

        page.get_by_role("tab", name="Scripts").click()
        page.wait_for_timeout(300)  # a read already under way may still end
        page.on("request", count)
        page.wait_for_timeout(4000)  # twice the tab's interval while a sync runs
        page.remove_listener("request", count)
        assert reads == []

    # The lease is free: back on the tab, nothing runs, and the Cancel button is gone.
    page.get_by_role("tab", name="GitHub").click()
    expect(page.locator("#github-sync-state")).to_have_count(0, timeout=30_000)
    expect(page.get_by_role("button", name="Cancel sync")).to_have_count(0)

    # A Sync now that finds nothing to change has no journal row, but answers all the same.
    listed = history_rows(page).count()
    page.get_by_role("button", name="Sync now").click()
    expect(page.locator(".toast").filter(has_text="Up to date")).to_contain_text(
        f"the workspace already matches main at {head[:7]}", timeout=60_000
    )
    last_checked = page.locator(".github-facts .last-pass")
    expect(last_checked).to_contain_text("just now")
    expect(last_checked).to_contain_text(f"up to date at {head[:7]}")
    expect(history_rows(page)).to_have_count(listed)
    shot(page, "11-up-to-date")


def test_in_dev_github_cannot_reach_the_webhook_and_the_tab_says_so(page: Page, world: World) -> None:
    # `slipway dev` as a developer runs it: its webhook URL is its own loopback address.
    (world.root / "dev-runner").mkdir()
    dev = start_ui_runner(
        world.root / "dev-runner",
        extra_env={
            "SLIPWAY_GITHUB_API_URL": world.github.url,
            "SLIPWAY_GITHUB_WEB_URL": world.remotes.as_uri(),
        },
    )
    try:
        page.goto(dev.url + "/")
        open_github(page)
        dialog = fill_connect(page, "octo/flows", ADMIN_TOKEN)
        dialog.get_by_role("button", name="Check").click()
        dialog.get_by_role("button", name="Connect and sync").click()

        expect(dialog.get_by_role("heading")).to_have_text("GitHub cannot send pushes here")
        expect(dialog.locator(".github-warning")).to_contain_text(
            f"GitHub cannot deliver pushes to {dev.url}"
        )
        expect(dialog.locator(".github-warning")).to_contain_text("127.0.0.1 is not a public address")
        expect(dialog).to_contain_text("press Sync now")
        shot(page, "12-dev-no-webhook")
        dialog.get_by_role("button", name="Done").click()
        expect(dialog).to_be_hidden()

        card = page.locator("#github-status .github-card")
        expect(card).to_have_attribute("data-connected", "true")
        warning = page.locator("#github-webhook-warning")
        expect(warning).to_be_visible()
        expect(warning).to_contain_text("Pushes do not reach this Slipway.")
        expect(warning).to_contain_text("asking GitHub every five minutes")
        expect(card).to_contain_text("None: GitHub cannot reach")
        expect(card).not_to_contain_text("Managed by Slipway")
        assert world.github.repos["octo/flows"].hooks == {}
        shot(page, "13-dev-warning")
    finally:
        try:
            if dev.api("GET", "/api/github").json().get("connected"):
                dev.api("POST", "/api/github/disconnect")
        finally:
            dev.stop()


def test_the_journal_pages_with_load_more(page: Page, world: World, journal: SyncJournal) -> None:
    start = datetime(2021, 3, 1, 9, 0, tzinfo=UTC)
    for n in range(60):
        journal.record(
            SyncRecord(
                "push", "succeeded", f"incremental sync number {n}", (f"{SEED}-{n}",),
                before=f"{n:040x}", after=f"{n + 1:040x}", changed=1, bytes=10, at=start + timedelta(minutes=n),
            )
        )  # fmt: skip
    total = len(world.runner.api("GET", "/api/github/syncs?limit=500").json()["entries"])
    assert 60 <= total <= 100  # with the rows of the tests before: two pages

    page.get_by_role("tab", name="GitHub").click()
    rows = history_rows(page)
    expect(rows).to_have_count(50)
    more = page.get_by_role("button", name="Load more")
    expect(more).to_be_visible()
    more.click()
    expect(rows).to_have_count(total)
    expect(more).to_be_hidden()
    # Newest first, down to the oldest row of all.
    expect(rows.last.locator("td").nth(1)).to_have_attribute("title", f"delivery {SEED}-0")
    expect(rows.last).to_contain_text("incremental sync number 0")

    # A refresh keeps what "Load more" added.
    page.get_by_role("button", name="Refresh").click()
    page.wait_for_timeout(500)
    expect(rows).to_have_count(total)


def test_a_sync_that_put_hand_edits_back_is_marked_and_lists_them(
    page: Page, world: World, journal: SyncJournal
) -> None:
    journal.record(
        SyncRecord(
            "manual", "succeeded", "full sync to 0123456789ab; 2 file(s) changed by hand were put back",
            (f"{SEED}-drift",), before="0123456789ab" + "0" * 28, after="0123456789ab" + "0" * 28,
            changed=2, drift=("shared.py", "flows/lib/util.py"),
        )
    )  # fmt: skip
    page.get_by_role("tab", name="GitHub").click()
    marked = page.locator("#github-history tbody tr[data-drift]")
    expect(marked).to_have_count(1)
    expect(marked).to_have_attribute("data-drift", "2")
    expect(marked.locator(".badge.drift")).to_have_text("2 put back")
    paths = marked.locator("details.drift li")
    expect(paths.first).to_be_hidden()
    marked.get_by_text("2 files changed by hand, put back").click()
    expect(paths).to_have_text(["shared.py", "flows/lib/util.py"])
    shot(page, "14-drift")
    # The list stays open while the tab reads the journal again.
    page.get_by_role("button", name="Refresh").click()
    page.wait_for_timeout(500)
    expect(paths).to_have_text(["shared.py", "flows/lib/util.py"])


@pytest.mark.xfail(
    strict=True,
    reason="the sync engine does not report drift yet: SyncResult has no `drift`, so no journal row carries it",
)
def test_sync_now_after_a_hand_edit_marks_the_entry_with_the_file_put_back(page: Page, world: World) -> None:
    runner = world.runner
    connect_by_api(runner)
    (runner.workspace / "shared.py").write_text("VALUE = 2  # edited on the share\n")
    page.get_by_role("tab", name="GitHub").click()
    page.get_by_role("button", name="Sync now").click()
    manual = page.locator('#github-history tbody tr[data-trigger="manual"]')
    expect(manual).to_have_count(1, timeout=60_000)
    assert_mirrors(world.repo, "main", runner.workspace)
    expect(manual).to_have_attribute("data-drift", "1", timeout=2000)
