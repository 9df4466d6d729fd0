"""The feed's totals as a check on the live page, in headless Chromium."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from playwright.async_api import Page, expect

from tests.service.conftest import NIGHT_2024, RunningService, xadd

pytestmark = pytest.mark.browser

OpenPage = Callable[..., Awaitable[Page]]
PETERBOROUGH = "E14001425"
PETERBOROUGH_DECLARATION = next(line for line in NIGHT_2024 if PETERBOROUGH in line)


def state_of_parties(source: str, **parties: tuple[int, int, int]) -> dict[str, object]:
    return {
        "type": "state_of_parties",
        "source": source,
        "constituencies": [PETERBOROUGH],
        "parties": {
            code: dict(zip(("seats", "gains", "losses"), figures, strict=True))
            for code, figures in parties.items()
        },
    }


async def test_the_page_shows_whether_the_feeds_totals_agree_and_each_figure_that_does_not(
    service: RunningService, open_page: OpenPage, redis: aioredis.Redis
) -> None:
    page = await open_page(service.http + "/")
    check = page.locator("#feed-check")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(check).to_be_hidden()

    await xadd(
        redis,
        service.settings.stream,
        PETERBOROUGH_DECLARATION,
        state_of_parties("PA", LAB=(1, 1, 0), CON=(0, 0, 1)),
    )
    await expect(check).to_be_visible()
    await expect(check).to_have_text("\u2713 PA\u2019s totals over 1 result agree with ours")
    await expect(check).to_have_attribute("data-agrees", "true")

    # The source is the feed's own text: shown as text, never as markup.
    await xadd(redis, service.settings.stream, state_of_parties("<b>PA</b>", CON=(1, 0, 0)))
    await expect(check).to_have_text(
        "\u26a0 <b>PA</b>\u2019s totals over 1 result differ: Labour seats 0 (ours 1); "
        "Labour gains 0 (ours 1); Conservative seats 1 (ours 0); Conservative losses 0 (ours 1)"
    )
    await expect(check).to_have_attribute("data-agrees", "false")
    assert await check.locator("b").count() == 0
