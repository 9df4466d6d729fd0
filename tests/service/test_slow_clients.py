"""Guarantee 4: a slow client never delays the others, and is handled by the policy."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import json_merge_patch
import orjson
import redis.asyncio as aioredis
import websockets
from websockets.exceptions import ConnectionClosed

from service.settings import Settings
from tests.conftest import TIMEOUT
from tests.service.conftest import NIGHT_2024, RunningService, connect, run_service, xadd


def churn(count: int) -> list[str]:
    """``count`` corrections to the night's declarations: enough traffic (several MB) to
    overflow a stalled client's kernel buffers as well as the service's queue."""
    declarations = [orjson.loads(line) for line in NIGHT_2024[1:]]
    events = []
    for number in range(count):
        event = declarations[number % len(declarations)]
        runner_up = event["candidates"][1]
        # Alternate large swings, so that every party's share moves and deltas are big.
        swing = (number % 2) * runner_up["votes"] // 2 + 1 + number // len(declarations)
        bumped = {**runner_up, "votes": runner_up["votes"] - swing}
        event = {**event, "candidates": [event["candidates"][0], bumped, *event["candidates"][2:]]}
        events.append(orjson.dumps(event).decode())
    return events


async def xadd_many(redis: aioredis.Redis, stream: str, events: list[str]) -> list[str]:
    pipe = redis.pipeline(transaction=False)
    for event in events:
        pipe.xadd(stream, {"event": event})
    return [entry_id.decode() for entry_id in await pipe.execute()]


@contextlib.asynccontextmanager
async def stalled_client(
    service: RunningService, channels: list[str]
) -> AsyncIterator[websockets.ClientConnection]:
    """A client whose socket buffers are tiny and which stops reading after subscribing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", service.port))
    async with websockets.connect(
        service.ws, sock=sock, max_queue=1, compression=None, open_timeout=TIMEOUT
    ) as ws:
        await ws.recv()
        await ws.send(orjson.dumps({"op": "subscribe", "channels": channels}).decode())
        yield ws


async def test_a_stalled_client_on_state_channels_gets_fresh_snapshots_not_a_backlog(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    seats = [f"constituency:{orjson.loads(line)['constituency']}" for line in NIGHT_2024[1:]]
    async with run_service(make_settings(queue_bytes=262_144)) as service:
        async with stalled_client(service, ["national", *seats]) as slow, connect(service) as fast:
            await fast.receive()
            await fast.subscribe("national")
            state = (await fast.receive())["data"]
            events = NIGHT_2024 + churn(9000)
            ids = await xadd_many(redis, service.settings.stream, events)
            last = ids[-1]
            # The fast client gets every delta, in order, while the slow one reads nothing.
            seq = "0-0"
            async with asyncio.timeout(TIMEOUT):
                while seq != last:
                    delta = await fast.receive()
                    assert delta["prev"] == seq
                    seq = delta["seq"]
                    state = json_merge_patch.merge(state, delta["patch"])
            # Now the slow client reads. It ends with the final state of every channel, and
            # was sent fresh snapshots in place of the backlog it could not take.
            final = {"national": last}
            for entry_id, event in zip(ids[1:], events[1:], strict=True):
                final[f"constituency:{orjson.loads(event)['constituency']}"] = entry_id
            states: dict[str, Any] = {}
            seqs: dict[str, str] = {}
            snapshots = deltas = 0
            async with asyncio.timeout(TIMEOUT):
                while seqs != final:
                    message = orjson.loads(await slow.recv())
                    channel = message["channel"]
                    if message["type"] == "snapshot":
                        snapshots += 1
                        states[channel] = message["data"]
                    else:
                        assert message["prev"] == seqs[channel], "a gap without a snapshot"
                        deltas += 1
                        states[channel] = json_merge_patch.merge(states[channel], message["patch"])
                    seqs[channel] = message["seq"]
            assert snapshots > len(seats) + 1, "no backlog was replaced by a snapshot"
            assert deltas < 2 * 9650
            assert states["national"] == state
            everything = (await service.get("/api/constituencies")).json()["data"]
            assert {c: states[f"constituency:{c}"] for c in everything} == everything


async def test_a_stalled_client_on_declarations_is_closed_with_1013_and_others_get_everything(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    async with run_service(make_settings(queue_bytes=262_144)) as service:
        async with stalled_client(service, ["declarations"]) as slow, connect(service) as fast:
            await fast.receive()
            await fast.subscribe("declarations")
            await fast.receive()
            await xadd_many(redis, service.settings.stream, NIGHT_2024 + churn(3000))
            events = 0
            prev = "0-0"
            while events < 3650:
                event = await fast.receive()
                assert event["prev"] == prev
                prev = event["seq"]
                events += 1
            with contextlib.suppress(ConnectionClosed):
                async with asyncio.timeout(TIMEOUT):
                    while True:
                        await slow.recv()
            assert slow.close_code == 1013
            metrics = (await service.get("/metrics")).text
            assert "seatcast_slow_client_closes_total 1.0" in metrics


async def test_with_compression_on_messages_go_through_the_asgi_writer(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    async with run_service(make_settings(compression=True)) as service:
        async with connect(service, compression="deflate") as client:
            assert client.connection.protocol.extensions, "permessage-deflate was negotiated"
            await client.receive()
            await client.subscribe("national")
            await client.receive()
            [entry] = await xadd(redis, service.settings.stream, NIGHT_2024[1])
            delta = await client.receive()
            assert delta["seq"] == entry


async def test_a_starting_instance_shows_no_one_its_partial_state(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    settings = make_settings()
    ids = await xadd_many(redis, settings.stream, NIGHT_2024 + churn(20_000))
    async with run_service(settings, wait_ready=False) as service:
        # 20,000 entries take seconds to apply: this request comes long before that.
        early = await service.get("/api/national")
        assert early.status_code == 503
        assert early.json()["error"] == "not_ready"
        async with connect(service) as client:
            hello = await client.receive()
            assert hello["epoch"] == ids[0]
            assert hello["seq"] == ids[-1]
            await client.subscribe("national")
            assert (await client.receive())["seq"] == ids[-1]
