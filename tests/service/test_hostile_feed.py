"""A hostile entry on the stream against a running service: refused with its reason, and
no subscriber is disconnected or shown it."""

from __future__ import annotations

import redis.asyncio as aioredis

from tests.replies import entries
from tests.service.conftest import RunningService, connect, xadd

PETERBOROUGH = "E14001425"


def declaration(winner_name: str, votes: int = 13418) -> dict[str, object]:
    return {
        "type": "declaration",
        "constituency": PETERBOROUGH,
        "candidates": [
            {"name": winner_name, "party": "LAB", "votes": votes},
            {"name": "Paul Bristow", "party": "CON", "votes": 13300},
        ],
    }


async def test_a_declaration_with_a_huge_or_escaping_name_is_refused_and_subscribers_stay(
    service: RunningService, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    async with connect(service) as client:
        await client.receive()
        await client.subscribe("declarations", f"constituency:{PETERBOROUGH}")
        await client.receive()
        await client.receive()
        # Three megabytes of name: once sent to every declarations subscriber, and more
        # than a subscriber's queue holds, so each was closed as too slow.
        huge, escaping, good = await xadd(
            redis,
            stream,
            declaration("N" * 3_000_000),
            declaration("Andrew\x1b[2J Pakes"),
            declaration("Andrew Pakes"),
        )
        first, second = await client.receive(), await client.receive()
        by_channel = {message["channel"]: message for message in (first, second)}
        event = by_channel["declarations"]
        assert (event["type"], event["seq"], event["prev"]) == ("event", good, "0-0")
        assert event["data"]["constituency"]["winner"]["name"] == "Andrew Pakes"
        delta = by_channel[f"constituency:{PETERBOROUGH}"]
        assert (delta["type"], delta["seq"]) == ("delta", good)
        rejected = entries(await redis.xrange(f"{stream}:rejected"))
    reasons = {fields[b"id"].decode(): fields[b"reason"].decode() for _, fields in rejected}
    assert reasons == {
        huge: f"entry {huge}: candidate 1: 'name' is 3,000,000 characters long, over 300",
        escaping: f"entry {escaping}: candidate 1: 'name' has a control character (U+001B) "
        "at character 7",
    }
