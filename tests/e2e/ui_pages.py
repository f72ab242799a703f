"""What the end-to-end tests share: `slipway dev` serving the built UI, pages that fail their
test on an uncaught error in the page, and screenshots of each stage when
SLIPWAY_E2E_SCREENSHOTS names a folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page
from runner_process import REPO_ROOT, Runner, start_runner

WEB_DIST = REPO_ROOT / "web" / "dist"
SCREENSHOTS = os.environ.get("SLIPWAY_E2E_SCREENSHOTS")


def start_ui_runner(folder: Path, extra_env: dict[str, str] | None = None, **options: Any) -> Runner:
    """`slipway dev` in ``folder`` serving the built UI at /."""
    if not (WEB_DIST / "index.html").is_file():
        pytest.fail(f"{WEB_DIST}/index.html is missing: build the UI first (make web/dist/index.html)")
    return start_runner(folder, extra_env={"SLIPWAY_WEB_DIR": str(WEB_DIST), **(extra_env or {})}, **options)


@contextmanager
def watched(page: Page) -> Iterator[Page]:
    """``page``, and the test fails if a script in it threw an uncaught error."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    assert errors == [], f"uncaught errors in the page: {errors}"


@contextmanager
def open_page(browser: Browser, **context_options: Any) -> Iterator[Page]:
    """A watched page in a browser context of its own, closed afterwards."""
    context = browser.new_context(**context_options)
    try:
        with watched(context.new_page()) as page:
            yield page
    finally:
        context.close()


def screenshot(page: Page, name: str, *, full_page: bool = False) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=full_page)
