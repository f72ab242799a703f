"""The Secrets view in a real browser (Debian chromium) against the real `slipway dev`.

On loopback the development principal is an admin: it adds a secret, replaces its value and
deletes it, and no value ever comes back from the server or shows in the page. An editor (the
same runner, with /api/me answering the editor's roles) sees the names and no actions. Set
SLIPWAY_E2E_SCREENSHOTS to a folder to keep a screenshot of each stage.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Response, Route, expect
from playwright.sync_api import Error as PlaywrightError
from runner_process import Runner
from ui_pages import open_page, screenshot, start_ui_runner

VALUE = "e2e-secret-value-0123456789"
NEW_VALUE = "e2e-replaced-value-9876543210"


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    started = start_ui_runner(tmp_path_factory.mktemp("e2e-secrets"))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def page(browser: Browser, runner: Runner) -> Iterator[Page]:
    with open_page(browser, viewport={"width": 1360, "height": 860}) as opened:
        answers: list[str] = []

        def keep(response: Response) -> None:
            if "/api/" in response.url and response.status != 204:
                # A body the page already let go of (an aborted request) held nothing to check.
                with contextlib.suppress(PlaywrightError):
                    answers.append(response.text())

        opened.on("response", keep)
        opened.goto(runner.url + "/")
        yield opened
        assert not [a for a in answers if VALUE in a or NEW_VALUE in a], "a value came back from the API"


def _open_secrets(page: Page) -> None:
    page.get_by_role("tab", name="Secrets").click()
    expect(page.locator("#view-secrets")).to_be_visible()


def test_an_admin_adds_replaces_and_deletes_a_secret(page: Page, runner: Runner) -> None:
    _open_secrets(page)
    expect(page.locator("#secrets-note")).to_have_text("No secrets yet. Add one for a workflow to use.")

    page.locator("#secrets-add").click()
    dialog = page.locator("dialog.secret-dialog")
    expect(page.locator("#secret-value")).to_have_attribute("type", "password")
    page.locator("#secret-name").fill("bad-name")
    page.locator("#secret-value").fill(VALUE)
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator(".dialog-error")).to_contain_text("like an environment variable")
    page.locator("#secret-name").fill("api_key")  # typed lowercase, shown and sent uppercase
    expect(page.locator("#secret-name")).to_have_value("API_KEY")
    screenshot(page, "secrets-add")
    page.locator("#secret-value").press("Enter")
    expect(dialog).to_have_count(0)

    row = page.locator('#secrets-table tr[data-secret="API_KEY"]')
    expect(row).to_be_visible()
    expect(page.locator("#secrets-note")).to_have_text("1 secret")
    expect(page.locator("#secrets-body")).to_have_text(
        re.compile(r"^1 secretNameUpdated\s*API_KEY—Replace…Delete…$")
    )
    assert VALUE not in page.content()
    screenshot(page, "secrets-list")

    row.locator('button[data-action="replace"]').click()
    expect(dialog.get_by_role("heading")).to_have_text("Replace API_KEY")
    page.locator("#secret-value").fill(NEW_VALUE)
    dialog.get_by_role("button", name="Replace").click()
    expect(dialog).to_have_count(0)
    expect(page.locator(".toast")).to_contain_text(["The value of API_KEY was replaced."])
    assert NEW_VALUE not in page.content()

    row.locator('button[data-action="delete"]').click()
    confirm = page.locator("dialog")
    expect(confirm).to_contain_text("Delete the secret API_KEY?")
    confirm.get_by_role("button", name="Delete").click()
    expect(page.locator("#secrets-note")).to_have_text("No secrets yet. Add one for a workflow to use.")
    assert runner.api("GET", "/api/secrets").json() == {"secrets": []}


def test_an_editor_sees_the_names_read_only(browser: Browser, runner: Runner) -> None:
    assert runner.api("PUT", "/api/secrets/DEPLOY_TOKEN", json={"value": VALUE}).status_code == 200
    with open_page(browser, viewport={"width": 1360, "height": 860}) as page:

        def as_editor(route: Route) -> None:
            me = {"name": "grace", "provider": "aad", "roles": ["reader", "editor"]}
            route.fulfill(status=200, content_type="application/json", body=json.dumps(me))

        page.route("**/api/me", as_editor)
        page.goto(runner.url + "/")
        _open_secrets(page)

        expect(page.locator('#secrets-table tr[data-secret="DEPLOY_TOKEN"]')).to_be_visible()
        expect(page.locator("#secrets-add")).to_be_hidden()
        expect(page.locator("#secrets-table button")).to_have_count(0)
        expect(page.locator("#secrets-role-note")).to_contain_text("Only an admin can add, replace or delete")
        screenshot(page, "secrets-editor")
    runner.api("DELETE", "/api/secrets/DEPLOY_TOKEN")
