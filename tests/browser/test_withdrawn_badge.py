"""A withdrawn result's badge in the declarations feed stays inside its column at every
width, as GAIN and HOLD do, instead of running under the headline beside it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from playwright.async_api import Page, expect

from tests.service.conftest import RunningService, xadd

pytestmark = pytest.mark.browser

OpenPage = Callable[..., Awaitable[Page]]
PETERBOROUGH = "E14001425"


@pytest.mark.parametrize(
    ("width", "height"), [(1400, 900), (1280, 800), (1600, 900), (1920, 1080), (360, 800)]
)
async def test_a_withdrawn_badge_does_not_overlap_its_headline(
    service: RunningService, open_page: OpenPage, redis: aioredis.Redis, width: int, height: int
) -> None:
    declared = {
        "type": "declaration",
        "constituency": PETERBOROUGH,
        "candidates": [
            {"name": "Andrew Pakes", "party": "LAB", "votes": 13418},
            {"name": "Paul Bristow", "party": "CON", "votes": 13300},
        ],
    }
    await xadd(
        redis,
        service.settings.stream,
        declared,
        {"type": "retraction", "constituency": PETERBOROUGH},
    )
    page = await open_page(service.http + "/", width, height)
    withdrawn = page.locator(".declaration", has=page.locator(".badge.withdrawn")).first
    await expect(withdrawn).to_be_visible()

    # The badge's box is its grid column; its text may reach past the box: measure the text.
    gap: float = await withdrawn.evaluate(
        """(entry) => {
            const badge = entry.querySelector(".badge");
            const reach = badge.getBoundingClientRect().left + badge.scrollWidth;
            return entry.querySelector(".headline").getBoundingClientRect().left - reach;
        }"""
    )

    assert gap >= 0, f"the WITHDRAWN badge runs {-gap:.1f} px under the headline at {width} px"
