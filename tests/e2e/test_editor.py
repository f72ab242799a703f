"""The script editor in a real browser (Debian chromium, headless) against the real `slipway dev`.

One runner and one browser serve the module; each test has its own browser context (fresh
local storage) and its own folder of the workspace. Set SLIPWAY_E2E_SCREENSHOTS to a folder to
keep a screenshot of each stage.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from runner_process import Runner
from ui_pages import open_page, screenshot, start_ui_runner

from slipway.workspace.mode import WorkspaceModeStore

DIRTY = re.compile(r"\bdirty\b")


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    started = start_ui_runner(tmp_path_factory.mktemp("e2e"))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def page(browser: Browser, runner: Runner) -> Iterator[Page]:
    with open_page(browser, viewport={"width": 1360, "height": 820}, accept_downloads=True) as opened:
        opened.goto(runner.url + "/")
        yield opened


def shot(page: Page, name: str) -> None:
    screenshot(page, name)


def row(page: Page, path: str) -> Locator:
    return page.locator(f'.tree-row[data-path="{path}"]')


def expand(page: Page, folder: str) -> None:
    if row(page, folder).get_attribute("aria-expanded") != "true":
        row(page, folder).click()
    expect(row(page, folder)).to_have_attribute("aria-expanded", "true")


def editor_text(page: Page) -> str:
    """What Monaco shows (the files here fit on screen), with its non-breaking spaces undone."""
    return page.locator("#editor .view-lines").inner_text().replace("\u00a0", " ")


def open_in_editor(page: Page, path: str) -> None:
    row(page, path).click()
    expect(page.locator("#doc-name")).to_have_text(path.rsplit("/", 1)[-1])
    expect(page.locator("#editor .monaco-editor")).to_be_visible()


def type_at_end(page: Page, text: str) -> None:
    page.locator("#editor .view-lines").click()
    page.keyboard.press("Control+End")
    page.keyboard.type(text)


def dialog_action(page: Page, button: str, fill: str | None = None) -> Locator:
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    if fill is not None:
        dialog.get_by_role("textbox").fill(fill)
    dialog.get_by_role("button", name=button, exact=True).click()
    return dialog


def test_create_edit_save_reload_rename_download_and_delete(page: Page, runner: Runner) -> None:
    expect(page.locator("#who")).to_contain_text("editor")
    shot(page, "01-empty")

    page.get_by_role("button", name="New folder").click()
    expect(dialog_action(page, "Create folder", fill="flows")).to_be_hidden()
    expect(row(page, "flows")).to_have_attribute("aria-selected", "true")

    # "New file" starts in the selected folder.
    page.get_by_role("button", name="New file").click()
    expect(page.get_by_role("dialog").get_by_role("textbox")).to_have_value("flows/")
    expect(dialog_action(page, "Create file", fill="flows/hello.py")).to_be_hidden()
    expect(page.locator("#doc-name")).to_have_text("hello.py")
    assert (runner.workspace / "flows" / "hello.py").read_bytes() == b""

    type_at_end(page, "greeting = 'hi'\nprint(greeting)\n")
    expect(page.locator("#doc-dirty")).to_be_visible()
    expect(row(page, "flows/hello.py")).to_have_class(DIRTY)
    shot(page, "02-dirty")

    page.keyboard.press("Control+S")
    expect(page.locator("#doc-dirty")).to_be_hidden()
    expect(row(page, "flows/hello.py")).not_to_have_class(DIRTY)
    saved = "greeting = 'hi'\nprint(greeting)\n"
    assert (runner.workspace / "flows" / "hello.py").read_text() == saved

    # After a reload the folder is still expanded and the file holds what was saved.
    page.reload()
    expect(row(page, "flows")).to_have_attribute("aria-expanded", "true")
    open_in_editor(page, "flows/hello.py")
    expect(page.locator("#editor .view-lines")).to_contain_text("print(greeting)")
    assert "greeting = 'hi'" in editor_text(page)
    expect(page.locator("#status-language")).to_have_text("Python")

    page.get_by_role("button", name="Rename").click()
    expect(dialog_action(page, "Rename", fill="flows/renamed.py")).to_be_hidden()
    expect(row(page, "flows/renamed.py")).to_be_visible()
    expect(row(page, "flows/hello.py")).to_have_count(0)
    expect(page.locator("#doc-name")).to_have_text("renamed.py")
    assert not (runner.workspace / "flows" / "hello.py").exists()
    assert (runner.workspace / "flows" / "renamed.py").read_text() == saved

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download zip").click()
    download = download_info.value
    assert download.suggested_filename.startswith("workspace-") and download.suggested_filename.endswith(
        ".zip"
    )
    with zipfile.ZipFile(io.BytesIO(Path(download.path()).read_bytes())) as archive:
        names = archive.namelist()
        assert "flows/renamed.py" in names, names
        assert archive.read("flows/renamed.py").decode() == saved

    page.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Delete the file flows/renamed.py?")
    shot(page, "03-delete-confirm")
    dialog.get_by_role("button", name="Cancel").click()
    assert (runner.workspace / "flows" / "renamed.py").exists()

    page.get_by_role("button", name="Delete").click()
    expect(dialog_action(page, "Delete file")).to_be_hidden()
    expect(row(page, "flows/renamed.py")).to_have_count(0)
    expect(page.locator("#placeholder")).to_be_visible()
    assert not (runner.workspace / "flows" / "renamed.py").exists()

    # A folder with something in it says that everything inside goes too.
    (runner.workspace / "flows" / "keep.txt").write_text("x\n")
    page.get_by_role("button", name="Refresh").click()
    row(page, "flows").click()
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("dialog")).to_contain_text("deleted recursively, with the 1 file")
    expect(dialog_action(page, "Delete folder")).to_be_hidden()
    expect(row(page, "flows")).to_have_count(0)
    assert not (runner.workspace / "flows").exists()


def test_a_conflicting_save_never_loses_the_users_text(page: Page, runner: Runner) -> None:
    folder = runner.workspace / "conflict"
    folder.mkdir()
    (folder / "notes.md").write_text("# Notes\n")
    (folder / "other.md").write_text("# Other\n")
    page.get_by_role("button", name="Refresh").click()
    expand(page, "conflict")
    open_in_editor(page, "conflict/notes.md")
    expect(page.locator("#status-language")).to_have_text("Markdown")

    # Someone else saves first, through the API, with the ETag the editor also holds.
    current = runner.api("GET", "/api/workspace/files/conflict/notes.md")
    theirs = runner.api(
        "PUT",
        "/api/workspace/files/conflict/notes.md",
        content=b"# Notes\ntheirs\n",
        headers={"If-Match": current.headers["ETag"], "Content-Type": "application/octet-stream"},
    )
    assert theirs.status_code == 200, theirs.text

    type_at_end(page, "mine\n")
    mine = "# Notes\nmine\n"
    page.keyboard.press("Control+S")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("was changed on the server after you opened it")
    shot(page, "04-conflict")

    # Cancel keeps the user's text in the editor, still unsaved.
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#doc-dirty")).to_be_visible()
    assert "mine" in editor_text(page)
    assert (folder / "notes.md").read_text() == "# Notes\ntheirs\n"

    page.get_by_role("button", name="Save", exact=True).click()
    dialog_action(page, "Compare")
    compare = page.locator("dialog.compare")
    expect(compare).to_be_visible()
    diff = compare.locator(".monaco-diff-editor")
    expect(diff.locator(".editor.original .view-lines")).to_contain_text("theirs")
    expect(diff.locator(".editor.modified .view-lines")).to_contain_text("mine")
    shot(page, "05-compare")
    compare.get_by_role("button", name="Overwrite with mine").click()
    expect(compare).to_be_hidden()
    expect(page.locator("#doc-dirty")).to_be_hidden()
    assert (folder / "notes.md").read_text() == mine

    # Once more, and this time take theirs: Undo still brings the user's text back.
    current = runner.api("GET", "/api/workspace/files/conflict/notes.md")
    runner.api(
        "PUT",
        "/api/workspace/files/conflict/notes.md",
        content=b"# Notes\nsecond\n",
        headers={"If-Match": current.headers["ETag"], "Content-Type": "application/octet-stream"},
    ).raise_for_status()
    type_at_end(page, "again\n")
    page.keyboard.press("Control+S")
    expect(dialog_action(page, "Reload (discard mine)")).to_be_hidden()
    expect(page.locator("#editor .view-lines")).to_contain_text("second")
    assert "again" not in editor_text(page)
    expect(page.locator("#doc-dirty")).to_be_hidden()
    page.locator("#editor .view-lines").click()
    page.keyboard.press("Control+Z")
    expect(page.locator("#editor .view-lines")).to_contain_text("again")
    expect(page.locator("#doc-dirty")).to_be_visible()

    # Switching to another file or leaving the page with unsaved text asks first.
    row(page, "conflict/other.md").click()
    expect(dialog_action(page, "Cancel")).to_be_hidden()
    expect(page.locator("#doc-name")).to_have_text("notes.md")
    assert "again" in editor_text(page)
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.type), dialog.accept()))
    page.reload()
    assert asked == ["beforeunload"]


def test_a_github_managed_workspace_is_read_only(page: Page, runner: Runner) -> None:
    folder = runner.workspace / "managed"
    folder.mkdir()
    (folder / "build.py").write_text("print('from git')\n")
    modes = WorkspaceModeStore(runner.table_store())
    modes.set_github("octo/flows", "main")
    try:
        page.reload()
        banner = page.locator("#readonly-banner")
        expect(banner).to_have_text("Managed by GitHub: octo/flows (main) — editing is disabled")
        for name in ("New file", "New folder", "Rename", "Delete", "Save"):
            expect(page.get_by_role("button", name=name, exact=True)).to_be_hidden()
        expect(page.get_by_role("link", name="Download zip")).to_be_visible()

        expand(page, "managed")
        open_in_editor(page, "managed/build.py")
        expect(page.locator("#doc-readonly")).to_be_visible()
        type_at_end(page, "# typed\n")
        page.keyboard.press("Control+S")
        expect(page.locator("#doc-dirty")).to_be_hidden()
        assert "# typed" not in editor_text(page)
        assert (folder / "build.py").read_text() == "print('from git')\n"
        row(page, "managed/build.py").click(button="right")
        expect(page.locator(".context-menu")).not_to_contain_text("Delete")
        shot(page, "06-github")

        # The server refuses too.
        refused = runner.api(
            "PUT",
            "/api/workspace/files/managed/build.py",
            content=b"x",
            headers={"If-None-Match": "*", "Content-Type": "application/octet-stream"},
        )
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "read_only"
    finally:
        modes.set_manual()


def test_errors_are_shown_in_words_and_readers_cannot_edit(page: Page, runner: Runner) -> None:
    folder = runner.workspace / "errors"
    folder.mkdir()
    (folder / "taken.py").write_text("x = 1\n")
    page.get_by_role("button", name="Refresh").click()
    expand(page, "errors")

    # The server's refusal, in its own words, where the user can fix the name and retry.
    page.get_by_role("button", name="New file").click()
    dialog = dialog_action(page, "Create file", fill="errors/taken.py")
    expect(dialog.get_by_role("alert")).to_contain_text("already exists")
    dialog.get_by_role("button", name="Cancel").click()

    # A network failure is reported, not swallowed.
    page.route("**/api/workspace/tree", lambda route: route.abort())
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator(".toast.error")).to_contain_text("Could not load the workspace tree")
    expect(page.locator(".toast.error")).to_contain_text("could not be reached")
    page.unroute("**/api/workspace/tree")

    # A principal without the editor role sees no mutating control and a read-only editor.
    page.route(
        "**/api/me",
        lambda route: route.fulfill(
            json={"name": "rita", "provider": "aad", "roles": ["reader"]}, content_type="application/json"
        ),
    )
    page.reload()
    expect(page.locator("#readonly-banner")).to_contain_text("rita does not have the editor role")
    for name in ("New file", "New folder", "Rename", "Delete", "Save"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_hidden()
    expand(page, "errors")
    open_in_editor(page, "errors/taken.py")
    expect(page.locator("#doc-readonly")).to_be_visible()
    type_at_end(page, "y = 2\n")
    assert "y = 2" not in editor_text(page)
    shot(page, "07-reader")
