"""Real Chromium (Debian's, driven by Playwright) against a real hub.

Chromium comes from apt (scripts/ensure-system-deps), Playwright from PyPI; the
browser build Playwright would download is never used. When CI=true a missing
browser fails the tests instead of skipping them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("WIREHUB_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def _missing(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (CI=true: browser tests must run; see scripts/ensure-system-deps)")
    pytest.skip(why)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"{CHROMIUM} not found (apt-get install chromium)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
def screenshot_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def js_errors() -> list[str]:
    """Uncaught JavaScript errors of every page made by ``new_page``; checked at teardown."""
    return []


@pytest.fixture
async def new_page(browser: Any, js_errors: list[str]) -> AsyncIterator[Any]:
    """``page = await new_page(url)``: a page in a fresh context (own network state)."""

    async def factory(url: str) -> Any:
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        page.on("pageerror", lambda exc: js_errors.append(str(exc)))
        await page.goto(url)
        return page

    yield factory
    assert not js_errors, f"JavaScript errors: {js_errors}"
