"""Hostile and broken clients get the documented reply or close code; others are unaffected."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import resource
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
import websockets
from websockets.exceptions import ConnectionClosed

from service.settings import Settings
from tests.conftest import TIMEOUT
from tests.service.conftest import NIGHT_2024, RunningService, connect, run_service, xadd
from tests.service.test_process import service_process, wait_ready


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


async def raw_websocket(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection that has sent a websocket opening handshake, and nothing more."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    return reader, writer


async def test_invalid_utf8_in_a_text_frame_closes_with_1007(service: RunningService) -> None:
    reader, writer = await raw_websocket(service.port)
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
        reader, writer = await raw_websocket(service.port)
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


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def burst(port: int, count: int) -> None:
    """Open ``count`` connections (500 at a time), read the hello, drop them."""
    semaphore = asyncio.Semaphore(500)

    async def one() -> None:
        async with semaphore:
            with contextlib.suppress(OSError, ConnectionClosed, TimeoutError):
                async with websockets.connect(
                    f"ws://127.0.0.1:{port}/ws", open_timeout=TIMEOUT, compression=None
                ) as ws:
                    await ws.recv()

    await asyncio.gather(*(one() for _ in range(count)))


@pytest.mark.slow
async def test_a_burst_of_connections_opened_and_dropped_leaves_nothing_behind(
    redis_url: str, stream_key: str, redis: aioredis.Redis
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    count = min(5000, hard - 500)
    env = {"REDIS_URL": redis_url, "SEATCAST_STREAM": stream_key}
    try:
        with service_process(env) as (process, port):
            await wait_ready(port)
            await burst(port, 500)  # warm up: the allocator's arenas, uvicorn's caches
            baseline = rss_bytes(process.pid)
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as watcher:
                await watcher.recv()
                await watcher.send('{"op": "subscribe", "channels": ["national"]}')
                await watcher.recv()
                await burst(port, count)
                async with asyncio.timeout(TIMEOUT), httpx.AsyncClient() as http:
                    metrics = f"http://127.0.0.1:{port}/metrics"
                    while "seatcast_connections 1.0" not in (await http.get(metrics)).text:
                        await asyncio.sleep(0.05)
                # The watcher was not disturbed: the next change reaches it.
                [entry] = await xadd(redis, stream_key, NIGHT_2024[1])
                assert orjson.loads(await watcher.recv())["seq"] == entry
            after = rss_bytes(process.pid)
            # Back to the baseline, give or take what the allocator keeps.
            assert after < baseline * 1.25 + 8_000_000, (baseline, after)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
