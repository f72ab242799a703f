"""Signing in to the UI with the API token, in a real browser against a real `slipway dev`.

The runner grants the development principal only on loopback, so it listens on the wildcard
address (0.0.0.0, which is not loopback) with SLIPWAY_API_TOKEN set, and the browser still
browses it at 127.0.0.1: every request needs the token. The user meets the sign-in panel,
is told a wrong token is refused, signs in with the right one, downloads the workspace zip,
runs a workflow and follows its log (polled: EventSource cannot send the token), reloads
(the tab keeps the token), is sent back to the panel when the token stops being accepted,
and signs out. No request address ever holds the token. Set SLIPWAY_E2E_SCREENSHOTS to a
folder to keep a screenshot of each stage.
"""

from __future__ import annotations

import io
import re
import secrets
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request, expect
from runner_process import Runner
from ui_pages import screenshot, start_ui_runner, watched

TOKEN = secrets.token_urlsafe(32)  # 43 characters; the runner wants 32 or more off loopback
WRONG_TOKEN = secrets.token_urlsafe(32)
RUN_HASH = re.compile(r"#/runs/([^/]+)$")

TINY = """\
from slipway.sdk import Workflow

workflow = Workflow(description="Says hello once.")


@workflow.step()
def hello(ctx):
    print("hello from tiny")
"""


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    started = start_ui_runner(
        tmp_path_factory.mktemp("e2e-signin"),
        extra_env={"SLIPWAY_API_TOKEN": TOKEN},
        host="0.0.0.0",  # not loopback: no development principal
    )
    try:
        folder = started.workspace / "workflows"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tiny.py").write_text(TINY)
        yield started
    finally:
        started.stop()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    opened = browser.new_context(viewport={"width": 1360, "height": 860}, accept_downloads=True)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    with watched(context.new_page()) as opened:
        yield opened


def shot(page: Page, name: str) -> None:
    screenshot(page, f"signin-{name}")


def test_the_runner_refuses_requests_without_the_token(runner: Runner) -> None:
    """The premise of the UI test: no development principal, the token is what signs in."""
    assert runner.api("GET", "/api/me").status_code == 401
    me = runner.api("GET", "/api/me", headers={"Authorization": f"Bearer {TOKEN}"})
    assert me.status_code == 200, me.text
    assert me.json()["provider"] == "token"


