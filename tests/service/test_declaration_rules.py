"""One result however it is written, and plausibility, through a real service and Redis.

A declaration over the electorate and one listing a candidate twice (in NFC and NFD) go to the
rejected stream with their reasons and change nothing; a resend written another way sends
nothing to any subscriber.
"""

from __future__ import annotations

import asyncio
import unicodedata
from typing import Any

import orjson
import redis.asyncio as aioredis

from tests.conftest import TIMEOUT
from tests.replies import entries
from tests.service.conftest import NIGHT_2024, Client, RunningService, connect, xadd

PETERBOROUGH = "E14001425"
ALDERSHOT = "E14001063"


def night(seat: str) -> dict[str, Any]:
    """The seat's declaration from the bundled 2024 night."""
    for line in NIGHT_2024:
        event: dict[str, Any] = orjson.loads(line)
        if event.get("constituency") == seat and event["type"] == "declaration":
            return event
    raise LookupError(seat)


def peterborough_with_two_900_vote_losers(*, reverse: bool = False) -> dict[str, Any]:
    event = night(PETERBOROUGH)
    *rest, tom, zahid = event["candidates"]
    tom["votes"] = zahid["votes"] = 900
    event["candidates"] = [*rest, zahid, tom] if reverse else [*rest, tom, zahid]
    return event


async def rejected(redis: aioredis.Redis, stream: str, count: int) -> list[dict[bytes, bytes]]:
    """The rejected stream's entries' fields, once it holds ``count``."""
    async with asyncio.timeout(TIMEOUT):
        while await redis.xlen(f"{stream}:rejected") < count:
            await asyncio.sleep(0.02)
    return [fields for _, fields in entries(await redis.xrange(f"{stream}:rejected"))]


async def subscribed(client: Client, *channels: str) -> None:
    assert (await client.receive())["type"] == "hello"
    await client.subscribe(*channels)
    for _ in channels:
        assert (await client.receive())["type"] == "snapshot"


async def test_a_declaration_over_the_electorate_is_rejected_naming_both_figures(
    service: RunningService, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    seat = f"/api/constituencies/{PETERBOROUGH}"
    async with connect(service) as client:
        await subscribed(client, "national", "declarations")
        [declared] = await xadd(redis, stream, night(PETERBOROUGH))
        await client.receive_until(lambda m: m["channel"] == "declarations")
        national, before = [(await service.get(p)).json() for p in ("/api/national", seat)]
        impossible = night(PETERBOROUGH)
        impossible["candidates"][0]["votes"] += 90_000 - 41_872  # 90,000 valid votes
        del impossible["electorate"]  # the definition's: 73,378

        [entry] = await xadd(redis, stream, impossible)
        [copied] = await rejected(redis, stream, 1)

        assert copied[b"id"].decode() == entry
        assert copied[b"reason"].decode() == (
            f"entry {entry}: 90,000 valid votes in Peterborough ({PETERBOROUGH}) are more than "
            "its electorate of 73,378 (the definition's)"
        )
        assert orjson.loads(copied[b"event"]) == impossible
        assert (await service.get("/api/national")).json() == national
        assert (await service.get(seat)).json() == before
        assert before["data"]["turnout"] == 57.06 and before["seq"] == declared
        metrics = (await service.get("/metrics")).text
        assert "seatcast_events_rejected_total 1.0" in metrics
        # Nothing was sent for it: the next message is the next good entry's.
        [good] = await xadd(redis, stream, night(ALDERSHOT))
        message = await client.receive()
        assert (message["seq"], message["prev"]) == (good, declared)


async def test_one_candidate_listed_in_nfc_and_nfd_is_rejected_and_labour_gets_no_votes(
    service: RunningService, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    twice = night(PETERBOROUGH)
    twice["candidates"][:1] = [
        {"name": unicodedata.normalize("NFC", "José Núñez"), "party": "LAB", "votes": 1000},
        {"name": unicodedata.normalize("NFD", "José Núñez"), "party": "LAB", "votes": 900},
    ]

    [entry] = await xadd(redis, stream, twice)
    [copied] = await rejected(redis, stream, 1)

    nfd = unicodedata.normalize("NFD", "José Núñez")  # the feed's own spelling, in the reason
    assert copied[b"reason"].decode() == (
        f"entry {entry}: candidate 2 ({nfd}, LAB) is listed twice, as candidate 1 "
        "(names are compared ignoring case, spacing and Unicode form)"
    )
    national = (await service.get("/api/national")).json()["data"]
    assert national["parties"]["LAB"]["votes"] == 0
    assert national["declared"] == 0


async def test_a_resend_with_two_tied_losers_the_other_way_round_sends_nothing(
    service: RunningService, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    async with connect(service) as client:
        await subscribed(client, "national", f"constituency:{PETERBOROUGH}", "declarations")
        [first] = await xadd(redis, stream, peterborough_with_two_900_vote_losers())
        for _ in range(3):
            assert (await client.receive())["seq"] == first

        resend = peterborough_with_two_900_vote_losers(reverse=True) | {"revision": 2}
        await xadd(redis, stream, resend)
        [good] = await xadd(redis, stream, night(ALDERSHOT))

        # The next messages are Aldershot's: the resend sent nothing, not even a correction.
        got = {}
        for _ in range(2):
            message = await client.receive()
            got[message["channel"]] = (message["seq"], message["prev"])
        assert got == {"national": (good, first), "declarations": (good, first)}
        seat = (await service.get(f"/api/constituencies/{PETERBOROUGH}")).json()
        assert (seat["seq"], seat["data"]["corrections"]) == (first, 0)
