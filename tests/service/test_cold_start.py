"""A cold start: an instance that starts on a long stream catches up quietly (no changes
built, nothing published) and must end exactly where an instance that was running while
the entries arrived ended — every state, every seq, the declarations log, the rejections."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import redis.asyncio as aioredis

from service.core.decoding import decode_event
from service.core.election import Election
from service.core.events import InvalidEvent
from service.core.seq import Seq
from service.core.tally import Tally
from service.settings import Settings
from tests.conftest import TIMEOUT
from tests.core.builders import bundled_election
from tests.service.conftest import NIGHT_2024, RunningService, connect, run_service, xadd
from tests.service.test_access import SECRET, token
from tests.service.test_slow_clients import churn, xadd_many


def busy_night(count: int, seed: int = 2024) -> list[str]:
    """The 2024 night, then ``count`` more entries: corrections, resends, retractions,
    flashes, recounts, revisions (some stale), exit polls and bad entries of every kind."""
    rng = random.Random(seed)
    declarations = [orjson.loads(line) for line in NIGHT_2024[1:]]
    corrections = iter(churn(count))
    events: list[Any] = list(NIGHT_2024)
    revisions: dict[str, int] = {}
    for _ in range(count):
        seat = rng.choice(declarations)
        seat_id = seat["constituency"]
        roll = rng.random()
        if roll < 0.45:
            events.append(next(corrections))
        elif roll < 0.52:
            events.append(seat)  # a resend: nothing changes
        elif roll < 0.60:
            events.append({"type": "retraction", "constituency": seat_id, "reason": "error"})
        elif roll < 0.68:
            winner = seat["candidates"][rng.randrange(2)]
            events.append(
                {
                    "type": "flash",
                    "constituency": seat_id,
                    "winner": {"name": winner["name"], "party": winner["party"]},
                }
            )
        elif roll < 0.76:
            # Refused while the seat has a result, taken while it is awaiting.
            status = rng.choice(["counting", "recount", "awaiting"])
            events.append({"type": "status", "constituency": seat_id, "status": status})
        elif roll < 0.86:
            revision = revisions.get(seat_id, 0) + rng.choice([-1, 0, 1, 1, 2])
            revisions[seat_id] = max(revision, revisions.get(seat_id, 0))
            events.append({**orjson.loads(next(corrections)), "revision": revision})
        elif roll < 0.90:
            seats = {"LAB": rng.choice([410, 412]), "CON": 131}
            published = rng.choice(["2024-07-04T22:00:00+01:00", "2024-07-04T23:00:00+01:00"])
            events.append({"type": "exit_poll", "seats": seats, "published_at": published})
        else:
            events.append(
                rng.choice(
                    [
                        "not json",
                        '{"type": "landslide"}',
                        {**seat, "constituency": "E99999999"},
                        {**seat, "candidates": [{**seat["candidates"][0], "votes": -1}]},
                        {**seat, "candidates": seat["candidates"] * 2},
                    ]
                )
            )
    return [event if isinstance(event, str) else orjson.dumps(event).decode() for event in events]


def rejected_ids(election: Election, ids: list[str], events: list[str]) -> list[str]:
    """The entries that the core refuses, as the reader applies them."""
    tally = Tally(election)
    refused = []
    for entry, raw in zip(ids, events, strict=True):
        try:
            tally.apply(Seq.parse(entry), decode_event(raw, election, entry))
        except InvalidEvent:
            if Seq.parse(entry) > tally.seq:
                tally.skip(Seq.parse(entry))
            refused.append(entry)
    return refused


async def everything(service: RunningService) -> dict[str, Any]:
    """What clients can read of the instance: every state with its seq, and its position."""
    election = bundled_election("uk-2024")
    paths = ["/api/national", "/api/declarations", "/api/constituencies"]
    paths += [f"/api/regions/{slug}" for slug in election.regions]
    paths += [f"/api/nations/{slug}" for slug in election.nations]
    paths += [f"/api/constituencies/{seat_id}" for seat_id in election.constituencies]
    seen: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=service.http, timeout=TIMEOUT) as client:
        for path in paths:
            response = await client.get(path)
            assert response.status_code == 200, path
            seen[path] = response.json()
        ready = (await client.get("/readyz")).json()
        metrics = (await client.get("/metrics")).text
    seen["/readyz"] = {"seq": ready["seq"], "epoch": ready["epoch"]}
    seen["/metrics"] = sorted(
        line
        for line in metrics.splitlines()
        if line.startswith(("seatcast_events_applied", "seatcast_events_rejected"))
        or line.startswith("seatcast_events_stale")
    )
    assert len(seen["/metrics"]) == 3
    return seen


async def rejected_stream(redis: aioredis.Redis, stream: str) -> list[str]:
    entries: Any = await redis.xrange(f"{stream}:rejected")
    return [entry_id.decode() for entry_id, _ in entries]


async def test_a_cold_start_ends_exactly_where_a_running_instance_ended(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    settings = make_settings()
    events = busy_night(4000)
    async with run_service(settings) as running:
        ids = await xadd_many(redis, settings.stream, events)
        async with (
            asyncio.timeout(TIMEOUT),
            httpx.AsyncClient(base_url=running.http, timeout=TIMEOUT) as client,
        ):
            while (await client.get("/readyz")).json()["seq"] != ids[-1]:
                await asyncio.sleep(0.02)
        refused = rejected_ids(bundled_election("uk-2024"), ids, events)
        assert len(refused) > 100, "the night has bad entries of every kind"
        # The reader copies a batch's rejections just after it has applied the batch.
        async with asyncio.timeout(TIMEOUT):
            while await redis.xlen(f"{settings.stream}:rejected") < len(refused):
                await asyncio.sleep(0.02)
        live = await everything(running)
    assert await rejected_stream(redis, settings.stream) == refused
    # The cold instance must copy them itself.
    await redis.delete(f"{settings.stream}:rejected")

    async with run_service(settings) as cold:
        started = await everything(cold)
        assert await rejected_stream(redis, settings.stream) == refused

    assert started["/readyz"] == {"seq": ids[-1], "epoch": ids[0]}
    assert len(started["/api/declarations"]["data"]["recent"]) == 50
    assert started.keys() == live.keys()
    for path, seen in live.items():
        assert started[path] == seen, path


async def test_after_a_cold_start_the_current_seq_resumes_and_an_older_one_gets_a_snapshot(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    settings = make_settings()
    ids = await xadd_many(redis, settings.stream, NIGHT_2024 + churn(500))
    async with run_service(settings) as service, connect(service) as client:
        hello = await client.receive()
        assert (hello["epoch"], hello["seq"]) == (ids[0], ids[-1])
        national = (await service.get("/api/national")).json()
        declarations = (await service.get("/api/declarations")).json()
        assert declarations["seq"] == ids[-1]

        await client.subscribe(
            "national",
            "declarations",
            since={"national": national["seq"], "declarations": ids[-1]},
            epoch=hello["epoch"],
        )
        assert await client.receive() == {
            "type": "resumed",
            "channel": "national",
            "seq": national["seq"],
        }
        assert await client.receive() == {
            "type": "resumed",
            "channel": "declarations",
            "seq": ids[-1],
        }

        # The declarations log is kept through a restart: an older seq of it resumes, and
        # every declaration after it follows, none lost.
        await client.send({"op": "unsubscribe", "channels": ["declarations"]})
        await client.subscribe(
            "declarations", since={"declarations": ids[-300]}, epoch=hello["epoch"]
        )
        assert (await client.receive())["type"] == "resumed"
        prev = ids[-300]
        for expected in ids[-299:]:
            event = await client.receive()
            assert (event["prev"], event["seq"]) == (prev, expected)
            prev = expected

        # State channels start their history at the start: an older seq gets a snapshot.
        await client.send({"op": "unsubscribe", "channels": ["national", "declarations"]})
        await client.subscribe(
            "national", "declarations", since={"national": ids[-2], "declarations": ids[-2]}
        )
        snapshot = await client.receive()
        assert snapshot == {"type": "snapshot", "channel": "national", **national}
        snapshot = await client.receive()
        assert snapshot == {"type": "snapshot", "channel": "declarations", **declarations}

        # The changes after the start follow on from the snapshots' seqs.
        seat = orjson.loads(NIGHT_2024[1])["constituency"]
        [entry] = await xadd(redis, settings.stream, {"type": "retraction", "constituency": seat})
        delta = await client.receive()
        assert (delta["channel"], delta["prev"], delta["seq"]) == (
            "national",
            national["seq"],
            entry,
        )
        event = await client.receive()
        assert (event["channel"], event["prev"], event["seq"]) == ("declarations", ids[-1], entry)


async def test_an_embargoed_exit_poll_stays_embargoed_after_a_cold_start(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    settings = make_settings(token_secret=SECRET)
    until = datetime.now(UTC) + timedelta(seconds=TIMEOUT * 4)
    poll = {"type": "exit_poll", "seats": {"LAB": 410}, "embargo_until": until.isoformat()}
    await xadd_many(redis, settings.stream, [orjson.dumps(poll).decode(), *NIGHT_2024[1:]])
    newsroom = {"Authorization": f"Bearer {token(embargo=True)}"}
    async with run_service(settings) as service:
        assert "exit_poll" not in (await service.get("/api/national")).json()["data"]
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            rest = await client.get(service.http + "/api/national", headers=newsroom)
            assert rest.json()["data"]["exit_poll"]["seats"] == {"LAB": 410}
        async with connect(service) as public:
            await public.receive()
            await public.subscribe("national")
            assert "exit_poll" not in (await public.receive())["data"]
