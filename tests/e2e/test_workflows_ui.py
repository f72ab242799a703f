"""The Workflows tab in a real browser (Debian chromium, headless) against the real `slipway dev`.

The workspace holds a workflow with parameters of every kind (one of its steps can nap on
`shell("sleep 30")`) and a workflow file that does not load. The user sees both in the list,
starts a run from the form built from the parameters, follows it to the end on its page (steps,
durations, log), starts a second run and cancels it, and finds both in the history. Set
SLIPWAY_E2E_SCREENSHOTS to a folder to keep a screenshot of each stage.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Locator, Page, Route, expect
from runner_process import Runner
from ui_pages import open_page, screenshot, start_ui_runner

DURATION = re.compile(r"^\d+(\.\d)? (ms|s)$")
RUN_HASH = re.compile(r"#/runs/([^/]+)$")

GREETER = '''\
"""Greets someone a few times; can take a long nap."""

from slipway.sdk import Param, Workflow, shell

workflow = Workflow(
    description="Greets someone a few times, then rests.",
    params={
        "who": Param(str, help="Who to greet"),
        "times": Param(int, default=2, help="How many greetings"),
        "mood": Param(str, default="calm", choices=["calm", "cheerful"], help="How to greet"),
        "nap": Param(bool, default=False, help="Sleep 30 s in the last step"),
    },
)


@workflow.step(retries=1)
def greet(ctx):
    for i in range(ctx.params["times"]):
        print(f"hello {ctx.params['who']} #{i + 1} ({ctx.params['mood']})")
    return {"greeted": ctx.params["times"]}


@workflow.step(after=[greet])
def rest(ctx, greet):
    if ctx.params["nap"]:
        shell("sleep 30")
    ctx.log(f"rested after {greet['greeted']} greetings")
    return "rested"
'''

SLEEPER = """\
from slipway.sdk import Workflow, shell

workflow = Workflow(description="Sleeps for half a minute.")


@workflow.step()
def doze(ctx):
    shell("echo dozing off; sleep 30")
"""

BROKEN = """\
from slipway.sdk import Workflow

workflow = Workflow(description="never loads")

