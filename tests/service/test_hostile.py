"""Hostile and broken clients get the documented reply or close code; others are unaffected."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import resource
from collections.abc import Callable

import orjson
import pytest
import redis.asyncio as aioredis
import websockets
from websockets.exceptions import ConnectionClosed

from service.settings import Settings
from tests.conftest import TIMEOUT
from tests.service.conftest import NIGHT_2024, RunningService, connect, run_service, xadd


async def close_code_of(ws: websockets.ClientConnection) -> int | None:
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(TIMEOUT):
            while True:
                await ws.recv()
    return ws.close_code


async def test_an_oversized_frame_closes_with_1009(service: RunningService) -> None:
    async with connect(service, max_size=None) as client:
        await client.receive()
        await client.connection.send("x" * (service.settings.max_frame_bytes + 1))
        assert await close_code_of(client.connection) == 1009


async def test_a_hundred_thousand_channels_in_one_subscribe_is_refused(
    make_settings: Callable[..., Settings],
) -> None:
    channels = [f"constituency:E{n:08d}" for n in range(100_000)]
    frame = orjson.dumps({"op": "subscribe", "channels": channels}).decode()
    # With the default frame limit the request is too big to read at all: 1009.
    async with run_service(make_settings()) as service, connect(service) as client:
        await client.receive()
        await client.connection.send(frame)
        assert await close_code_of(client.connection) == 1009
    # With a limit that admits it, it gets an error and the connection lives on.
    async with run_service(make_settings(max_frame_bytes=4 << 20)) as service:
        async with connect(service) as client:
            await client.receive()
            await client.connection.send(frame)
            error = await client.receive()
            assert error["code"] == "too_many_channels"
            await client.send({"op": "ping", "id": 1})
            assert (await client.receive())["type"] == "pong"


async def test_a_request_flood_is_rate_limited_then_closed_with_1008(
    service: RunningService,
) -> None:
    async with connect(service) as client:
        await client.receive()
        for _ in range(500):
            with contextlib.suppress(ConnectionClosed):
                await client.send({"op": "subscribe", "channels": ["national"]})
        codes = set()
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(TIMEOUT):
                while True:
                    message = orjson.loads(await client.connection.recv())
                    if message["type"] == "error":
                        codes.add(message["code"])
        assert "rate_limited" in codes
        assert client.connection.close_code == 1008
    async with connect(service) as other:  # the service is fine
        await other.receive()
        await other.subscribe("national")
        assert (await other.receive())["type"] == "snapshot"


async def test_invalid_utf8_in_a_text_frame_closes_with_1007(service: RunningService) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    async with asyncio.timeout(TIMEOUT):
        assert b"101" in await reader.readuntil(b"\r\n\r\n")
        mask = os.urandom(4)
        payload = b"\xff\xfe bad utf-8"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        data = b""
        while chunk := await reader.read(4096):
            data += chunk
        # Somewhere after the hello: a close frame (0x88) with code 1007.
        close_at = data.find(b"\x88")
        assert close_at >= 0
        code = int.from_bytes(data[close_at + 2 : close_at + 4], "big")
        assert code == 1007
    writer.close()


async def test_a_client_that_stops_answering_pings_is_closed(
    make_settings: Callable[..., Settings],
) -> None:
    async with run_service(make_settings(ping_interval=0.3, ping_timeout=0.3)) as service:
        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        async with asyncio.timeout(TIMEOUT):
            await reader.readuntil(b"\r\n\r\n")
            # Read (so that nothing blocks) but never answer: the server gives up on us.
            while await reader.read(4096):
                pass
        writer.close()
        # A live client is not affected.
        async with connect(service) as client:
            await client.receive()
            await asyncio.sleep(1.0)
            await client.send({"op": "ping", "id": 2})
            assert (await client.receive())["type"] == "pong"


@pytest.mark.slow
async def test_a_burst_of_connections_opened_and_dropped_leaves_nothing_behind(
    service: RunningService, redis: aioredis.Redis
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    count = min(5000, (hard - 200) // 2)
    async with connect(service) as watcher:
        await watcher.receive()
        await watcher.subscribe("national")
        await watcher.receive()

        async def one() -> None:
            with contextlib.suppress(OSError, ConnectionClosed, TimeoutError):
                async with websockets.connect(service.ws, open_timeout=TIMEOUT) as ws:
                    await ws.recv()

        semaphore = asyncio.Semaphore(500)

        async def bounded() -> None:
            async with semaphore:
                await one()

        await asyncio.gather(*(bounded() for _ in range(count)))
        async with asyncio.timeout(TIMEOUT):
            while "seatcast_connections 1.0" not in (await service.get("/metrics")).text:
                await asyncio.sleep(0.05)
        [entry] = await xadd(redis, service.settings.stream, NIGHT_2024[1])
        assert (await watcher.receive())["seq"] == entry
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
