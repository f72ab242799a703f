"""The Deployments tab in a real browser (Debian chromium, headless) against the real `slipway dev`.

An admin deploys a workspace folder (the `static` fixture) from the form, follows the
deployment on its page until every step has finished, and opens the site's live link, which
serves the folder under /sites/<site>/. A second deployment asks for an output folder that
does not exist: it fails with the error on its page, and the site keeps serving the first
version. A third one publishes a new version; from the site's history the admin rolls back by
hand to the first deployment, which the site serves again. A reader sees the same pages
without any control that changes something. Set SLIPWAY_E2E_SCREENSHOTS to a folder to keep a
screenshot of each stage.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from runner_process import REPO_ROOT, Runner
from ui_pages import open_page, screenshot, start_ui_runner

STATIC_FIXTURE = REPO_ROOT / "tests" / "fixtures" / "sites" / "static"
NPM_FIXTURE = REPO_ROOT / "tests" / "fixtures" / "sites" / "npm-build"
DEPLOYMENT_HASH = re.compile(r"#/deployments/([^/]+)$")
DURATION = re.compile(r"^\d+(\.\d)? (ms|s)$")
BUILD_STEPS = ("checkout", "detect", "install", "test", "build", "package")
DEPLOY_TIMEOUT = 30_000


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    started = start_ui_runner(tmp_path_factory.mktemp("e2e-deployments"))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def page(browser: Browser, runner: Runner) -> Iterator[Page]:
    with open_page(browser, viewport={"width": 1360, "height": 900}) as opened:
        yield opened


def shot(page: Page, name: str) -> None:
    screenshot(page, f"deployments-{name}", full_page=True)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def static_site(runner: Runner, folder: str, heading: str) -> Path:
    """The `static` fixture copied into the workspace as `folder`, with its own heading."""
    target = runner.workspace / folder
    shutil.copytree(STATIC_FIXTURE, target)
    set_heading(target, heading)
    return target


def set_heading(folder: Path, heading: str) -> None:
    index = folder / "index.html"
    index.write_text(re.sub(r"<h1>.*</h1>", f"<h1>{heading}</h1>", index.read_text()))


def served(runner: Runner, site: str) -> str:
    response = httpx.get(f"{runner.url}/sites/{site}/", timeout=10)
    assert response.status_code == 200, (response.status_code, response.text[:300])
    return response.text


def step_row(page: Page, name: str) -> Locator:
    return page.locator(f'#deployment-page .run-steps li[data-step="{name}"]')


def deployment_id_of(page: Page) -> str:
    expect(page).to_have_url(DEPLOYMENT_HASH)
    match = DEPLOYMENT_HASH.search(page.url)
    assert match
    return match.group(1)


def open_form(page: Page) -> Locator:
    page.locator("#deployments-new").click()
    form = page.get_by_role("form", name="Deploy a site")
    expect(form).to_be_visible()
    return form


def deploy_from_form(
    page: Page, site: str, folder: str, output_dir: str = "", build_command: str = ""
) -> str:
    """Fill in the deploy form (site, workspace folder, build options) and submit it."""
    form = open_form(page)
    form.get_by_label("Site").fill(site)
    form.get_by_label("Workspace folder").check()
    form.get_by_label("Folder", exact=True).first.fill(folder)
    options = form.locator("details.deploy-options")
    if output_dir or build_command or options.get_attribute("open") is not None:
        if options.get_attribute("open") is None:
            options.locator("summary").click()
        form.get_by_label("Output folder").fill(output_dir)
        form.get_by_label("Build command").fill(build_command)
    form.get_by_role("button", name="Deploy", exact=True).click()
    return deployment_id_of(page)


def wait_finished(page: Page, status: str) -> None:
    expect(page.locator("#deployment-page .run-head .badge")).to_have_text(status, timeout=DEPLOY_TIMEOUT)


def test_deploy_fail_and_roll_back_by_hand(page: Page, runner: Runner) -> None:
    site = unique("e2e")
    folder = unique("site")
    files = static_site(runner, folder, f"Version one of {site}")

    page.goto(runner.url + "/")
    expect(page.locator("#who")).to_contain_text("admin")
    page.get_by_role("tab", name="Deployments").click()
    expect(page).to_have_url(re.compile(r"#/deployments$"))

    # The form refuses a site name the server does not accept, and says which field is wrong.
    form = open_form(page)
    form.get_by_label("Site").fill("Not A Name")
    form.get_by_label("Folder", exact=True).first.fill(folder)
    form.get_by_role("button", name="Deploy", exact=True).click()
    expect(form.get_by_role("alert")).to_contain_text("The request was refused: site")
    expect(form.get_by_label("Site")).to_have_attribute("aria-invalid", "true")
    shot(page, "01-refused")
    form.get_by_role("button", name="Close").click()

    # 1. The first version: every step finishes, the site serves the folder.
    first = deploy_from_form(page, site, folder)
    view = page.locator("#deployment-page")
    wait_finished(page, "succeeded")
    for name in (*BUILD_STEPS, "publish", "verify"):
        expect(step_row(page, name).locator(".badge")).to_have_text(re.compile(r"^(succeeded|skipped)$"))
    for name in ("checkout", "package", "publish", "verify"):
        expect(step_row(page, name).locator(".badge")).to_have_text("succeeded")
        expect(step_row(page, name).locator(".step-duration")).to_have_text(DURATION)
    expect(view.locator(".run-facts")).to_contain_text(f"workspace folder {folder}")
    expect(view.locator(".run-facts")).to_contain_text("manual")
    expect(view.locator(".run-facts")).to_contain_text("developer")
    expect(view.locator(".deploy-eta")).to_be_hidden()
    expect(view.get_by_role("log").locator(".log-line").first).to_be_visible()
    expect(view.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(view.get_by_role("button", name="Retry")).to_be_visible()
    shot(page, "02-succeeded")

    live_link = view.get_by_role("link", name="Open the live site")
    href = live_link.get_attribute("href")
    assert href and href.rstrip("/").endswith(f"/sites/{site}"), href
    with page.context.expect_page() as opened:
        live_link.click()
    live = opened.value
    expect(live.get_by_role("heading", level=1)).to_have_text(f"Version one of {site}")
    live.close()
    assert f"Version one of {site}" in served(runner, site)

    # The sites list: the site is deployed, its live deployment and link are shown.
    view.locator("a.back").click()
    expect(page).to_have_url(re.compile(f"#/sites/{site}$"))
    card = page.locator(f'#site-list li[data-site="{site}"]')
    expect(card.locator(".site-state")).to_have_attribute("data-state", "DEPLOYED")
    expect(card.locator(".site-live a")).to_have_attribute("href", f"#/deployments/{first}")
    expect(card.locator("a.site-url")).to_have_attribute("href", href)

    # 2. An output folder that does not exist: the build fails, the first version stays live.
    failed = deploy_from_form(page, site, folder, output_dir="no-such-folder")
    wait_finished(page, "failed")
    expect(view.locator(".run-error")).to_contain_text("no-such-folder")
    expect(view.locator(".run-steps .badge", has_text=re.compile("^failed$"))).to_have_count(1)
    expect(view.get_by_role("link", name=re.compile("Open the"))).to_have_count(0)
    shot(page, "03-failed")
    assert f"Version one of {site}" in served(runner, site)
    view.locator("a.back").click()
    expect(card.locator(".site-state")).to_have_attribute("data-state", "DEPLOYMENT_FAILED")
    expect(card.locator(".site-live a")).to_have_attribute("href", f"#/deployments/{first}")
    expect(page.locator("#site-summary")).to_contain_text("the site still serves the live deployment")

    # 3. A new version, then back to the first one by hand from the history.
    set_heading(files, f"Version three of {site}")
    third = deploy_from_form(page, site, folder, output_dir="")
    wait_finished(page, "succeeded")
    assert f"Version three of {site}" in served(runner, site)
    view.locator("a.back").click()

    rows = page.locator("#site-history tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_have_attribute("data-deployment", third)
    expect(rows.nth(0).locator(".live-tag")).to_be_visible()
    expect(rows.nth(0).get_by_role("button", name="Roll back to this")).to_have_count(0)
    expect(rows.nth(1)).to_have_attribute("data-deployment", failed)
    expect(rows.nth(1).locator(".badge")).to_have_text("failed")
    expect(rows.nth(1).get_by_role("button", name="Roll back to this")).to_have_count(0)
    expect(rows.nth(2)).to_have_attribute("data-deployment", first)
    expect(rows.nth(2).locator(".trigger")).to_contain_text("manual")
    expect(rows.nth(2).locator(".trigger")).to_contain_text("by developer")
    expect(rows.nth(2).locator(".took .total")).to_have_text(DURATION)
    shot(page, "04-history")
    rows.nth(2).get_by_role("button", name="Roll back to this").click()
    dialog = page.get_by_role("dialog", name=f"Roll back {site}")
    expect(dialog).to_contain_text(first.split("-")[1])
    dialog.get_by_role("button", name="Roll back").click()

    rollback = deployment_id_of(page)
    assert rollback not in (first, failed, third)
    wait_finished(page, "succeeded")
    expect(view.locator(".deploy-trigger")).to_contain_text("rollback")
    expect(view.locator(".deploy-trigger a")).to_have_attribute("href", f"#/deployments/{first}")
    for name in ("publish", "verify"):
        expect(step_row(page, name).locator(".badge")).to_have_text("succeeded")
    shot(page, "05-rolled-back")
    assert f"Version one of {site}" in served(runner, site)

    view.locator("a.back").click()
    expect(rows).to_have_count(4)
    expect(rows.nth(0)).to_have_attribute("data-deployment", rollback)
    expect(rows.nth(0).locator(".live-tag")).to_be_visible()
    expect(card.locator(".site-state")).to_have_attribute("data-state", "DEPLOYED")
    # The first deployment's files are live again: no way back to them while they are.
    expect(rows.nth(3)).to_contain_text("files live")
    expect(rows.nth(3).get_by_role("button", name="Roll back to this")).to_have_count(0)
    expect(rows.nth(1)).to_have_attribute("data-deployment", third)
    expect(rows.nth(1).get_by_role("button", name="Roll back to this")).to_be_visible()
    shot(page, "06-history-after-rollback")

    # Binding to a branch needs a connected GitHub repository: the form says so in words.
    page.locator("#binding-edit").click()
    binding = page.get_by_role("form", name=f"Continuous deployment of {site}")
    binding.get_by_label("Branch").fill("main")
    binding.get_by_role("button", name="Save binding").click()
    expect(binding.get_by_role("alert")).to_contain_text("connect a GitHub repository first")
    binding.get_by_role("button", name="Cancel").click()
    expect(page.locator("#site-binding")).to_contain_text("Not bound")


def test_reader_sees_sites_and_deployments_without_controls(page: Page, runner: Runner) -> None:
    site = unique("e2e")
    folder = unique("site")
    static_site(runner, folder, f"Read only {site}")
    started = runner.api(
        "POST", "/api/deployments", json={"site": site, "source": "workspace", "folder": folder}
    )
    assert started.status_code == 202, started.text
    deployment = started.json()["deployment"]["id"]
    runner.wait(
        lambda: runner.api("GET", f"/api/deployments/{deployment}").json()["status"] == "succeeded",
        "the deployment to succeed",
    )
    reader = {"name": "rita", "provider": "development", "roles": ["reader"]}
    page.route("**/api/me", lambda route: route.fulfill(json=reader))

    page.goto(f"{runner.url}/#/sites/{site}")
    expect(page.locator("#who")).to_contain_text("rita")
    card = page.locator(f'#site-list li[data-site="{site}"]')
    expect(card.locator(".site-state")).to_have_attribute("data-state", "DEPLOYED")
    expect(page.locator("#site-summary")).to_contain_text(f"workspace folder {folder}")
    rows = page.locator("#site-history tbody tr")
    expect(rows).to_have_count(1)
    expect(page.locator("#deployments-new")).to_be_hidden()
    expect(page.locator("#binding-edit")).to_have_count(0)
    expect(page.get_by_role("button", name="Roll back to this")).to_have_count(0)
    shot(page, "06-reader")

    rows.nth(0).locator("a.deployment-link").click()
    expect(page).to_have_url(re.compile(f"#/deployments/{deployment}$"))
    view = page.locator("#deployment-page")
    expect(view.locator(".run-head .badge")).to_have_text("succeeded")
    expect(view.get_by_role("link", name="Open the live site")).to_be_visible()
    expect(view.get_by_role("button", name="Retry")).to_have_count(0)
    expect(view.get_by_role("button", name="Cancel")).to_have_count(0)


def test_cancel_a_deployment_while_it_builds(page: Page, runner: Runner) -> None:
    """The `npm-build` fixture with a build command that sleeps: Cancel stops it mid-build."""
    site = unique("e2e")
    folder = unique("npm")
    shutil.copytree(NPM_FIXTURE, runner.workspace / folder)

    page.goto(f"{runner.url}/#/deployments")
    expect(page.locator("#who")).to_contain_text("admin")
    deployment = deploy_from_form(page, site, folder, build_command="sleep 30")
    view = page.locator("#deployment-page")
    expect(step_row(page, "build").locator(".badge")).to_have_text("running", timeout=DEPLOY_TIMEOUT)
    expect(step_row(page, "install").locator(".badge")).to_have_text("succeeded")
    expect(step_row(page, "test").locator(".badge")).to_have_text("succeeded")
    expect(view.get_by_role("log").get_by_text("tests passed")).to_be_visible()
    expect(view.locator(".run-facts")).to_contain_text("build command = sleep 30")
    expect(view.get_by_role("button", name="Retry")).to_have_count(0)
    shot(page, "07-building")

    view.get_by_role("button", name="Cancel", exact=True).click()
    wait_finished(page, "canceled")
    expect(step_row(page, "build").locator(".badge")).to_have_text("canceled")
    expect(view.locator(".run-error")).to_contain_text("canceled by developer")
    expect(view.get_by_role("log").get_by_text("cancel requested by developer")).to_be_visible()
    expect(view.get_by_role("button", name="Cancel", exact=True)).to_have_count(0)
    expect(view.get_by_role("button", name="Retry")).to_be_visible()
    shot(page, "08-canceled")

    view.locator("a.back").click()
    card = page.locator(f'#site-list li[data-site="{site}"]')
    expect(card.locator(".site-state")).to_have_attribute("data-state", "UNDEPLOYED")
    expect(card.locator(".site-live")).to_have_text("Nothing live yet")
    expect(page.locator(f'#site-history tr[data-deployment="{deployment}"] .badge')).to_have_text("canceled")