def oops(:
    pass
"""


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    started = start_ui_runner(tmp_path_factory.mktemp("e2e-workflows"))
    try:
        folder = started.workspace / "workflows"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "greeter.py").write_text(GREETER)
        (folder / "sleeper.py").write_text(SLEEPER)
        (folder / "broken.py").write_text(BROKEN)
        yield started
    finally:
        started.stop()


@pytest.fixture
def page(browser: Browser, runner: Runner) -> Iterator[Page]:
    with open_page(browser, viewport={"width": 1360, "height": 900}) as opened:
        yield opened


def shot(page: Page, name: str) -> None:
    screenshot(page, f"workflows-{name}")


def item(page: Page, name: str) -> Locator:
    return (
        page.locator("#workflow-list")
        .get_by_role("link")
        .filter(has=page.locator(".workflow-name", has_text=name))
    )


def step_row(page: Page, name: str) -> Locator:
    return page.locator(".run-steps li").filter(
        has=page.locator(".step-name", has_text=re.compile(f"^{name}$"))
    )


def run_id_of(page: Page) -> str:
    expect(page).to_have_url(RUN_HASH)
    match = RUN_HASH.search(page.url)
    assert match
    return match.group(1)


def test_list_run_follow_cancel_and_history(page: Page, runner: Runner) -> None:
    page.goto(runner.url + "/")
    expect(page.locator("#who")).to_contain_text("editor")
    page.get_by_role("tab", name="Workflows").click()

    # The list: the seeded example, ours, and the broken file with its error at file:line.
    expect(item(page, "hello")).to_be_visible()
    expect(item(page, "greeter")).to_contain_text("Greets someone a few times, then rests.")
    expect(item(page, "greeter")).to_contain_text("4 params · 2 steps")
    broken = item(page, "broken")
    expect(broken).to_contain_text("SyntaxError")
    expect(broken).to_contain_text("workflows/broken.py:5")
    broken.click()
    detail = page.locator("#workflow-detail")
    expect(detail.get_by_role("alert")).to_contain_text("This workflow does not load, so it cannot run.")
    expect(detail.get_by_role("alert")).to_contain_text("workflows/broken.py:5")
    expect(detail.get_by_role("button", name="Run…")).to_have_count(0)
    shot(page, "01-broken")
    detail.get_by_role("button", name="Open in editor").click()
    expect(page.locator("#doc-name")).to_have_text("broken.py")
    expect(page.locator("#editor .view-lines")).to_contain_text("def oops(:")
    page.get_by_role("tab", name="Workflows").click()  # back where it was
    expect(page).to_have_url(re.compile(r"#/workflows/broken$"))
    expect(detail.get_by_role("alert")).to_contain_text("workflows/broken.py:5")

    # The form is built from the declared parameters, with the defaults filled in.
    item(page, "greeter").click()
    expect(page).to_have_url(re.compile(r"#/workflows/greeter$"))
    expect(detail).to_contain_text("after greet")
    detail.get_by_role("button", name="Run…").click()
    form = page.get_by_role("form", name="Run greeter")
    who, times, mood, nap = (form.get_by_label(name) for name in ("who", "times", "mood", "nap"))
    expect(who).to_have_value("")
    expect(who).to_have_attribute("aria-required", "true")
    expect(form.locator('[data-param="who"] .required')).to_be_visible()
    expect(times).to_have_attribute("type", "number")
    expect(times).to_have_value("2")
    expect(mood).to_have_js_property("tagName", "SELECT")
    expect(mood.locator("option:checked")).to_have_text("calm")
    expect(nap).to_have_attribute("type", "checkbox")
    expect(nap).not_to_be_checked()

    # The server refuses a run without the required parameter; the form says why.
    form.get_by_role("button", name="Start run").click()
    expect(form.get_by_role("alert")).to_contain_text("The parameters were refused: params.who: is required")
    shot(page, "02-refused")

    who.fill("Ada")
    times.fill("3")
    mood.select_option(label="cheerful")
    form.get_by_role("button", name="Start run").click()
    first = run_id_of(page)

    # The run page: each step succeeds with a duration; the log shows what the steps printed.
    run = page.locator("#run-page")
    expect(run.locator(".run-head .badge")).to_have_text("succeeded", timeout=20_000)
    for name in ("greet", "rest"):
        expect(step_row(page, name).locator(".badge")).to_have_text("succeeded")
        expect(step_row(page, name).locator(".step-duration")).to_have_text(DURATION)
    expect(step_row(page, "greet")).to_contain_text("attempt 1 of 2")
    expect(step_row(page, "rest")).to_contain_text("after greet")
    expect(run.locator(".run-facts")).to_contain_text("times = 3")
    expect(run.locator(".run-facts")).to_contain_text('mood = "cheerful"')
    log = run.get_by_role("log")
    expect(log.get_by_text("hello Ada #3 (cheerful)")).to_be_visible()
    expect(log.get_by_text("rested after 3 greetings")).to_be_visible()
    expect(log.get_by_text("run succeeded")).to_be_visible()
    expect(log.locator(".log-line.stream-stdout").first).to_contain_text("greet")
    step_row(page, "greet").get_by_text("Output").click()
    expect(step_row(page, "greet").locator(".step-output pre")).to_contain_text('"greeted": 3')
    expect(run.get_by_role("button", name="Cancel run")).to_have_count(0)
    shot(page, "03-succeeded")

    # One step's lines only.
    run.get_by_label("Show the lines of").select_option("rest")
    expect(log.get_by_text("hello Ada #1 (cheerful)")).to_be_hidden()
    expect(log.get_by_text("rested after 3 greetings")).to_be_visible()

    # The run page is an address: a reload shows it again.
    page.reload()
    expect(page.get_by_role("tab", name="Workflows")).to_have_attribute("aria-selected", "true")
    expect(run.locator(".run-head .badge")).to_have_text("succeeded")
    expect(log.get_by_text("hello Ada #3 (cheerful)")).to_be_visible()

    # A second run naps in `sleep 30`; Cancel stops it.
    run.get_by_role("link", name="greeter").click()
    expect(page).to_have_url(re.compile(r"#/workflows/greeter$"))
    detail.get_by_role("button", name="Run…").click()
    form.get_by_label("who").fill("Bob")
    form.get_by_label("nap").check()
    form.get_by_role("button", name="Start run").click()
    second = run_id_of(page)
    assert second != first
    expect(step_row(page, "rest").locator(".badge")).to_have_text("running", timeout=20_000)
    expect(log.get_by_text("$ sleep 30")).to_be_visible()
    shot(page, "04-running")
    run.get_by_role("button", name="Cancel run").click()
    expect(run.locator(".run-head .badge")).to_have_text("canceled", timeout=15_000)
    expect(step_row(page, "rest").locator(".badge")).to_have_text("canceled")
    expect(log.get_by_text("cancel requested by developer")).to_be_visible()
    expect(run.get_by_role("button", name="Cancel run")).to_have_count(0)
    expect(run.get_by_role("button", name="Run again")).to_be_visible()
    shot(page, "05-canceled")

    # The history of the workflow: both runs, newest first, each linking to its page.
    run.get_by_role("link", name="greeter").click()
    rows = page.locator("#workflow-history tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-run", second)
    expect(rows.nth(0).locator(".badge")).to_have_text("canceled")
    expect(rows.nth(0)).to_contain_text("developer")
    expect(rows.nth(1)).to_have_attribute("data-run", first)
    expect(rows.nth(1).locator(".badge")).to_have_text("succeeded")
    expect(rows.nth(1)).to_contain_text('who="Ada"')
    shot(page, "06-history")
    rows.nth(1).get_by_role("link", name=first).click()
    expect(page).to_have_url(re.compile(f"#/runs/{first}$"))
    expect(run.locator(".run-head .badge")).to_have_text("succeeded")


def test_reader_sees_runs_without_run_or_cancel_and_log_falls_back_to_polling(
    page: Page, runner: Runner
) -> None:
    """A reader cannot run or cancel; the log is still shown when the event stream says nothing."""
    started = runner.api("POST", "/api/workflows/sleeper/runs", json={"params": {}})
    assert started.status_code == 202, started.text
    run_id = started.json()["run"]["id"]
    reader = {"name": "rita", "provider": "development", "roles": ["reader"]}
    page.route("**/api/me", lambda route: route.fulfill(json=reader))

    # A host that buffers responses: the event stream says nothing, so the page polls.
    def silent_stream(route: Route) -> None:
        if "text/event-stream" in (route.request.headers.get("accept") or ""):
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=": buffered\n\n")
        else:
            route.continue_()

    page.route("**/api/runs/*/logs*", silent_stream)
    try:
        page.goto(f"{runner.url}/#/runs/{run_id}")
        expect(page.locator("#who")).to_contain_text("rita")
        run = page.locator("#run-page")
        expect(run.get_by_role("log").get_by_text("dozing off", exact=True)).to_be_visible(timeout=15_000)
        expect(run.locator(".log-mode")).to_have_text("polling")
        expect(step_row(page, "doze").locator(".badge")).to_have_text("running")
        expect(run.get_by_role("button", name="Cancel run")).to_have_count(0)

        run.get_by_role("link", name="sleeper").click()
        detail = page.locator("#workflow-detail")
        expect(detail).to_contain_text("Starting a run needs the editor role.")
        expect(detail.get_by_role("button", name="Run…")).to_have_count(0)
        expect(page.locator(f'#workflow-history tr[data-run="{run_id}"] .badge')).to_have_text("running")
        shot(page, "07-reader")
    finally:
        # The command is killed before the runner stops (which would otherwise wait for it).
        runner.api("POST", f"/api/runs/{run_id}/cancel")

        def killed() -> bool:
            lines = runner.api("GET", f"/api/runs/{run_id}/logs").json()["lines"]
            return any(line["step"] == "doze" and line["text"].startswith("✘") for line in lines)

        runner.wait(killed, "the sleeping command to be killed", timeout=20)
