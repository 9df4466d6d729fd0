"""The page as a new user saw it: the area table at every width, times the day after the night,
the seat bar early in a replay at phone width, and the working and overall majorities."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from playwright.async_api import Page, expect

from tests.browser.conftest import ARTIFACTS, eventually
from tests.service.conftest import NIGHT_2024, RunningService, xadd

pytestmark = pytest.mark.browser

OpenPage = Callable[..., Awaitable[Page]]
INVERNESS = "S14000094"  # Inverness, Skye and West Ross-shire: declared on the Saturday
INVERNESS_DECLARATION = next(line for line in NIGHT_2024 if INVERNESS in line)
FIRST_DECLARATION = NIGHT_2024[1]  # Houghton and Sunderland South, 23:17 on the Thursday


async def whole_night(service: RunningService, redis: aioredis.Redis) -> None:
    await xadd(redis, service.settings.stream, *NIGHT_2024)

    async def declared() -> int:
        national: dict[str, Any] = (await service.get("/api/national")).json()["data"]
        return int(national["declared"])

    await eventually(declared, lambda count: count == 650, "the whole night")


async def overflow(page: Page, selector: str) -> dict[str, float]:
    """How far the element's content reaches past its box, sideways (0: it fits)."""
    measured: dict[str, float] = await page.eval_on_selector(
        selector,
        """(box) => {
            const table = box.querySelector("table");
            const last = box.querySelector("thead th:last-child");
            return {
                scrolled: box.scrollWidth - box.clientWidth,
                table: table.getBoundingClientRect().right - box.getBoundingClientRect().right,
                share: last.getBoundingClientRect().right - box.getBoundingClientRect().right,
            };
        }""",
    )
    return measured


@pytest.mark.parametrize(
    ("width", "height"),
    [(1400, 900), (1280, 800), (1600, 900), (1920, 1080), (800, 1000), (360, 800)],
)
async def test_the_nations_and_regions_table_fits_its_panel_with_england_selected(
    service: RunningService, open_page: OpenPage, redis: aioredis.Redis, width: int, height: int
) -> None:
    await whole_night(service, redis)
    page = await open_page(f"{service.http}/?area=nation:england", width, height)
    rows = page.locator("#area-result tbody tr")
    await expect(rows.first).to_be_visible()
    await expect(page.locator("#area-result .area-summary")).to_contain_text("543 of 543 seats")
    assert await overflow(page, "#area-result") == {"scrolled": 0, "table": 0, "share": 0}
    # Every party's share is there to read, inside the panel.
    await expect(page.locator("#area-result thead th").last).to_have_text("Share")
    assert await rows.count() >= 9
    if width == 1400:
        ARTIFACTS.mkdir(exist_ok=True)
        await page.locator("#area").screenshot(path=ARTIFACTS / "area-england-1400.png")


async def test_a_declaration_the_day_after_the_night_shows_its_day(
    service: RunningService, open_page: OpenPage, redis: aioredis.Redis
) -> None:
    await xadd(redis, service.settings.stream, NIGHT_2024[0], FIRST_DECLARATION)
    # Far from the UK: times are still those the feed wrote (British Summer Time).
    page = await open_page(
        f"{service.http}/?seat={INVERNESS}", timezone_id="America/Los_Angeles", locale="en-US"
    )
    await expect(page.locator("#feed li")).to_have_count(1)
    await expect(page.locator("#feed li time")).to_have_text("23:17")
    await xadd(redis, service.settings.stream, INVERNESS_DECLARATION)
    await expect(page.locator("#feed li")).to_have_count(2)
    inverness = page.locator(f'#feed li[data-constituency="{INVERNESS}"] time')
    await expect(inverness).to_have_text("Sat 17:50")
    await expect(inverness).to_have_attribute("datetime", "2024-07-06T17:50:00+01:00")
    await expect(page.locator("#feed li time").last).to_have_text("23:17")
    await expect(page.locator("#seat-result [data-field=declared_at]")).to_have_text("Sat 17:50")
    # A page opened afterwards, with both in its snapshot, says the same.
    again = await open_page(f"{service.http}/")
    await expect(again.locator("#feed li time")).to_have_text(["Sat 17:50", "23:17"])


