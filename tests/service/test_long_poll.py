"""``?wait=<seq>`` on the channel endpoints, and the count of REST requests by route."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis.asyncio as aioredis

from service.settings import Settings
from tests.conftest import TIMEOUT
from tests.service.conftest import NIGHT_2024, RunningService, run_service, xadd


async def held(service: RunningService, count: int) -> None:
    """Wait until the service holds ``count`` ?wait= requests."""
    async with asyncio.timeout(TIMEOUT):
        while f"seatcast_long_poll_waiters {count:.1f}" not in (await service.get("/metrics")).text:
            await asyncio.sleep(0.02)


async def test_a_wait_is_answered_as_soon_as_the_channel_moves_past_its_seq(
    service: RunningService, redis: aioredis.Redis
) -> None:
    [first] = await xadd(redis, service.settings.stream, NIGHT_2024[1])
    async with asyncio.timeout(TIMEOUT):
        while (await service.get("/api/national")).json()["seq"] != first:
            await asyncio.sleep(0.02)
    waiting = asyncio.create_task(service.get(f"/api/national?wait={first}"))
    await held(service, 1)
    [second] = await xadd(redis, service.settings.stream, NIGHT_2024[2])
    answer = await waiting
    assert answer.status_code == 200
    assert answer.json()["seq"] == second
    assert answer.headers["etag"] == f'"{first}:{second}"'
    # A seq the channel has already moved past is answered at once.
    earlier = await service.get(f"/api/national?wait={first}")
    assert earlier.json()["seq"] == second
    # So is one of another run of the stream (an ETag's form names the run).
    assert (await service.get('/api/national?wait="1-0:99999999999999-0"')).status_code == 200


async def test_a_wait_that_sees_no_change_ends_with_304_and_the_current_tag(
    make_settings: Callable[..., Settings],
) -> None:
    async with run_service(make_settings(long_poll_timeout=0.3)) as service:
        answer = await service.get("/api/declarations?wait=0-0")
        assert answer.status_code == 304
        assert answer.headers["etag"] == '"0-0:0-0"'
        # No cache may keep it: a kept 304 would answer every later long-poll at once.
        assert answer.headers["cache-control"] == "no-store"
        assert "x-accel-expires" not in answer.headers


@pytest.mark.parametrize(
    "wait",
    [
        "",
        "soon",
        "1720148400000",
        "-5",
        "1-x",
        "abc:1-",
        "x:1-0",  # an epoch that is no stream position
        "18446744073709551616-0",  # past a Redis ID's 64 bits: no entry, ever
        "1-0:2-0:stale",
        "1-0:2-0:3-0",
    ],
)
async def test_a_malformed_wait_is_a_400_that_says_what_it_takes(
    service: RunningService, wait: str
) -> None:
    answer = await service.get(f"/api/national?wait={wait}")
    assert answer.status_code == 400
    assert answer.json()["error"] == "bad_wait"
    assert "1720148400000-0" in answer.json()["message"]


async def test_a_wait_takes_the_etag_as_it_was_given_weak_or_withheld(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    """A long-poller passes back the ETag it holds; while an exit poll is embargoed that tag
    says ``:withheld``, and the wait is answered when the embargo lifts, though no seq moves."""
    async with run_service(make_settings(long_poll_timeout=20)) as service:
        until = datetime.now(UTC) + timedelta(seconds=3)
        poll = {"type": "exit_poll", "seats": {"LAB": 410}, "embargo_until": until.isoformat()}
        [entry] = await xadd(redis, service.settings.stream, poll)
        async with asyncio.timeout(TIMEOUT):
            while (await service.get("/api/national")).json()["seq"] != entry:
                await asyncio.sleep(0.02)
        public = await service.get("/api/national")
        tag = public.headers["etag"]
        assert tag.endswith(':withheld"') and "exit_poll" not in public.json()["data"]
        waiting = asyncio.create_task(service.get(f"/api/national?wait=W/{tag}"))
        await held(service, 1)
        answer = await waiting
        assert answer.status_code == 200
        assert answer.headers["etag"] == tag.replace(":withheld", "")
        assert answer.json()["data"]["exit_poll"]["seats"]["LAB"] == 410


async def test_a_waiter_that_goes_away_frees_its_place_at_once(
    make_settings: Callable[..., Settings],
) -> None:
    async with run_service(make_settings(long_poll_waiters=1, long_poll_timeout=60)) as service:
        async with httpx.AsyncClient(base_url=service.http, timeout=0.5) as client:
            with pytest.raises(httpx.TimeoutException):
                await client.get("/api/national?wait=0-0")
        await held(service, 0)
        waiting = asyncio.create_task(service.get("/api/national?wait=0-0"))
        await held(service, 1)  # the one place is free again
        waiting.cancel()


async def test_waiters_past_the_limit_get_503_with_retry_after(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    async with run_service(make_settings(long_poll_waiters=2)) as service:
        waiting = [asyncio.create_task(service.get("/api/national?wait=0-0")) for _ in range(2)]
        await held(service, 2)
        refused = await service.get("/api/national?wait=0-0")
        assert refused.status_code == 503
        assert refused.json()["error"] == "too_many_waiters"
        assert int(refused.headers["retry-after"]) > 0
        # Other channels' plain requests are not held, nor refused.
        assert (await service.get("/api/declarations")).status_code == 200
        [entry] = await xadd(redis, service.settings.stream, NIGHT_2024[1])
        for answer in await asyncio.gather(*waiting):
            assert answer.json()["seq"] == entry
        await held(service, 0)


async def test_metrics_count_rest_requests_by_route_and_status(service: RunningService) -> None:
    async with httpx.AsyncClient(base_url=service.http, timeout=TIMEOUT) as client:
        first = await client.get("/api/national")
        await client.get("/api/national", headers={"If-None-Match": first.headers["etag"]})
        await client.get("/api/constituencies/nowhere")
        await client.get("/graphics/national.json")
        text = (await client.get("/metrics")).text
    assert 'seatcast_http_requests_total{route="/api/national",status="200"} 1.0' in text
    assert 'seatcast_http_requests_total{route="/api/national",status="304"} 1.0' in text
    assert 'seatcast_http_requests_total{route="/api/constituencies/{id}",status="404"}' in text
    assert 'route="/graphics/national.{format}",status="200"' in text
