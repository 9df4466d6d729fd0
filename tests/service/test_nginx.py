"""A CDN in front, for real: Debian's nginx configured by deploy/nginx.conf."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import redis.asyncio as aioredis
import websockets

from tests.conftest import TIMEOUT
from tests.nginx import Nginx
from tests.service.conftest import NIGHT_2024, Client, RunningService, xadd
from tests.service.sse_support import sse
from tests.service.test_sse import applied, follow, opening


async def test_nginx_serves_the_api_from_its_cache_with_the_origins_headers(
    service: RunningService, nginx: Nginx
) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        first = await client.get(nginx.url + "/api/national")
        again = await client.get(nginx.url + "/api/national")
        origin = await client.get(service.http + "/api/national")
    assert first.status_code == again.status_code == 200
    assert first.headers["x-cache-status"] == "MISS"
    assert again.headers["x-cache-status"] == "HIT"
    assert again.json() == origin.json()
    assert again.headers["etag"] == origin.headers["etag"]
    assert again.headers["cache-control"] == origin.headers["cache-control"]
    assert "x-accel-expires" in origin.headers and "x-accel-expires" not in again.headers


async def test_nginx_keeps_an_answer_no_longer_than_its_max_age(
    service: RunningService, nginx: Nginx
) -> None:
    """max-age=1: fresh in nginx until the next whole second at most, not one to two."""
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        for _ in range(3):
            # Just after a second begins: without X-Accel-Expires this answer would be
            # served from the cache until the second after next.
            await asyncio.sleep(1.05 - time.time() % 1)
            stored = await client.get(nginx.url + "/api/national?probe")
            await asyncio.sleep(1.05 - time.time() % 1)
            later = await client.get(nginx.url + "/api/national?probe")
            # Stored this second (a miss, or a stale answer whose update is stored meanwhile);
            # asked again in the next second, it has expired.
            assert stored.status_code == later.status_code == 200
            assert later.headers["x-cache-status"] != "HIT"


async def test_sse_through_nginx_gets_every_change_and_resumes_after_a_drop(
    service: RunningService, nginx: Nginx, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    channels = ("national", "declarations")
    async with sse(nginx.url, ",".join(channels)) as client:
        _, held = await opening(client, *channels)
        seen = await xadd(redis, stream, *NIGHT_2024[:4])
        await follow(client, held, seen[-1])  # each as it comes: nothing held in a buffer
        last = client.last_id
    missed = await xadd(redis, stream, *NIGHT_2024[4:8])
    await applied(service, missed[-1])
    async with sse(nginx.url, ",".join(channels), headers={"Last-Event-ID": last}) as again:
        assert (await again.receive())["type"] == "hello"
        await follow(again, held, missed[-1])


async def test_websockets_pass_through_nginx_but_not_through_the_blocking_proxy(
    service: RunningService, nginx: Nginx
) -> None:
    async with websockets.connect(nginx.ws, open_timeout=TIMEOUT) as connection:
        assert (await Client(connection).receive())["type"] == "hello"
    blocked = nginx.blocking_url.replace("http", "ws") + "/ws"
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(blocked, open_timeout=TIMEOUT):
            pass
    # What the page falls back to: SSE through the same proxy.
    async with sse(nginx.blocking_url, "national") as client:
        _, held = await opening(client, "national")
        assert held["national"] == "0-0"


async def test_nginx_passes_long_polls_and_credentials_to_the_origin_uncached(
    service: RunningService, nginx: Nginx, redis: aioredis.Redis
) -> None:
    [entry] = await xadd(redis, service.settings.stream, NIGHT_2024[1])
    await applied(service, entry)
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        await client.get(nginx.url + "/api/national")  # cached now
        for _ in range(2):
            # A long-poll of a seq the channel has moved past: answered by the origin at
            # once, each time, and never kept (a kept answer would loop every long-poller).
            moved = await client.get(nginx.url + "/api/national?wait=0-0")
            assert moved.status_code == 200
            assert moved.headers["x-cache-status"] == "BYPASS"
            assert moved.headers["cache-control"] == "no-store"
        waiting = asyncio.create_task(client.get(nginx.url + f"/api/national?wait={entry}"))
        await asyncio.sleep(0.5)
        assert not waiting.done()  # held at the origin, not answered from the cache
        [later] = await xadd(redis, service.settings.stream, NIGHT_2024[2])
        answer = await waiting
        assert answer.status_code == 200 and answer.json()["seq"] == later
        credential = await client.get(
            nginx.url + "/api/national", headers={"Authorization": "Bearer x"}
        )
        assert credential.headers["x-cache-status"] == "BYPASS"
