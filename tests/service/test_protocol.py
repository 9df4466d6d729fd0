"""The wire protocol against a real service, a real Redis and real websocket clients."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

import json_merge_patch
import orjson
import redis.asyncio as aioredis

from service.settings import Settings
from tests.conftest import TIMEOUT
from tests.replies import as_bytes, entries
from tests.service.conftest import NIGHT_2024, RunningService, connect, run_service, xadd

PETERBOROUGH = "E14001425"


def declaration(seat: str = PETERBOROUGH, **extra: Any) -> dict[str, Any]:
    event = {
        "type": "declaration",
        "constituency": seat,
        "candidates": [
            {"name": "Andrew Pakes", "party": "LAB", "votes": 13418},
            {"name": "Paul Bristow", "party": "CON", "votes": 13300},
        ],
    }
    event.update(extra)
    return event


async def test_hello_then_a_snapshot_on_subscribe(service: RunningService) -> None:
    async with connect(service) as client:
        hello = await client.receive()
        assert hello == {"type": "hello", "election": "uk-2024", "epoch": "0-0", "seq": "0-0"}
        await client.subscribe("national")
        snapshot = await client.receive()
        assert snapshot["type"] == "snapshot"
        assert snapshot["channel"] == "national"
        assert snapshot["seq"] == "0-0"
        assert snapshot["data"]["seats_to_declare"] == 650
        assert "leader" not in snapshot["data"]


async def test_an_xadd_reaches_subscribers_as_a_delta_and_an_event(
    service: RunningService, redis: aioredis.Redis
) -> None:
    async with connect(service) as client:
        await client.receive()
        await client.subscribe("national", f"constituency:{PETERBOROUGH}", "declarations")
        for _ in range(3):
            assert (await client.receive())["type"] == "snapshot"
        [entry] = await xadd(redis, service.settings.stream, declaration())
        got = {}
        for _ in range(3):
            message = await client.receive()
            got[message["channel"]] = message
        delta = got["national"]
        assert delta["type"] == "delta"
        assert delta["seq"] == entry
        assert delta["prev"] == "0-0"
        assert delta["patch"]["parties"]["LAB"]["seats"] == 1
        assert got[f"constituency:{PETERBOROUGH}"]["patch"]["majority"] == 118
        event = got["declarations"]
        assert event["type"] == "event"
        assert event["data"]["kind"] == "declaration"
        assert event["data"]["headline"] == (
            "Labour gain Peterborough from Conservative, majority 118"
        )


async def test_the_prev_chain_holds_and_snapshot_plus_deltas_equals_rest(
    service: RunningService, redis: aioredis.Redis
) -> None:
    """The whole 2024 night: a client from the start ends with exactly what REST shows."""
    async with connect(service) as client:
        await client.receive()
        await client.subscribe("national", "declarations")
        states: dict[str, Any] = {}
        last: dict[str, str] = {}
        for _ in range(2):
            snapshot = await client.receive()
            states[snapshot["channel"]] = snapshot["data"]
            last[snapshot["channel"]] = snapshot["seq"]
        ids = await xadd(redis, service.settings.stream, *NIGHT_2024)
        events = 0
        while last["national"] != ids[-1] or events < 650:
            message = await client.receive()
            channel = message["channel"]
            assert message["prev"] == last[channel], "a gap in the prev chain"
            last[channel] = message["seq"]
            if message["type"] == "delta":
                states[channel] = json_merge_patch.merge(states[channel], message["patch"])
            else:
                events += 1
        assert events == 650
        rest = (await service.get("/api/national")).json()
        assert rest["seq"] == last["national"]
        assert states["national"] == rest["data"]
        national = states["national"]
        assert national["parties"]["LAB"]["seats"] == 411
        assert national["parties"]["LAB"]["net"] == 211
        assert national["majority_party"] == "LAB"
    async with connect(service) as fresh:
        await fresh.receive()
        await fresh.subscribe("national")
        snapshot = await fresh.receive()
        assert snapshot["data"] == states["national"]
        assert snapshot["seq"] == last["national"]


async def test_since_resumes_with_the_deltas_missed(
    service: RunningService, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    async with connect(service) as client:
        hello = await client.receive()
        await client.subscribe("national")
        snapshot = await client.receive()
    first, second = await xadd(
        redis, stream, declaration(), declaration("E14001063", candidates=ALDERSHOT)
    )
    async with connect(service) as client:
        hello = await client.receive()
        await client.subscribe(
            "national", since={"national": snapshot["seq"]}, epoch=hello["epoch"]
        )
        resumed = await client.receive()
        assert resumed == {"type": "resumed", "channel": "national", "seq": "0-0"}
        deltas = [await client.receive(), await client.receive()]
        assert [d["seq"] for d in deltas] == [first, second]
        state = copy.deepcopy(snapshot["data"])
        for delta in deltas:
            state = json_merge_patch.merge(state, delta["patch"])
        assert state == (await service.get("/api/national")).json()["data"]


async def test_since_older_than_the_history_gets_a_snapshot(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    async with run_service(make_settings(history=2)) as service:
        stream = service.settings.stream
        ids = await xadd(redis, stream, *NIGHT_2024[:6])
        await _wait_for_seq(service, ids[-1])
        async with connect(service) as client:
            hello = await client.receive()
            await client.subscribe("national", since={"national": ids[1]}, epoch=hello["epoch"])
            message = await client.receive()
            assert message["type"] == "snapshot"
            assert message["seq"] == ids[-1]
            # A since naming another epoch also gets a snapshot.
            await client.subscribe("declarations", since={"declarations": ids[-2]}, epoch="1-0")
            message = await client.receive()
            assert message["type"] == "snapshot"
            assert len(message["data"]["recent"]) == 5


async def test_bad_entries_go_to_the_rejected_stream_and_change_nothing(
    service: RunningService, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    bad: list[str | bytes] = [
        "not json",
        '{"type": "landslide"}',
        orjson.dumps(declaration(constituency="E99999999")).decode(),
        orjson.dumps(declaration(candidates=[{"name": "X", "party": "LAB", "votes": -3}])).decode(),
        b"\xff\xfe\x00 binary",
    ]
    ids = []
    for value in bad:
        ids.append(as_bytes(await redis.xadd(stream, {"event": value})).decode())
    ids.append(as_bytes(await redis.xadd(stream, {"wrong": "field"})).decode())
    before = (await service.get("/api/national")).json()["data"]
    async with asyncio.timeout(TIMEOUT):
        while await redis.xlen(f"{stream}:rejected") < len(ids):
            await asyncio.sleep(0.02)
    rejected = entries(await redis.xrange(f"{stream}:rejected"))
    assert [entry_id.decode() for entry_id, _ in rejected] == ids
    for (_, fields), original in zip(rejected, ids, strict=True):
        assert fields[b"id"].decode() == original
        reason = fields[b"reason"].decode()
        assert reason.startswith(f"entry {original}: ")
        assert "\n" not in reason
    assert b"negative votes" in rejected[3][1][b"reason"]
    assert (await service.get("/api/national")).json()["data"] == before
    metrics = (await service.get("/metrics")).text
    assert "seatcast_events_rejected_total 6.0" in metrics
    # Still running: a good event after the bad ones is applied.
    [good] = await xadd(redis, stream, declaration())
    await _wait_for_seq(service, good)


async def test_bad_frames_get_errors_and_the_connection_lives(service: RunningService) -> None:
    async with connect(service) as client:
        await client.receive()
        cases = [
            ("not json at all", "bad_json"),
            ("[1, 2]", "bad_request"),
            ('{"op": "dance"}', "unknown_op"),
            ('{"op": "subscribe", "channels": "national"}', "bad_request"),
            ('{"op": "subscribe", "channels": []}', "bad_request"),
            ('{"op": "subscribe", "channels": ["nowhere"]}', "unknown_channel"),
            ('{"op": "subscribe", "channels": ["national"], "since": 5}', "bad_request"),
        ]
        for frame, code in cases:
            await client.connection.send(frame)
            message = await client.receive()
            assert message["type"] == "error", frame
            assert message["code"] == code, frame
            assert message["message"]
        await client.connection.send(b"\x00binary")
        assert (await client.receive())["code"] == "binary_not_supported"
        await client.send({"op": "ping", "id": 7})
        assert await client.receive() == {"type": "pong", "id": 7}
        # An unknown channel beside a good one: an error for it, the other is subscribed.
        await client.subscribe("national", "region:atlantis")
        error = await client.receive()
        assert error["code"] == "unknown_channel"
        assert "region:atlantis" in error["message"]
        assert (await client.receive())["channel"] == "national"


async def test_rest_serves_the_same_state_as_a_snapshot(
    service: RunningService, redis: aioredis.Redis
) -> None:
    ids = await xadd(redis, service.settings.stream, *NIGHT_2024[:40])
    await _wait_for_seq(service, ids[-1])
    channels = {
        "/api/national": "national",
        f"/api/constituencies/{PETERBOROUGH}": f"constituency:{PETERBOROUGH}",
        "/api/regions/east-of-england": "region:east-of-england",
        "/api/nations/scotland": "nation:scotland",
    }
    async with connect(service) as client:
        await client.receive()
        for path, channel in channels.items():
            await client.subscribe(channel)
            snapshot = await client.receive()
            rest = (await service.get(path)).json()
            assert rest == {"seq": snapshot["seq"], "data": snapshot["data"]}, path
    missing = await service.get("/api/constituencies/E00000000")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert (await service.get("/api/regions/atlantis")).status_code == 404
    everything = (await service.get("/api/constituencies")).json()
    assert len(everything["data"]) == 650
    assert (await service.get("/healthz")).status_code == 200


async def test_two_instances_on_one_stream_agree(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    settings = make_settings()
    async with run_service(settings) as one, run_service(settings) as two:
        ids = await xadd(redis, settings.stream, *NIGHT_2024[:100], "garbage")
        await _wait_for_seq(one, ids[-1])
        await _wait_for_seq(two, ids[-1])
        for path in ("/api/national", f"/api/constituencies/{PETERBOROUGH}", "/api/declarations"):
            assert (await one.get(path)).json() == (await two.get(path)).json()
        # Each bad entry is copied to the rejected stream once, whichever instance got it.
        # An instance copies a batch's rejections before it reads on: once both have
        # applied an entry after the bad one, both have tried.
        [after] = await xadd(redis, settings.stream, NIGHT_2024[100])
        await _wait_for_seq(one, after)
        await _wait_for_seq(two, after)
        assert await redis.xlen(f"{settings.stream}:rejected") == 1


async def test_a_stream_begun_again_gives_clients_a_new_hello_and_snapshots(
    service: RunningService, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    first = await xadd(redis, stream, *NIGHT_2024[:5])
    await _wait_for_seq(service, first[-1])
    async with connect(service) as client:
        hello = await client.receive()
        assert hello["epoch"] == first[0]
        await client.subscribe("national")
        assert (await client.receive())["data"]["declared"] == 4
        await redis.delete(stream)
        again = await xadd(redis, stream, NIGHT_2024[0], NIGHT_2024[1])
        hello = await client.receive_until(lambda m: m["type"] == "hello")
        assert hello["epoch"] == again[0]
        snapshot = await client.receive_until(lambda m: m["type"] == "snapshot")
        while snapshot["seq"] != again[-1]:
            message = await client.receive()
            if message["type"] == "delta":
                snapshot["seq"] = message["seq"]
                snapshot["data"] = json_merge_patch.merge(snapshot["data"], message["patch"])
        assert snapshot["data"]["declared"] == 1


async def _wait_for_seq(service: RunningService, seq: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        while (await service.get("/readyz")).json()["seq"] != seq:
            await asyncio.sleep(0.02)


ALDERSHOT = [
    {"name": "Alex Baker", "party": "LAB", "votes": 19764},
    {"name": "Leo Docherty", "party": "CON", "votes": 14081},
]


async def test_a_client_told_epoch_0_0_resumes_once_the_stream_has_begun(
    service: RunningService, redis: aioredis.Redis
) -> None:
    async with connect(service) as client:
        hello = await client.receive()
        assert hello["epoch"] == "0-0"
        await client.subscribe("national")
        await client.receive()
        first, _ = await xadd(redis, service.settings.stream, *NIGHT_2024[:2])
        delta = await client.receive_until(lambda m: m["seq"] == first)
    await xadd(redis, service.settings.stream, NIGHT_2024[2])
    async with connect(service) as client:
        assert (await client.receive())["epoch"] == first
        await client.subscribe("national", since={"national": delta["seq"]}, epoch="0-0")
        assert (await client.receive())["type"] == "resumed"
        assert (await client.receive())["prev"] == delta["seq"]
        assert (await client.receive())["type"] == "delta"
        # A seq older than this run's first entry cannot be of this run: a snapshot.
        await client.subscribe("declarations", since={"declarations": "1-0"}, epoch="0-0")
        assert (await client.receive())["type"] == "snapshot"