def test_sign_in_with_token_run_reload_and_sign_out(
    context: BrowserContext, page: Page, runner: Runner
) -> None:
    requests: list[Request] = []
    context.on("request", lambda request: requests.append(request))
    signin = page.locator("#signin")
    token_field = page.get_by_label("API token", exact=True)
    sign_in = page.get_by_role("button", name="Sign in with the token")

    # Nothing proves who this is: the panel, no app, and no Microsoft sign-in outside a Static Web App.
    page.goto(runner.url + "/")
    expect(signin.get_by_role("heading", name="Use an API token")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    expect(page.locator("#signin-message")).to_be_hidden()
    expect(page.get_by_role("link", name="Sign in with Microsoft")).to_be_hidden()
    expect(token_field).to_have_attribute("type", "password")

    # A wrong token is refused in the API's words, and not kept.
    token_field.fill(WRONG_TOKEN)
    sign_in.click()
    expect(signin.get_by_role("alert")).to_have_text("The token was refused: the bearer token is not valid.")
    assert page.evaluate("sessionStorage.length") == 0
    shot(page, "01-refused")

    # The right one opens the editor with the workspace tree.
    token_field.fill(TOKEN)
    token_field.press("Enter")
    expect(page.locator("#who")).to_have_text("api-token · reader, editor, admin")
    expect(signin).to_be_hidden()
    expect(page.locator('.tree-row[data-path="workflows"]')).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('slipway.apiToken')") == TOKEN
    assert page.evaluate("localStorage.getItem('slipway.apiToken')") is None
    shot(page, "02-editor")

    # The workspace zip cannot be a plain link with a token: fetched with it and saved.
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download zip").click()
    download = download_info.value
    assert re.fullmatch(r"workspace-\d{8}-\d{6}\.zip", download.suggested_filename), (
        download.suggested_filename
    )
    with zipfile.ZipFile(io.BytesIO(Path(download.path()).read_bytes())) as archive:
        assert archive.read("workflows/tiny.py").decode() == TINY

    # The Workflows tab: the list, a run, and its log, which is polled.
    page.get_by_role("tab", name="Workflows").click()
    tiny = page.locator("#workflow-list").get_by_role("link").filter(has_text="tiny")
    expect(tiny).to_contain_text("Says hello once.")
    tiny.click()
    page.locator("#workflow-detail").get_by_role("button", name="Run…").click()
    page.get_by_role("form", name="Run tiny").get_by_role("button", name="Start run").click()
    expect(page).to_have_url(RUN_HASH)
    run = page.locator("#run-page")
    expect(run.locator(".run-head .badge")).to_have_text("succeeded", timeout=20_000)
    log = run.get_by_role("log")
    expect(log.get_by_text("hello from tiny")).to_be_visible()
    expect(run.locator(".log-mode")).to_have_text(re.compile("^(polling|complete)$"))
    shot(page, "03-run")

    # A reload keeps the session (the tab's sessionStorage) and the run page.
    page.reload()
    expect(page.locator("#who")).to_contain_text("api-token")
    expect(signin).to_be_hidden()
    expect(run.locator(".run-head .badge")).to_have_text("succeeded")
    expect(log.get_by_text("hello from tiny")).to_be_visible()

    # The token stops being accepted (changed on the server): the next request brings the panel
    # back, saying why, and the tab forgets the token.
    page.evaluate(f"sessionStorage.setItem('slipway.apiToken', {WRONG_TOKEN!r})")
    run.get_by_role("link", name="tiny").click()
    expect(page.locator("#signin-message")).to_contain_text(
        "The API token was refused (the bearer token is not valid)"
    )
    expect(page.locator("#app")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    shot(page, "04-revoked")

    # Signing in again returns to where the user was: the workflow with its run.
    token_field.fill(TOKEN)
    sign_in.click()
    expect(signin).to_be_hidden()
    expect(page).to_have_url(re.compile(r"#/workflows/tiny$"))
    expect(page.locator("#workflow-history tbody tr .badge")).to_have_text(["succeeded"])

    # Sign out: back to the panel, the token forgotten, also after a reload.
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#signin-message")).to_contain_text("You signed out")
    expect(page.locator("#app")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    page.reload()
    expect(signin.get_by_role("heading", name="Use an API token")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    shot(page, "05-signed-out")

    # The token went in headers only: never in an address, never to an event stream.
    api_requests = [r for r in requests if "/api/" in r.url]
    assert any(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in api_requests)
    assert [r.url for r in requests if TOKEN in r.url or WRONG_TOKEN in r.url] == []
    assert [r.url for r in requests if "text/event-stream" in (r.headers.get("accept") or "")] == []
    assert any(re.search(r"/api/runs/[^/]+/logs\?after=", r.url) for r in api_requests)


def test_microsoft_sign_in_is_offered_behind_a_static_web_app(page: Page, runner: Runner) -> None:
    """Where /.auth/me answers as a Static Web App's does, its sign-in returns to the same page."""
    page.route("**/.auth/me", lambda route: route.fulfill(json={"clientPrincipal": None}))
    page.goto(runner.url + "/#/workflows/tiny")
    microsoft = page.get_by_role("link", name="Sign in with Microsoft")
    expect(microsoft).to_be_visible()
    expect(microsoft).to_have_attribute(
        "href", "/.auth/login/aad?post_login_redirect_uri=%2F%23%2Fworkflows%2Ftiny"
    )
    expect(page.get_by_label("API token", exact=True)).to_be_visible()
