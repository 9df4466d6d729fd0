"""The live page behind a proxy that refuses websockets: real nginx, real Chromium, and the
page falling back to Server-Sent Events and staying live."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Page, Request, expect

from tests.browser.conftest import eventually
from tests.browser.test_live_page import (
    PETERBOROUGH,
    PETERBOROUGH_DECLARATION,
    banner_matches_api,
    same,
)
from tests.nginx import Nginx
from tests.service import conftest as service_fixtures
from tests.service.conftest import NIGHT_2024, RunningService, run_service, xadd

pytestmark = pytest.mark.browser
nginx = service_fixtures.nginx

OpenPage = Callable[..., Awaitable[Page]]


async def test_behind_a_proxy_that_blocks_websockets_the_page_goes_live_over_sse(
    service: RunningService, nginx: Nginx, open_page: OpenPage, redis: aioredis.Redis
) -> None:
    # The exit poll and 10 declarations, Peterborough's not among them.
    await xadd(redis, service.settings.stream, *NIGHT_2024[:11])
    page = await open_page(f"{nginx.blocking_url}/?seat={PETERBOROUGH}")
    connection = page.locator("#connection")
    await expect(connection).to_have_attribute("data-state", "live")
    await expect(connection).to_have_attribute("data-transport", "sse")
    await expect(connection.locator(".transport")).to_have_text("via SSE")
    await expect(page.locator("#seats-to-go")).to_have_text("640 seats to go")
    seat = page.locator("#seat-result")
    await expect(seat.locator("h3")).to_have_text("Peterborough")
    await expect(seat.locator("[data-field=status]")).to_have_text("Awaiting result")
    # It follows a change: the seat it watches is declared, the banner and the feed move.
    await xadd(redis, service.settings.stream, PETERBOROUGH_DECLARATION)
    await expect(seat.locator("[data-field=winner]")).to_have_text("Andrew Pakes")
    await expect(page.locator("#seats-to-go")).to_have_text("639 seats to go")
    await expect(page.locator("#feed li").first).to_contain_text("Peterborough")
    # Another seat picked: the stream opens again with it, and stays live.
    search = page.locator("#seat-search")
    await search.fill("")
    await search.press_sequentially("alders")
    await page.get_by_role("option", name="Aldershot").click()
    await expect(seat.locator("h3")).to_have_text("Aldershot")
    await xadd(redis, service.settings.stream, *NIGHT_2024[11:21])
    await eventually(
        lambda: banner_matches_api(page, service.http),
        lambda pair: same(pair) and sum(pair[1].values()) == 21,
        "the banner to show the API's seats over SSE",
    )
    await expect(connection).to_have_attribute("data-state", "live")
    async with httpx.AsyncClient() as client:
        recent = (await client.get(service.http + "/api/declarations")).json()["data"]["recent"]
    feed = await page.eval_on_selector_all("#feed li", "items => items.map(i => i.dataset.seq)")
    assert feed == [entry["seq"] for entry in reversed(recent)][: len(feed)]


async def test_where_websockets_pass_the_page_stays_on_the_websocket(
    service: RunningService, nginx: Nginx, open_page: OpenPage
) -> None:
    page = await open_page(f"{nginx.url}/")
    connection = page.locator("#connection")
    await expect(connection).to_have_attribute("data-state", "live")
    await expect(connection).to_have_attribute("data-transport", "websocket")
    await expect(connection.locator(".transport")).to_be_hidden()


async def test_over_sse_the_page_resumes_a_restarted_service_with_nothing_missed(
    service: RunningService, nginx: Nginx, open_page: OpenPage, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    await xadd(redis, stream, *NIGHT_2024[:21])
    page = await open_page(f"{nginx.blocking_url}/")
    streams: list[Request] = []
    page.on("request", lambda request: streams.append(request) if "/sse?" in request.url else None)
    connection = page.locator("#connection")
    await expect(connection).to_have_attribute("data-transport", "sse")
    await expect(page.locator("#seats-to-go")).to_have_text("630 seats to go")
    port = service.port
    await service.stop()
    await expect(connection).to_have_attribute("data-state", "reconnecting")
    await xadd(redis, stream, *NIGHT_2024[21:36])  # missed while the service is down
    async with run_service(service.settings.model_copy(update={"port": port})) as again:
        await xadd(redis, stream, *NIGHT_2024[36:51])
        await eventually(
            lambda: banner_matches_api(page, again.http),
            lambda pair: same(pair) and sum(pair[1].values()) == 50,
            "the banner to catch up with all 50 seats",
        )
        await expect(page.locator("#seats-to-go")).to_have_text("600 seats to go")
        async with httpx.AsyncClient() as client:
            recent = (await client.get(again.http + "/api/declarations")).json()["data"]["recent"]
    # Every declaration in the feed once, in order, none missed across the restart, and
    # the stream was opened again from the last event id (the browser's own, or the page's).
    feed = await page.eval_on_selector_all("#feed li", "items => items.map(i => i.dataset.seq)")
    assert feed == [entry["seq"] for entry in reversed(recent)][: len(feed)]
    assert len(feed) == 30
    resumed = [
        request.url
        for request in streams
        if "last-event-id" in await request.all_headers() or "last_event_id=" in request.url
    ]
    assert resumed, [request.url for request in streams]
    await expect(connection).to_have_attribute("data-transport", "sse")
