"""The live page in headless Chromium against a real service and a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, Any

import httpx
import jwt
import orjson
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Page, expect

from tests.browser.conftest import ARTIFACTS, eventually
from tests.conftest import TIMEOUT
from tests.service.conftest import NIGHT_2024, RunningService, run_service, xadd

pytestmark = pytest.mark.browser

OpenPage = Callable[..., Awaitable[Page]]
PETERBOROUGH = "E14001425"
PETERBOROUGH_DECLARATION = next(line for line in NIGHT_2024 if PETERBOROUGH in line)
DEFAULT_ALONE = ("LAB", "CON", "LD", "SNP", "SF")


def banner_seats(
    national: dict[str, Any], alone: tuple[str, ...] = DEFAULT_ALONE, speaker_with: str = "LAB"
) -> dict[str, int]:
    """The seats the banner should show: the parties alone, the Speaker folded, the rest."""
    parties = national["parties"]
    seats = {code: parties[code]["seats"] for code in alone}
    folded = set(alone)
    if speaker_with in alone:
        seats[speaker_with] += parties["SPK"]["seats"]
        folded.add("SPK")
    seats["others"] = sum(p["seats"] for code, p in parties.items() if code not in folded)
    return seats


async def page_seats(page: Page) -> dict[str, int]:
    seats: dict[str, int] = await page.eval_on_selector_all(
        "#party-rows .party",
        "rows => Object.fromEntries(rows.map(r => [r.dataset.group, Number(r.dataset.seats)]))",
    )
    return seats


async def api_national(base: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        national: dict[str, Any] = (await client.get(f"{base}/api/national")).json()["data"]
        return national


async def banner_matches_api(page: Page, base: str) -> tuple[dict[str, int], dict[str, int]]:
    return await page_seats(page), banner_seats(await api_national(base))


def same(pair: tuple[dict[str, int], dict[str, int]]) -> bool:
    return pair[0] == pair[1]


async def test_the_page_loads_the_snapshot(service: RunningService, open_page: OpenPage) -> None:
    page = await open_page(service.http + "/")
    await expect(page.locator("#seats-to-go")).to_have_text("650 seats to go")
    await expect(page.locator("#majority")).to_have_text("326 seats for a majority")
    await expect(page.locator("#banner h2")).to_have_text("Results: parties by seats")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    assert await page_seats(page) == {"LAB": 0, "CON": 0, "LD": 0, "SNP": 0, "SF": 0, "others": 0}
    await expect(page.locator("#party-rows .party .change").first).to_have_text("no change")


async def test_the_banner_follows_the_national_state_while_the_feeder_replays(
    service: RunningService, open_page: OpenPage, redis_url: str
) -> None:
    page = await open_page(service.http + "/")
    await expect(page.locator("#seats-to-go")).to_have_text("650 seats to go")
    feeder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clients.feeder",
        # Tens of ms to 0.15 s between events: time for the page and the API to agree between.
        *("--limit", "50", "--speed", "2000", "--max-gap", "0.15"),
        *("--stream", service.settings.stream, "--redis-url", redis_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # While the replay runs, and after: the banner agrees with the API.
    matched_during = 0
    while feeder.returncode is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(feeder.wait(), 0.2)
        if same(await banner_matches_api(page, service.http)):
            matched_during += 1
    _, stderr = await feeder.communicate()
    assert feeder.returncode == 0, stderr.decode()
    assert matched_during > 0
    await eventually(
        lambda: banner_matches_api(page, service.http),
        lambda pair: same(pair) and sum(pair[1].values()) == 50,
        "the banner to show the API's seats after 50 declarations",
    )
    await expect(page.locator("#seats-to-go")).to_have_text("600 seats to go")
    # The feed shows the newest first, and it was announced.
    async with httpx.AsyncClient() as client:
        recent = (await client.get(service.http + "/api/declarations")).json()["data"]["recent"]
    await expect(page.locator("#feed li").first).to_contain_text(recent[-1]["headline"])
    await expect(page.locator("#feed li").nth(1)).to_contain_text(recent[-2]["headline"])
    await expect(page.locator("#feed .badge").first).to_have_text(
        recent[-1]["constituency"]["result"].upper()
    )
    await expect(page.locator("#announcer")).to_contain_text(recent[-1]["headline"])


async def test_searching_with_the_keyboard_shows_a_seat_and_keeps_it_live(
    service: RunningService, open_page: OpenPage, redis: aioredis.Redis
) -> None:
    await xadd(redis, service.settings.stream, PETERBOROUGH_DECLARATION)
    page = await open_page(service.http + "/")
    search = page.locator("#seat-search")
    await expect(page.locator("#seats-to-go")).to_have_text("649 seats to go")
    await search.press_sequentially("Peterborough", delay=20)
    await expect(search).to_have_attribute("aria-expanded", "true")
    option = page.get_by_role("option", name="Peterborough")
    await expect(option).to_be_visible()
    await search.press("ArrowDown")
    await expect(option).to_have_attribute("aria-selected", "true")
    await expect(search).to_have_attribute("aria-activedescendant", "seat-option-0")
    await search.press("Enter")
    await expect(search).to_have_attribute("aria-expanded", "false")
    seat = page.locator("#seat-result")
    await expect(seat.locator("h3")).to_have_text("Peterborough")
    await expect(seat.locator("[data-field=winner]")).to_have_text("Andrew Pakes")
    await expect(seat.locator("[data-field=majority]")).to_have_text("118")
    await expect(seat.locator("[data-field=status]")).to_have_text("Declared")
    await expect(seat.locator(".verdict")).to_contain_text("Labour gain from Conservative")
    candidates = len(orjson.loads(PETERBOROUGH_DECLARATION)["candidates"])
    await expect(seat.locator("table.candidates tbody tr")).to_have_count(candidates)
    assert "seat=E14001425" in page.url
    # Live: a correction arrives and the card follows it.
    corrected = orjson.loads(PETERBOROUGH_DECLARATION)
    corrected["candidates"][0]["votes"] += 100
    await xadd(redis, service.settings.stream, corrected)
    await expect(seat.locator("[data-field=majority]")).to_have_text("218")
    await expect(seat.locator("[data-field=corrections]")).to_have_text("1")
    # Escape closes the list; the mouse works too.
    await search.fill("")
    await search.press_sequentially("alders")
    await expect(page.get_by_role("option", name="Aldershot")).to_be_visible()
    await search.press("Escape")
    await expect(search).to_have_attribute("aria-expanded", "false")
    await search.press("ArrowDown")
    await page.get_by_role("option", name="Aldershot").click()
    await expect(seat.locator("h3")).to_have_text("Aldershot")
    await expect(seat.locator("[data-field=status]")).to_have_text("Awaiting result")


async def test_the_parties_shown_and_the_speaker_come_from_the_address(
    service: RunningService, open_page: OpenPage, redis: aioredis.Redis
) -> None:
    await xadd(redis, service.settings.stream, *NIGHT_2024)
    await eventually(
        lambda: api_national(service.http), lambda n: n["declared"] == 650, "the whole night"
    )
    page = await open_page(service.http + "/")
    await expect(page.locator("#seats-to-go")).to_have_text("0 seats to go")
    seats = await page_seats(page)
    assert seats["LAB"] == 412  # Labour with the Speaker, as UK broadcasters counted it
    await expect(page.locator('[data-group="LAB"] .name small')).to_have_text(
        "includes the Speaker"
    )
    await expect(page.locator('[data-group="LAB"] .change')).to_have_text("211 seats gained")
    assert seats == banner_seats(await api_national(service.http))
    await expect(page.locator("#outcome")).to_have_text("Labour wins a majority of 172")
    page = await open_page(service.http + "/?parties=LAB,CON,RUK&speaker=none")
    await expect(page.locator("#seats-to-go")).to_have_text("0 seats to go")
    seats = await page_seats(page)
    assert list(seats) == ["LAB", "CON", "RUK", "others"]
    assert seats == banner_seats(await api_national(service.http), ("LAB", "CON", "RUK"), "")
    assert seats["LAB"] == 411
    await expect(page.locator('[data-group="LAB"] .name small')).to_have_count(0)
    page = await open_page(service.http + "/?speaker=CON")  # the README's example
    await expect(page.locator("#seats-to-go")).to_have_text("0 seats to go")
    seats = await page_seats(page)
    assert seats == banner_seats(await api_national(service.http), DEFAULT_ALONE, "CON")
    assert (seats["LAB"], seats["CON"]) == (411, 122)


# RFC 7386, appendix A: target, patch, result.
MERGE_CASES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


async def test_the_pages_merge_patch_passes_the_rfc_examples(
    service: RunningService, open_page: OpenPage
) -> None:
    page = await open_page(service.http + "/")
    results = await page.evaluate(
        """async (cases) => {
            const { applyMergePatch } = await import("./static/merge.js");
            return cases.map(([target, patch]) => {
                const before = JSON.stringify(target);
                const result = applyMergePatch(target, patch);
                return [result, JSON.stringify(target) === before];
            });
        }""",
        [[target, patch] for target, patch, _ in MERGE_CASES],
    )
    for (target, patch, expected), (result, untouched) in zip(MERGE_CASES, results, strict=True):
        assert result == expected, (target, patch)
        assert untouched, f"the target was modified: {target}"


async def test_a_gap_in_the_prev_chain_makes_the_page_resume(
    service: RunningService, open_page: OpenPage, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    await xadd(redis, stream, *NIGHT_2024[:11])
    page = await open_page(service.http + "/")
    await expect(page.locator("#seats-to-go")).to_have_text("640 seats to go")
    # A delta whose prev is not the seq the page holds: it must not be applied, and the
    # page asks again from what it has.
    await page.evaluate(
        """() => window.seatcast.live.receive({type: "delta", channel: "national",
            seq: "9999999999999-1", prev: "9999999999999-0", patch: {seats_to_declare: 1}})"""
    )
    await expect(page.locator("#seats-to-go")).to_have_text("640 seats to go")
    held = await page.evaluate("window.seatcast.live.channels.get('national').seq")
    assert held == (await service.get("/api/national")).json()["seq"]
    await xadd(redis, stream, *NIGHT_2024[11:21])
    await eventually(
        lambda: banner_matches_api(page, service.http),
        lambda pair: same(pair) and sum(pair[1].values()) == 20,
        "the banner to recover from the gap",
    )
    await expect(page.locator("#seats-to-go")).to_have_text("630 seats to go")


async def test_a_stream_begun_again_gives_the_page_a_new_epoch_and_fresh_state(
    service: RunningService, open_page: OpenPage, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    await xadd(redis, stream, *NIGHT_2024[:31])
    page = await open_page(service.http + "/")
    await expect(page.locator("#seats-to-go")).to_have_text("620 seats to go")
    await redis.delete(stream)
    await xadd(redis, stream, *NIGHT_2024[:6])
    await expect(page.locator("#seats-to-go")).to_have_text("645 seats to go")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "resynced")
    await expect(page.locator("#feed li")).to_have_count(5)
    assert await page_seats(page) == banner_seats(await api_national(service.http))


# --- a restart: the service as a real process --------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def service_process(redis_url: str, stream: str, port: int) -> AsyncIterator[str]:
    """``python -m service`` on the port; yields its base URL once ready; SIGTERM after."""
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "SEATCAST_STREAM": stream,
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    with tempfile.TemporaryFile() as log:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "service", "--log-level", "warning"),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            async with asyncio.timeout(TIMEOUT), httpx.AsyncClient() as client:
                while True:
                    assert process.returncode is None, f"the service exited: {_read(log)}"
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(base + "/readyz")).status_code == 200:
                            break
                    await asyncio.sleep(0.05)
            yield base
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.wait_for(process.wait(), TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()
                raise
            assert code == 0, f"the service exited with {code}: {_read(log)}"


def _read(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")


async def test_the_page_reconnects_after_a_restart_and_catches_up(
    open_page: OpenPage, redis: aioredis.Redis, redis_url: str, stream_key: str
) -> None:
    port = free_port()
    night = iter(NIGHT_2024)

    def next_events(count: int) -> list[str]:
        return [next(night) for _ in range(count)]

    async with service_process(redis_url, stream_key, port) as base:
        await xadd(redis, stream_key, *next_events(21))
        page = await open_page(base + "/")
        await eventually(
            lambda: banner_matches_api(page, base),
            lambda pair: same(pair) and sum(pair[1].values()) == 20,
            "the first 20 seats",
        )
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        await page.evaluate("window.sameDocument = true")
    # The service is stopped (SIGTERM): the page says so and keeps what it has.
    await expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    await expect(page.locator("#seats-to-go")).to_have_text("630 seats to go")
    await xadd(redis, stream_key, *next_events(15))  # missed while the service is down

    async with service_process(redis_url, stream_key, port) as base:
        await xadd(redis, stream_key, *next_events(15))
        await expect(page.locator("#connection")).to_have_attribute("data-state", "resynced")
        await eventually(
            lambda: banner_matches_api(page, base),
            lambda pair: same(pair) and sum(pair[1].values()) == 50,
            "the banner to catch up with all 50 seats",
        )
        await expect(page.locator("#seats-to-go")).to_have_text("600 seats to go")
        async with httpx.AsyncClient() as client:
            recent = (await client.get(base + "/api/declarations")).json()["data"]["recent"]
        await expect(page.locator("#feed li").first).to_contain_text(recent[-1]["headline"])
        # Every declaration is in the feed once, none missed across the restart.
        feed = await page.eval_on_selector_all("#feed li", "items => items.map(i => i.dataset.seq)")
        assert feed == [entry["seq"] for entry in reversed(recent)][: len(feed)]
        assert len(feed) == 30
        assert await page.evaluate("window.sameDocument") is True


# --- how it looks ---------------------------------------------------------------------------


async def test_screenshots_at_studio_and_phone_widths(
    service: RunningService, open_page: OpenPage, redis: aioredis.Redis
) -> None:
    events = [line for line in NIGHT_2024[:240] if PETERBOROUGH not in line]
    await xadd(redis, service.settings.stream, *events, PETERBOROUGH_DECLARATION)
    await eventually(
        lambda: api_national(service.http), lambda n: n["declared"] == 240, "240 seats"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    url = f"{service.http}/?seat={PETERBOROUGH}&area=region:east-of-england"
    for width, height, name in ((1920, 1080, "live-1920x1080"), (360, 800, "live-360")):
        page = await open_page(url, width, height)
        await expect(page.locator("#seats-to-go")).to_have_text("410 seats to go")
        await expect(page.locator("[data-field=winner]")).to_have_text("Andrew Pakes")
        await expect(page.locator("#area-result tbody tr").first).to_be_visible()
        await expect(page.locator("#feed li")).to_have_count(30)
        # Nothing wider than the screen: no sideways scrolling on a phone.
        scroll_width = await page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= width, f"{name}: the page is {scroll_width}px wide"
        await page.wait_for_timeout(700)  # let the seat bar's transition finish
        await page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


async def test_where_tokens_are_required_the_page_brings_the_one_in_its_address(
    make_settings: Callable[..., Any], open_page: OpenPage
) -> None:
    secret = "browser-test-secret-0123456789abcdef"
    settings = make_settings(token_secret=secret, require_token=True)
    token = jwt.encode({"exp": int(time.time()) + 600}, secret, algorithm="HS256")
    async with run_service(settings) as service:
        page = await open_page(f"{service.http}/?token={token}")
        await expect(page.locator("#seats-to-go")).to_have_text("650 seats to go")
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")


async def test_the_page_shows_the_data_licence_attribution(
    service: RunningService, open_page: OpenPage
) -> None:
    page = await open_page(service.http + "/")
    await expect(page.locator("#attribution")).to_have_text(
        "Contains Parliamentary information licensed under the Open Parliament Licence v3.0."
    )