async def test_the_night_runs_24_hours_from_the_exit_poll_and_no_bare_time_is_ambiguous(
    service: RunningService, open_page: OpenPage
) -> None:
    page = await open_page(service.http + "/")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    shown = await page.evaluate(
        """async () => {
            const { NightClock } = await import("./static/dom.js");
            const night = new NightClock();
            night.begin("2024-07-04T22:00:00+01:00");
            return [
                "2024-07-04T23:17:00+01:00",
                "2024-07-05T04:12:00+01:00",
                "2024-07-05T21:59:00+01:00",
                "2024-07-05T22:00:00+01:00",
                "2024-07-06T17:50:00+01:00",
                "2024-07-04T21:00:00+01:00",
                "2024-07-05T03:12:00Z",
                "not a time",
            ].map((iso) => night.format(iso));
        }"""
    )
    assert shown == [
        "23:17",
        "04:12",
        "21:59",
        "Fri 22:00",
        "Sat 17:50",
        "Thu 21:00",
        "03:12",
        "",
    ]


async def test_the_seat_bar_shows_the_seats_at_once_at_phone_width_early_in_a_replay(
    service: RunningService, open_page: OpenPage, redis: aioredis.Redis
) -> None:
    # Reported: a phone-width screenshot early in the replay showed an empty seat bar with
    # 288 seats declared. Real: the bar was grown from nothing by a CSS transition, so
    # anything that did not run it (a screenshot taken at once, a background tab, a browser
    # on virtual time) saw it empty. The first state is now drawn as it is.
    await xadd(redis, service.settings.stream, *NIGHT_2024[:289])
    page = await open_page(service.http + "/", 360, 800)
    await expect(page.locator("#seats-to-go")).to_have_text("362 seats to go")
    bar = await page.eval_on_selector(
        "#seat-bar",
        """(bar) => {
            const segments = [...bar.querySelectorAll(".segment")];
            return {
                filled: segments.reduce((sum, s) => sum + s.getBoundingClientRect().width, 0),
                width: bar.getBoundingClientRect().width,
                moving: segments.flatMap((s) => s.getAnimations()).length,
            };
        }""",
    )
    assert bar["moving"] == 0, "the seat bar is still growing from nothing"
    assert bar["filled"] == pytest.approx(bar["width"] * 288 / 650, abs=1.5)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "live-360-288-declared.png")
    # A change while watching still moves the bar (smoothly).
    await xadd(redis, service.settings.stream, NIGHT_2024[289])
    await expect(page.locator("#seats-to-go")).to_have_text("361 seats to go")


async def test_the_working_majority_is_a_second_labelled_tick_and_the_overall_majority_is_said(
    service: RunningService, open_page: OpenPage, redis: aioredis.Redis
) -> None:
    page = await open_page(service.http + "/")
    await expect(page.locator("#working-majority")).to_have_text("324 for a working majority")
    await whole_night(service, redis)
    await expect(page.locator("#working-majority")).to_have_text("320 for a working majority")
    await expect(page.locator("#seat-bar .working-line .tick-label")).to_have_text(
        "Working majority 320"
    )
    await expect(page.locator("#seat-bar .majority-line .tick-label")).to_have_text("Majority 326")
    await expect(page.locator("#outcome")).to_have_text("Labour wins a majority of 172")
    where = await page.eval_on_selector(
        "#seat-bar",
        """(bar) => {
            const box = bar.getBoundingClientRect();
            const at = (selector) => {
                const tick = bar.querySelector(selector).getBoundingClientRect();
                return (tick.left + tick.width / 2 - box.left) / box.width;
            };
            const label = (selector) => bar.querySelector(selector).getBoundingClientRect();
            const above = label(".majority-line .tick-label");
            const below = label(".working-line .tick-label");
            return {
                majority: at(".majority-line"),
                working: at(".working-line"),
                apart: above.bottom <= below.top,
            };
        }""",
    )
    assert where["majority"] == pytest.approx(326 / 650, abs=0.005)
    assert where["working"] == pytest.approx(320 / 650, abs=0.005)
    assert where["apart"], "the two labels overlap"
    label = await page.locator("#seat-bar").get_attribute("aria-label")
    assert label is not None and "320 for a working majority" in label
