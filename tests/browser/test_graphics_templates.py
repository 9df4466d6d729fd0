"""The on-air templates in headless Chromium at 1920x1080: driven as CasparCG drives them
(update/play/stop/next), and standalone, following a real service over /ws."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from PIL import Image
from playwright.async_api import Page, expect

from tests.browser.conftest import ARTIFACTS, eventually
from tests.browser.test_live_page import free_port, service_process
from tests.conftest import TIMEOUT
from tests.service.conftest import NIGHT_2024, RunningService, xadd

pytestmark = pytest.mark.browser

OpenPage = Callable[..., Awaitable[Page]]
WIDTH, HEIGHT = 1920, 1080
# Title-safe: 90% of the width and height, centred.
SAFE = (WIDTH * 5 // 100, HEIGHT * 5 // 100, WIDTH * 95 // 100, HEIGHT * 95 // 100)
PETERBOROUGH = "E14001425"
LOWER_THIRD = "/graphics/templates/lower-third.html"
SEAT_BAR = "/graphics/templates/seat-bar.html"
CASPARCG = "?mode=casparcg"


async def open_template(open_page: OpenPage, url: str) -> Page:
    page = await open_page(url, WIDTH, HEIGHT)
    await page.wait_for_function("window.seatcastGraphic !== undefined")
    return page


async def get(service: RunningService, path: str) -> httpx.Response:
    response = await service.get(path)
    assert response.status_code == 200, path
    return response


async def call(page: Page, function: str, data: Any = None) -> None:
    """Call a CasparCG global as CasparCG does: update() gets its data as one string."""
    if data is None:
        await page.evaluate(f"() => window.{function}()")
    else:
        await page.evaluate(f"data => window.{function}(data)", data)


async def screenshot_alpha(page: Page, name: str) -> Image.Image:
    """A screenshot with the page's own (transparent) background, kept in artifacts/;
    returns its alpha channel."""
    ARTIFACTS.mkdir(exist_ok=True)
    png = await page.screenshot(omit_background=True, animations="disabled")
    (ARTIFACTS / f"{name}.png").write_bytes(png)
    image = Image.open(io.BytesIO(png))
    assert image.size == (WIDTH, HEIGHT)
    assert image.mode == "RGBA"
    return image.getchannel("A")


def assert_transparent_outside_the_title_safe_area(alpha: Image.Image) -> None:
    box = alpha.getbbox()  # the smallest box holding every pixel that is not transparent
    assert box is not None, "nothing drawn"
    left, top, right, bottom = box
    assert left >= SAFE[0] and top >= SAFE[1] and right <= SAFE[2] and bottom <= SAFE[3], box
    for corner in ((0, 0), (WIDTH - 1, 0), (0, HEIGHT - 1), (WIDTH - 1, HEIGHT - 1)):
        assert alpha.getpixel(corner) == 0
    histogram = alpha.histogram()
    assert histogram[0] > WIDTH * HEIGHT // 2, "most of the frame is transparent"


async def shown_seats(page: Page) -> list[str]:
    seats: list[str] = await page.evaluate("window.shownSeats")
    return seats


async def record_lower_third(page: Page) -> None:
    """Note each seat name as it goes on screen."""
    await page.evaluate(
        """() => {
          window.shownSeats = [];
          const target = document.querySelector("#lower-third");
          new MutationObserver(() => {
            if (target.dataset.state === "in") {
              const seat = document.querySelector("#lt-seat").textContent;
              if (window.shownSeats.at(-1) !== seat) window.shownSeats.push(seat);
            }
          }).observe(target, { attributes: true, subtree: true, childList: true });
        }"""
    )


async def segment_widths(page: Page) -> dict[str, float]:
    """Each party's segment of the seat bar, as a percentage of the bar's width."""
    widths: dict[str, str] = await page.eval_on_selector_all(
        ".sb-segment", "s => Object.fromEntries(s.map(e => [e.dataset.party, e.style.width]))"
    )
    return {party: float(width.removesuffix("%")) for party, width in widths.items()}


async def declare(redis: aioredis.Redis, service: RunningService, *lines: str) -> list[str]:
    ids = await xadd(redis, service.settings.stream, *lines)
    async with asyncio.timeout(TIMEOUT):
        while (await service.get("/readyz")).json()["seq"] != ids[-1]:
            await asyncio.sleep(0.02)
    return ids


def declarations(count: int, start: int = 1) -> list[str]:
    return NIGHT_2024[start : start + count]


# --- driven as CasparCG drives them -----------------------------------------------------------


async def test_the_lower_third_takes_casparcg_xml_and_shows_on_play_with_a_transparent_background(
    service: RunningService, open_page: OpenPage, redis: aioredis.Redis
) -> None:
    await declare(redis, service, next(line for line in NIGHT_2024 if PETERBOROUGH in line))
    page = await open_template(open_page, service.http + LOWER_THIRD + CASPARCG)
    xml = (await get(service, "/graphics/latest.xml")).text
    panel = page.locator("#lower-third")

    await call(page, "update", xml)
    await expect(panel).to_have_attribute("data-state", "out")  # nothing before play()
    await call(page, "play")

    await expect(panel).to_have_attribute("data-state", "in")
    await expect(page.locator("#lt-seat")).to_have_text("Peterborough")
    await expect(page.locator("#lt-winner")).to_have_text("Andrew Pakes")
    await expect(page.locator("#lt-party-name")).to_have_text("Labour")
    await expect(page.locator("#lt-result")).to_have_text("GAIN")
    await expect(page.locator("#lt-detail")).to_have_text("Gain from Conservative · Majority 118")
    tag = page.locator(".lt-tag")
    assert await tag.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(228, 0, 59)"
    alpha = await screenshot_alpha(page, "graphics-lower-third")
    assert_transparent_outside_the_title_safe_area(alpha)
    box = await panel.bounding_box()
    assert box is not None
    assert alpha.getpixel((int(box["x"] + 20), int(box["y"] + box["height"] / 2))) == 255

    await call(page, "stop")
    await expect(panel).to_have_attribute("data-state", "out")
    alpha = await screenshot_alpha(page, "graphics-lower-third-stopped")
    assert alpha.getbbox() is None, "nothing shows after stop()"


async def test_the_lower_third_takes_json_and_next_moves_on_at_once(
    service: RunningService, open_page: OpenPage, redis: aioredis.Redis
) -> None:
    lines = declarations(2)
    await declare(redis, service, *lines)
    seats = [orjson.loads(line)["constituency"] for line in lines]
    page = await open_template(open_page, service.http + LOWER_THIRD + CASPARCG + "&seconds=0")
    await record_lower_third(page)
    first = (await get(service, f"/graphics/constituency/{seats[0]}.json")).text
    second = (await get(service, f"/graphics/constituency/{seats[1]}.json")).json()
    names = [(await get(service, f"/api/constituencies/{s}")).json()["data"] for s in seats]

    await call(page, "update", first)  # a JSON string, as CasparCG sends it
    await call(page, "play")
    await expect(page.locator("#lt-seat")).to_have_text(names[0]["name"])
    await call(page, "update", orjson.dumps(second).decode())
    await call(page, "update", first)  # the same again: not shown twice
    await expect(page.locator("#lt-more")).to_have_text("+1 more")
    await call(page, "next")

    await expect(page.locator("#lt-seat")).to_have_text(names[1]["name"])
    await expect(page.locator("#lt-winner")).to_have_text(names[1]["winner"]["name"])
    await call(page, "next")  # nothing left: off air
    await expect(page.locator("#lower-third")).to_have_attribute("data-state", "out")
    assert await shown_seats(page) == [n["name"] for n in names]


async def test_the_seat_bar_takes_xml_and_json_and_draws_both_majority_lines(
    service: RunningService, open_page: OpenPage, redis: aioredis.Redis
) -> None:
    page = await open_template(open_page, service.http + SEAT_BAR + CASPARCG + "&top=3")
    await call(page, "update", (await get(service, "/graphics/national.xml")).text)
    await call(page, "play")
    bar = page.locator("#seat-bar")
    await expect(bar).to_have_attribute("data-state", "in")
    await expect(page.locator("#sb-declared")).to_have_text("0 of 650 declared")
    await expect(page.locator("#sb-working .sb-line-label")).to_have_text("Working majority 324")

    await declare(redis, service, *declarations(120))
    national = (await get(service, "/graphics/national.json")).json()
    await call(page, "update", orjson.dumps(national).decode())

    await expect(page.locator("#sb-declared")).to_have_text(
        f"{national['declared']} of 650 declared"
    )
    await expect(page.locator("#sb-legend li")).to_have_count(3)
    await expect(page.locator("#sb-legend li").first).to_have_attribute(
        "data-party", national["party1_code"]
    )
    await expect(page.locator("#sb-majority .sb-line-label")).to_have_text("Majority 326")
    working = national["working_majority"]
    await expect(page.locator("#sb-working .sb-line-label")).to_have_text(
        f"Working majority {working}"
    )
    track = await page.locator(".sb-track").bounding_box()
    line = await page.locator("#sb-majority").bounding_box()
    assert track is not None and line is not None
    assert abs(line["x"] + 2 - (track["x"] + track["width"] * 326 / 650)) <= 3
    seats = {national[f"party{n}_code"]: national[f"party{n}_seats"] for n in range(1, 18)}
    assert await segment_widths(page) == pytest.approx(
        {code: 100 * n / 650 for code, n in seats.items() if n}, abs=1e-3
    )
    alpha = await screenshot_alpha(page, "graphics-seat-bar")
    assert_transparent_outside_the_title_safe_area(alpha)

    await call(page, "stop")
    await expect(bar).to_have_attribute("data-state", "out")


async def test_unreadable_update_data_is_ignored_and_hostile_text_stays_text(
    service: RunningService, open_page: OpenPage
) -> None:
    page = await open_template(open_page, service.http + LOWER_THIRD + CASPARCG)
    warnings: list[str] = []
    page.on("console", lambda message: warnings.append(message.text))
    for junk in ("not data", "<templateData><oops", "[1, 2]", "<other/>", ""):
        await call(page, "update", junk)
    hostile = {
        "seq": "1-0",
        "id": "X1",
        "name": "<img src=x onerror=\"document.title='pwned'\">",
        "winner_name": "<script>document.title='pwned'</script>",
        "winner_party": "LAB",
        "winner_colour": "red; background-image: url(x)",
        "result": "hold",
        "majority": "12",
    }
    await call(page, "update", orjson.dumps(hostile).decode())
    await call(page, "play")

    await expect(page.locator("#lt-seat")).to_have_text(hostile["name"])
    await expect(page.locator("#lt-winner")).to_have_text(hostile["winner_name"])
    assert await page.locator("#lower-third img, #lower-third script").count() == 0
    assert await page.title() != "pwned"
    assert sum("seatcast: update() data" in w for w in warnings) == 4  # "" is no data at all


# --- standalone, over /ws -----------------------------------------------------------------------


async def test_three_declarations_arriving_together_are_all_shown_in_turn(
    service: RunningService, open_page: OpenPage, redis: aioredis.Redis
) -> None:
    page = await open_template(open_page, service.http + LOWER_THIRD + "?seconds=0.4")
    await expect(page.locator("html")).to_have_attribute("data-connection", "live")
    await record_lower_third(page)
    lines = declarations(3)
    names = [
        (await get(service, f"/api/constituencies/{orjson.loads(line)['constituency']}")).json()[
            "data"
        ]["name"]
        for line in lines
    ]

    async with redis.pipeline(transaction=True) as pipe:  # one batch: they arrive together
        for line in lines:
            pipe.xadd(service.settings.stream, {"event": line})
        ids = [entry.decode() for entry in await pipe.execute()]

    await eventually(lambda: shown_seats(page), lambda shown: len(shown) >= 3, "three shown")
    assert await shown_seats(page) == names
    assert await page.evaluate("window.seatcastGraphic.shown") == ids
    await expect(page.locator("#lower-third")).to_have_attribute("data-state", "out")


async def test_standalone_templates_follow_a_replay_over_ws(
    service: RunningService, open_page: OpenPage, redis_url: str
) -> None:
    bar = await open_template(open_page, service.http + SEAT_BAR)
    third = await open_template(open_page, service.http + LOWER_THIRD + "?seconds=0.05")
    for page in (bar, third):
        await expect(page.locator("html")).to_have_attribute("data-connection", "live")
    feeder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clients.feeder",
        *("--limit", "40", "--speed", "2000", "--max-gap", "0.1"),
        *("--stream", service.settings.stream, "--redis-url", redis_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(feeder.communicate(), TIMEOUT)
    assert feeder.returncode == 0, stderr.decode()

    national = (await get(service, "/api/national")).json()["data"]
    assert national["declared"] == 40
    await expect(bar.locator("#sb-declared")).to_have_text("40 of 650 declared")
    parties = national["parties"]
    assert await segment_widths(bar) == pytest.approx(
        {c: 100 * p["seats"] / 650 for c, p in parties.items() if p["seats"]}, abs=1e-3
    )
    recent = (await get(service, "/api/declarations")).json()["data"]["recent"]
    await eventually(
        lambda: third.evaluate("window.seatcastGraphic.shown"),
        lambda shown: len(shown) == 40,
        "every declaration of the replay on the lower third",
    )
    assert await third.evaluate("window.seatcastGraphic.shown") == [e["seq"] for e in recent[-40:]]
    assert_transparent_outside_the_title_safe_area(await screenshot_alpha(bar, "graphics-bar-ws"))


async def test_a_standalone_lower_third_resumes_after_a_restart_and_misses_nothing(
    open_page: OpenPage, redis: aioredis.Redis, redis_url: str, stream_key: str
) -> None:
    port = free_port()
    async with service_process(redis_url, stream_key, port) as base:
        await xadd(redis, stream_key, NIGHT_2024[0])
        page = await open_template(open_page, base + LOWER_THIRD + "?seconds=0.05")
        await expect(page.locator("html")).to_have_attribute("data-connection", "live")
        before = await xadd(redis, stream_key, *declarations(5))
        await eventually(
            lambda: page.evaluate("window.seatcastGraphic.shown"),
            lambda shown: len(shown) == 5,
            "the first five",
        )
    await expect(page.locator("html")).to_have_attribute("data-connection", "reconnecting")
    during = await xadd(redis, stream_key, *declarations(5, start=6))  # while it is down
    async with service_process(redis_url, stream_key, port):
        after = await xadd(redis, stream_key, *declarations(5, start=11))
        await eventually(
            lambda: page.evaluate("window.seatcastGraphic.shown"),
            lambda shown: len(shown) >= 15,
            "all fifteen, across the restart",
        )
    assert await page.evaluate("window.seatcastGraphic.shown") == before + during + after


async def test_colour_options_from_the_query_string_are_applied_and_bad_ones_ignored(
    service: RunningService, open_page: OpenPage, redis: aioredis.Redis
) -> None:
    await declare(redis, service, next(line for line in NIGHT_2024 if PETERBOROUGH in line))
    query = "&colours=LAB:00ff00,CON:nonsense&bg=102030&accent=url(x)"
    page = await open_template(open_page, service.http + LOWER_THIRD + CASPARCG + query)
    await call(page, "update", (await get(service, "/graphics/latest.json")).text)
    await call(page, "play")

    tag = page.locator(".lt-tag")
    await expect(tag).to_have_css("background-color", "rgb(0, 255, 0)")
    await expect(page.locator("#lower-third")).to_have_css("background-color", "rgb(16, 32, 48)")
    accent = await page.evaluate(
        "getComputedStyle(document.documentElement).getPropertyValue('--accent')"
    )
    assert accent.strip() == "#ffcc33"


async def test_the_seat_and_kinds_options_choose_what_the_lower_third_shows(
    service: RunningService, open_page: OpenPage
) -> None:
    query = f"&seat={PETERBOROUGH},E14001063&kinds=declaration,retraction&seconds=0"
    page = await open_template(open_page, service.http + LOWER_THIRD + CASPARCG + query)
    await call(page, "play")
    base = {"winner_party": "LAB", "result": "hold", "majority": "5"}
    for seq, seat, extra in (
        ("1-0", "E14000001", {}),  # another seat
        ("2-0", PETERBOROUGH, {"kind": "flash"}),  # a kind not asked for
        ("3-0", PETERBOROUGH, {"kind": "declaration"}),
    ):
        values = {**base, "seq": seq, "id": seat, "name": seat, "winner_name": f"W{seq}", **extra}
        await call(page, "update", orjson.dumps(values).decode())

    await expect(page.locator("#lt-winner")).to_have_text("W3-0")
    assert await page.evaluate("window.seatcastGraphic.shown") == [f"3-0 {PETERBOROUGH}"]
