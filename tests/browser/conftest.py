"""Headless Chromium (Debian's, never a downloaded one) driven by Playwright's async API."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.conftest import TIMEOUT

# The in-process service fixtures, shared with the service tests.
from tests.service.conftest import make_settings, service  # noqa: F401

CHROMIUM = os.environ.get("SEATCAST_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium reaches for Google's hosts at start-up.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
expect.set_options(timeout=TIMEOUT * 1000)
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

T = TypeVar("T")


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: apt-get install chromium, or set SEATCAST_CHROMIUM"
        )


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def open_page(browser: Browser) -> AsyncIterator[Callable[..., Awaitable[Page]]]:
    """Open a URL in a fresh context at a viewport size; fail the test on uncaught errors."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    async def open_(url: str, width: int = 1280, height: int = 900, **options: Any) -> Page:
        """``options`` go to the browser context (``timezone_id``, ``locale``, ...)."""
        context = await browser.new_context(viewport={"width": width, "height": height}, **options)
        contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(TIMEOUT * 1000)
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(url)
        return page

    yield open_
    for context in contexts:
        await context.close()
    assert not errors, f"uncaught errors on the page: {errors}"


async def eventually(probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], what: str) -> T:
    """Poll ``probe`` until ``ok`` holds of what it returns; fail after TIMEOUT with the last."""
    last: list[T] = []
    try:
        async with asyncio.timeout(TIMEOUT):
            while True:
                last[:] = [await probe()]
                if ok(last[0]):
                    return last[0]
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}; last seen: {last!r}")
