"""The GitHub connection in a real browser (Debian chromium) against the real `slipway dev`.

The repository is a real git repository: a bare remote on disk, reached through
`SLIPWAY_GITHUB_WEB_URL=file://…` (so `octo/flows` is fetched from `<remotes>/octo/flows.git`),
and GitHub's REST API is the fake of `tests/fakes/github.py`. One runner, one fake and one
browser serve the module; the connection is global, so each test leaves it disconnected. Set
SLIPWAY_E2E_SCREENSHOTS to a folder to keep a screenshot of each stage.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakes.github import FakeGitHub, FakeToken
from gitrepos import Repo, assert_mirrors
from playwright.sync_api import Browser, Locator, Page, Route, expect
from runner_process import Runner
from ui_pages import open_page, screenshot, start_ui_runner

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
            yield World(runner, github, repo)
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
