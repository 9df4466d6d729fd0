"""Bad input on /sse: unknown or too many channels, a Last-Event-ID that cannot be used, and
the websocket's rules for tokens, origins, embargo and rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis.asyncio as aioredis

from service.settings import Settings
from tests.conftest import TIMEOUT
from tests.service.conftest import NIGHT_2024, RunningService, run_service, xadd
from tests.service.sse_support import refused, sse
from tests.service.test_access import SECRET, token
from tests.service.test_sse import applied


async def test_a_stream_of_no_known_channel_is_a_400_that_names_them(
    service: RunningService,
) -> None:
    answer = await refused(service.http, "?channels=nowhere,constituency:X99")
    assert answer.status_code == 400
    assert answer.json()["error"] == "unknown_channel"
    assert "nowhere, constituency:X99" in answer.json()["message"]
    for query in ("", "?channels=", "?channels=,,"):
        answer = await refused(service.http, query)
        assert answer.status_code == 400
        assert "channels=national" in answer.json()["message"]


async def test_an_unknown_channel_gets_an_error_event_and_the_known_ones_are_served(
    service: RunningService,
) -> None:
    async with sse(service.http, "national,nowhere") as client:
        assert (await client.receive())["type"] == "hello"
        error = await client.receive()
        assert error["type"] == "error"
        assert error["code"] == "unknown_channel"
        assert "nowhere" in error["message"]
        snapshot = await client.receive()
        assert (snapshot["type"], snapshot["channel"]) == ("snapshot", "national")


async def test_more_channels_than_the_limit_is_a_400(
    make_settings: Callable[..., Settings],
) -> None:
    async with run_service(make_settings(max_channels=2)) as service:
        answer = await refused(service.http, "?channels=national,declarations,posts")
        assert answer.status_code == 400
        assert answer.json()["error"] == "too_many_channels"
        assert "at most 2" in answer.json()["message"]


@pytest.mark.parametrize(
    "last_event_id",
    [
        "garbage",
        "1720148400000-0",
        ":",
        "abc:def",
        "0-0:",
        ":0-0",
        "1-0:5-0",
        "1-0:5-0:6-0",
        "%ff:",
    ],
)
async def test_a_last_event_id_that_cannot_be_placed_gets_a_snapshot_not_an_error(
    service: RunningService, redis: aioredis.Redis, last_event_id: str
) -> None:
    ids = await xadd(redis, service.settings.stream, *NIGHT_2024[:2])
    await applied(service, ids[-1])
    for header, query in (
        ({"Last-Event-ID": last_event_id}, {}),
        ({}, {"last_event_id": last_event_id}),
    ):
        async with sse(service.http, "national,declarations", headers=header, **query) as client:
            assert (await client.receive())["type"] == "hello"
            for channel in ("national", "declarations"):
                answer = await client.receive()
                assert (answer["type"], answer["channel"]) == ("snapshot", channel)
            assert client.last_id == f"{ids[0]}:{ids[-1]}"


async def test_a_last_event_id_from_the_future_waits_briefly_then_resumes_or_gets_a_snapshot(
    service: RunningService, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    [epoch] = await xadd(redis, stream, NIGHT_2024[1])
    await applied(service, epoch)
    ahead = f"{int(epoch.split('-')[0]) + 1000}-0"
    # Seen on a faster instance: answered once this one reads that entry.
    async with sse(service.http, "declarations", last_event_id=f"{epoch}:{ahead}") as client:
        assert (await client.receive())["type"] == "hello"
        await redis.xadd(stream, {"event": NIGHT_2024[2]}, id=ahead)
        resumed = await client.receive()
        assert (resumed["type"], resumed["seq"]) == ("resumed", ahead)
    # Never read anywhere: after the brief wait, a snapshot (one answer, no error, no loop).
    further = f"{int(ahead.split('-')[0]) + 1000}-0"
    async with sse(service.http, "declarations", last_event_id=f"{epoch}:{further}") as client:
        assert (await client.receive())["type"] == "hello"
        answer = await client.receive()
        assert (answer["type"], answer["seq"]) == ("snapshot", ahead)
    # Far beyond what any instance could be ahead by: a snapshot at once.
    async with sse(service.http, "declarations", last_event_id=f"{epoch}:99999999999999-0") as c:
        assert (await c.receive())["type"] == "hello"
        assert (await c.receive())["type"] == "snapshot"


async def test_tokens_are_checked_as_on_the_websocket(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(token_secret=SECRET, require_token=True)
    async with run_service(settings) as service:
        assert (await refused(service.http, "?channels=national")).status_code == 401
        bad = {"Authorization": "Bearer not-a-token"}
        assert (await refused(service.http, "?channels=national", bad)).status_code == 401
        national_only = token(channels=["national"])
        forbidden = await refused(service.http, f"?channels=declarations&token={national_only}")
        assert forbidden.status_code == 403
        header = {"Authorization": f"Bearer {national_only}"}
        async with sse(service.http, "national,declarations", headers=header) as client:
            assert (await client.receive())["type"] == "hello"
            error = await client.receive()
            assert (error["type"], error["code"]) == ("error", "forbidden")
            assert (await client.receive())["channel"] == "national"
        async with sse(service.http, "national", token=national_only) as client:
            assert (await client.receive())["type"] == "hello"


async def test_a_token_that_expires_mid_stream_ends_it(
    make_settings: Callable[..., Settings],
) -> None:
    async with run_service(make_settings(token_secret=SECRET, require_token=True)) as service:
        brief = token(exp=int(time.time()) + 2)
        async with sse(service.http, "national", token=brief) as client:
            assert (await client.receive())["type"] == "hello"
            assert (await client.receive())["type"] == "snapshot"
            assert await client.ended()


async def test_an_origin_allowlist_binds_browsers_on_sse_too(
    make_settings: Callable[..., Settings],
) -> None:
    async with run_service(make_settings(allowed_origins="https://news.example")) as service:
        evil = {"Origin": "https://evil.example"}
        answer = await refused(service.http, "?channels=national", evil)
        assert answer.status_code == 403
        good = {"Origin": "https://news.example"}
        async with sse(service.http, "national", headers=good) as client:
            assert client.response.headers["access-control-allow-origin"] == good["Origin"]
            assert (await client.receive())["type"] == "hello"


async def test_opening_streams_faster_than_the_rate_limit_gets_429_with_retry_after(
    make_settings: Callable[..., Settings],
) -> None:
    async with run_service(make_settings(sse_open_rate=1)) as service:
        for _ in range(2):  # the burst: twice the rate
            async with sse(service.http, "national") as client:
                assert (await client.receive())["type"] == "hello"
        answer = await refused(service.http, "?channels=national")
        assert answer.status_code == 429
        assert answer.json()["error"] == "rate_limited"
        assert int(answer.headers["retry-after"]) >= 1


async def test_behind_a_trusted_proxy_the_open_rate_counts_each_forwarded_address(
    make_settings: Callable[..., Settings],
) -> None:
    async with run_service(make_settings(sse_open_rate=1)) as service:
        for address in ("203.0.113.7", "198.51.100.9"):  # the burst of each: twice the rate
            for _ in range(2):
                async with sse(
                    service.http, "national", headers={"X-Forwarded-For": address}
                ) as client:
                    assert (await client.receive())["type"] == "hello"
        again = await refused(service.http, "?channels=national", {"X-Forwarded-For": address})
        assert again.status_code == 429


async def test_an_embargoed_exit_poll_is_withheld_from_public_streams(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    async with run_service(make_settings(token_secret=SECRET)) as service:
        newsroom = {"Authorization": f"Bearer {token(embargo=True)}"}
        async with (
            sse(service.http, "national") as public,
            sse(service.http, "national", headers=newsroom) as desk,
        ):
            for client in (public, desk):
                assert (await client.receive())["type"] == "hello"
                assert (await client.receive())["type"] == "snapshot"
            until = datetime.now(UTC) + timedelta(seconds=60)
            poll = {"type": "exit_poll", "seats": {"LAB": 410}, "embargo_until": until.isoformat()}
            [entry] = await xadd(redis, service.settings.stream, poll)
            seen, withheld = await asyncio.gather(desk.receive(), public.receive())
            assert seen["patch"]["exit_poll"]["seats"]["LAB"] == 410
            assert withheld["seq"] == entry
            assert "exit_poll" not in withheld["patch"]


async def test_a_head_request_gets_the_streams_headers_and_no_stream(
    service: RunningService,
) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        answer = await client.head(service.http + "/sse?channels=national")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")


async def test_an_unknown_channel_is_named_back_cut_short(service: RunningService) -> None:
    name = "x" * 5000
    answer = await service.get(f"/sse?channels={name}")
    assert answer.status_code == 400
    assert answer.json()["error"] == "unknown_channel"
    assert len(answer.json()["message"]) < 100
