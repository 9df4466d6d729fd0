"""The posts log against a real service, a real Redis and real websocket clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from websockets.exceptions import ConnectionClosed

from service.settings import Settings
from tests.conftest import TIMEOUT
from tests.replies import as_bytes, entries
from tests.service.conftest import Client, RunningService, connect, run_service, xadd
from tests.service.test_slow_clients import stalled_client, xadd_many

PETERBOROUGH = "E14001425"
ALDERSHOT = "E14001063"


def post(post_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "post",
        "id": post_id,
        "title": "What were the key issues in Peterborough?",
        "body": "Housing, and the cost of living.",
        **fields,
    }


def withdrawal(post_id: str) -> dict[str, Any]:
    return {"type": "post", "id": post_id, "withdrawn": True}


def follow(posts: list[dict[str, Any]], event: dict[str, Any]) -> None:
    """What a client does with a posts event to the posts it holds."""
    ids = [p["id"] for p in posts]
    if event["kind"] == "post":
        posts.append(event["post"])
    elif event["kind"] == "replacement":
        posts[ids.index(event["post"]["id"])] = event["post"]
    else:
        del posts[ids.index(event["post"]["id"])]


async def caught_up(service: RunningService, seq: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        while (await service.get("/readyz")).json()["seq"] != seq:
            await asyncio.sleep(0.02)


async def subscribed(client: Client, **extra: Any) -> dict[str, Any]:
    hello = await client.receive()
    await client.subscribe("posts", **extra)
    return hello


async def test_posts_replacements_and_withdrawals_arrive_as_events_and_rest_agrees(
    service: RunningService, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    async with connect(service) as client:
        await subscribed(client)
        snapshot = await client.receive()
        assert snapshot == {
            "type": "snapshot",
            "channel": "posts",
            "seq": "0-0",
            "data": {"recent": []},
        }
        ids = await xadd(
            redis,
            stream,
            post("p1", author="Ana Ruiz", role="Political correspondent"),
            post("p2", constituencies=[PETERBOROUGH], published_at="2024-07-04T23:21:00+01:00"),
            post("p1", title="Key issues, updated", author="Ana Ruiz"),
            post("p1", title="Key issues, updated", author="Ana Ruiz"),  # a repeat: nothing
            withdrawal("p2"),
            post("p3", constituencies=[PETERBOROUGH, ALDERSHOT]),
        )
        held: list[dict[str, Any]] = []
        kinds = []
        prev = "0-0"
        while prev != ids[-1]:
            event = await client.receive()
            assert (event["type"], event["channel"], event["prev"]) == ("event", "posts", prev)
            prev = event["seq"]
            kinds.append(event["data"]["kind"])
            follow(held, event["data"])
        assert kinds == ["post", "post", "replacement", "withdrawal", "post"]
    rest = (await service.get("/api/posts")).json()
    assert rest == {"seq": ids[-1], "data": {"recent": held}}
    assert [p["id"] for p in held] == ["p1", "p3"]
    assert held[0] == {
        "id": "p1",
        "seq": ids[2],
        "title": "Key issues, updated",
        "body": "Housing, and the cost of living.",
        "published_at": held[0]["published_at"],
        "author": "Ana Ruiz",
    }
    about = (await service.get(f"/api/posts?constituency={PETERBOROUGH}")).json()
    assert about == {"seq": ids[-1], "data": {"posts": [held[1]]}}
    missing = await service.get("/api/posts?constituency=E99999999")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


async def test_since_resumes_the_posts_log_with_what_was_missed(
    service: RunningService, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    [first] = await xadd(redis, stream, post("p1"))
    await caught_up(service, first)
    missed = await xadd(redis, stream, post("p2"), withdrawal("p1"))
    async with connect(service) as client:
        hello = await subscribed(client, since={"posts": first}, epoch=first)
        assert hello["epoch"] == first
        assert await client.receive() == {"type": "resumed", "channel": "posts", "seq": first}
        events = [await client.receive(), await client.receive()]
    assert [(e["seq"], e["data"]["kind"]) for e in events] == [
        (missed[0], "post"),
        (missed[1], "withdrawal"),
    ]


async def test_a_restarted_instance_still_resumes_the_posts_log(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    settings = make_settings()
    ids = await xadd(redis, settings.stream, post("p1"), post("p2"), post("p1", title="New"))
    async with run_service(settings) as service, connect(service) as client:
        await subscribed(client, since={"posts": ids[0]}, epoch=ids[0])
        assert (await client.receive())["type"] == "resumed"
        events = [await client.receive(), await client.receive()]
        assert [e["data"]["kind"] for e in events] == ["post", "replacement"]
        assert events[0]["prev"] == ids[0]


async def test_hostile_and_malformed_posts_are_rejected_with_reasons_and_change_nothing(
    service: RunningService, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    [good] = await xadd(redis, stream, post("p1"))
    await caught_up(service, good)
    before = (await service.get("/api/posts")).json()
    bad: list[tuple[bytes, str]] = [
        (orjson.dumps(post("p2", body="x" * 200_000)), "'body' is 200,000 characters long"),
        (orjson.dumps(post("p2", title="Clear\x1b[2J screen")), "control character (U+001B)"),
        (orjson.dumps(post("p2", author="\u202egninnaM")), "bidirectional control (U+202E)"),
        (orjson.dumps(post("p2", constituencies=["E99999999"])), "unknown constituency"),
        (orjson.dumps(withdrawal("nope")), "no post 'nope' to withdraw"),
        (orjson.dumps({"type": "post", "id": "p2"}), "'title' must be a non-empty string"),
        (b'{"type": "post", "id": "p2", "title": "T", "body": "\\u0000"}', "(U+0000)"),
    ]
    ids = [as_bytes(await redis.xadd(stream, {"event": raw})).decode() for raw, _ in bad]
    async with asyncio.timeout(TIMEOUT):
        while await redis.xlen(f"{stream}:rejected") < len(bad):
            await asyncio.sleep(0.02)
    rejected = entries(await redis.xrange(f"{stream}:rejected"))
    assert [entry_id.decode() for entry_id, _ in rejected] == ids
    for (_, fields), (raw, words) in zip(rejected, bad, strict=True):
        reason = fields[b"reason"].decode()
        assert words in reason, reason
        assert reason.isprintable()
        assert fields[b"event"] == raw
    after = (await service.get("/api/posts")).json()
    assert after["data"] == before["data"]
    # Still running: a good post after the bad ones is applied.
    [last] = await xadd(redis, stream, post("p3"))
    await caught_up(service, last)
    assert [p["id"] for p in (await service.get("/api/posts")).json()["data"]["recent"]] == [
        "p1",
        "p3",
    ]


async def test_a_stalled_client_on_posts_is_closed_with_1013_not_silently_skipped(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    async with run_service(make_settings(queue_bytes=65_536)) as service:
        async with stalled_client(service, ["posts"]) as slow:
            body = "A long live post. " * 500
            posts = [orjson.dumps(post(f"p{n}", body=body)).decode() for n in range(400)]
            ids = await xadd_many(redis, service.settings.stream, posts)
            await caught_up(service, ids[-1])
            # It reads again: what was queued for it, then the close, never a skipped post.
            prev = (orjson.loads(await slow.recv()))["seq"]  # the snapshot
            with contextlib.suppress(ConnectionClosed):
                async with asyncio.timeout(TIMEOUT):
                    while True:
                        event = orjson.loads(await slow.recv())
                        assert event["prev"] == prev
                        prev = event["seq"]
            assert slow.close_code == 1013
            assert prev != ids[-1]
