"""Options a user may put in REDIS_URL: none may slow delivery or make a healthy Redis look down.

The reader blocks on XREAD between changes; a socket timeout shorter than that block used to
time every quiet read out, log it as a Redis error, flap ``seatcast_redis_connected`` and back
off, so the first change after a quiet spell waited seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from service.feed import BLOCK_MS
from service.settings import Settings
from tests.service.conftest import connect, run_service, xadd

QUIET = BLOCK_MS / 1000 + 0.5
"""Longer than one blocking read and than every socket timeout below."""


def with_options(url: str, options: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{options}"


@pytest.mark.parametrize(
    "options",
    [
        "socket_timeout=1",
        "socket_timeout=0.2",
        "health_check_interval=1&socket_connect_timeout=0.5",
        "decode_responses=true&protocol=3&max_connections=1",
    ],
)
async def test_a_change_after_a_quiet_spell_arrives_with_no_redis_error_whatever_the_url_options(
    options: str,
    make_settings: Callable[..., Settings],
    redis: aioredis.Redis,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(redis_url=with_options(redis_url, options))
    caplog.set_level(logging.INFO, logger="seatcast")
    async with run_service(settings) as service, connect(service) as client:
        await client.receive()
        await client.subscribe("national")
        assert (await client.receive())["type"] == "snapshot"
        for seats in (7, 8):
            await asyncio.sleep(QUIET)  # a quiet spell: nothing on the stream
            exit_poll = {"type": "exit_poll", "seats": {"LAB": seats}}
            [entry] = await xadd(redis, settings.stream, exit_poll)
            delta = await client.receive()
            assert (delta["type"], delta["seq"]) == ("delta", entry)
            assert delta["patch"]["exit_poll"]["seats"] == {"LAB": seats}
        metrics = (await service.get("/metrics")).text
        ready = await service.get("/readyz")
    assert "seatcast_redis_errors_total 0.0" in metrics
    assert "seatcast_redis_connected 1.0" in metrics
    assert ready.status_code == 200
    complaints = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert complaints == []
