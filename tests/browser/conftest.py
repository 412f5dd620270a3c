"""Browser tests: fixtures for a served world and a Chromium page (Playwright, the system's Chromium).

Chromium is not downloaded: ``/usr/bin/chromium`` (Debian's) is used, which ``scripts/test`` installs.
Without it these tests fail with the command that installs it: a silently skipped UI suite would hide
a broken page.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_stack import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, VIEWPORT, Env, serve_env


@pytest.fixture
def env() -> Iterator[Env]:
    """A fresh world with 12 devices assigned to its MDM server ``mdmsim``, served on 127.0.0.1."""
    with serve_env(devices=12, seed=7) as served:
        yield served


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    if not Path(CHROMIUM).exists():
        _unavailable(
            f"no Chromium at {CHROMIUM}: run scripts/test as root or with sudo, or install it with "
            "`sudo apt-get install -y chromium` (or point MDMSIM_CHROMIUM at a Chromium binary)"
        )
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Error as exc:
            _unavailable(f"Chromium at {CHROMIUM} did not start: {exc}")
        yield chromium
        chromium.close()


def _unavailable(reason: str) -> None:
    pytest.fail(f"the browser tests need the system Chromium: {reason}", pytrace=False)


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A page that saves ``screenshots/<test>.png`` of where the test ended, pass or fail."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(8000)
    tab = context.new_page()
    yield tab
    SCREENSHOTS.mkdir(exist_ok=True)
    try:
        tab.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    finally:
        context.close()
