"""Rule 3 against real services: a ``since`` from any channel, or the hello, or another
instance, is answered at the channel's place in its chain, and what follows is delivered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from service.core.seq import Seq
from service.fanout.hub import RESUME_WAIT
from service.settings import Settings
from tests.conftest import TIMEOUT
from tests.service.conftest import RunningService, connect, run_service, xadd

PETERBOROUGH = "E14001425"
ALDERSHOT = "E14001063"


def declaration(seat: str, winner: str = "LAB") -> dict[str, Any]:
    loser = "CON" if winner == "LAB" else "LAB"
    return {
        "type": "declaration",
        "constituency": seat,
        "candidates": [
            {"name": "First Person", "party": winner, "votes": 13418},
            {"name": "Second Person", "party": loser, "votes": 13300},
        ],
    }


async def wait_for_seq(service: RunningService, seq: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        while (await service.get("/readyz")).json().get("seq") != seq:
            await asyncio.sleep(0.02)


async def test_a_since_from_the_hello_after_another_seats_change_resumes_and_delivers(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    settings = make_settings()
    stream = settings.stream
    async with run_service(settings) as one, run_service(settings) as two:
        declared, counting = await xadd(
            redis,
            stream,
            declaration(PETERBOROUGH),
            {"type": "status", "constituency": ALDERSHOT, "status": "counting"},
        )
        await wait_for_seq(one, counting)
        await wait_for_seq(two, counting)
        async with connect(one) as client:
            hello = await client.receive()
        assert hello["seq"] == counting  # the last entry changed Aldershot, not national
        channels = ("national", f"constituency:{PETERBOROUGH}", f"constituency:{ALDERSHOT}")
        # The same since on this instance and on another one.
        async with connect(one) as first, connect(two) as second:
            for client in (first, second):
                await client.receive()
                await client.subscribe(
                    *channels, since={c: hello["seq"] for c in channels}, epoch=hello["epoch"]
                )
                answers = [await client.receive() for _ in channels]
                assert {a["channel"]: (a["type"], a["seq"]) for a in answers} == {
                    "national": ("resumed", declared),
                    f"constituency:{PETERBOROUGH}": ("resumed", declared),
                    f"constituency:{ALDERSHOT}": ("resumed", counting),
                }
            (later,) = await xadd(redis, stream, declaration(ALDERSHOT))
            for client in (first, second):
                changes = [await client.receive() for _ in range(2)]
                assert {c["channel"]: (c["prev"], c["seq"]) for c in changes} == {
                    "national": (declared, later),
                    f"constituency:{ALDERSHOT}": (counting, later),
                }


async def test_a_since_this_instance_cannot_place_gets_a_snapshot(
    service: RunningService, redis: aioredis.Redis
) -> None:
    (only,) = await xadd(redis, service.settings.stream, declaration(PETERBOROUGH))
    await wait_for_seq(service, only)
    async with connect(service) as client:
        hello = await client.receive()
        for since, epoch in [
            ("not-a-seq", hello["epoch"]),  # no entry at all
            ({"a": 1}, hello["epoch"]),
            (only, "1-0"),  # another run of the stream
            ("1-0", hello["epoch"]),  # older than this run's first entry
            (f"{Seq.parse(only).ms + 3_600_000}-0", hello["epoch"]),  # an hour ahead
        ]:
            await client.subscribe("national", since={"national": since}, epoch=epoch)
            answer = await client.receive()
            assert (answer["type"], answer["seq"]) == ("snapshot", only), (since, epoch)


async def test_a_since_not_yet_applied_is_answered_with_a_snapshot_after_the_wait(
    service: RunningService, redis: aioredis.Redis
) -> None:
    (only,) = await xadd(redis, service.settings.stream, declaration(PETERBOROUGH))
    await wait_for_seq(service, only)
    ahead = f"{Seq.parse(only).ms + 1000}-0"  # as if from a faster instance; never written
    async with connect(service) as client:
        hello = await client.receive()
        started = asyncio.get_running_loop().time()
        await client.subscribe("national", since={"national": ahead}, epoch=hello["epoch"])
        answer = await client.receive()  # the stream stays quiet: the wait ends by the clock
        assert (answer["type"], answer["seq"]) == ("snapshot", only)
        assert asyncio.get_running_loop().time() - started >= RESUME_WAIT - 0.5


async def test_a_since_not_yet_applied_is_answered_once_the_stream_reaches_it(
    service: RunningService, redis: aioredis.Redis
) -> None:
    (first,) = await xadd(redis, service.settings.stream, declaration(PETERBOROUGH))
    await wait_for_seq(service, first)
    ahead = Seq.parse(first).ms + 2000
    async with connect(service) as client:
        hello = await client.receive()
        await client.subscribe("national", since={"national": f"{ahead}-0"}, epoch=hello["epoch"])
        # The entry the client saw elsewhere arrives here: it changed national.
        await redis.xadd(
            service.settings.stream,
            {"event": b'{"type":"status","constituency":"E14001063","status":"counting"}'},
            id=f"{ahead - 1}-0",
        )
        await redis.xadd(
            service.settings.stream,
            {"event": b'{"type":"exit_poll","seats":{"LAB":410}}'},
            id=f"{ahead}-0",
        )
        answer = await client.receive()
        assert (answer["type"], answer["seq"]) == ("resumed", f"{ahead}-0")
        (later,) = await xadd(redis, service.settings.stream, declaration(ALDERSHOT))
        delta = await client.receive()
        assert (delta["type"], delta["prev"], delta["seq"]) == ("delta", f"{ahead}-0", later)
