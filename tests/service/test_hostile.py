"""Hostile and broken clients get the documented reply or close code; others are unaffected."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import resource
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
import websockets
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

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


async def test_a_client_that_stops_answering_pings_is_closed_by_the_ping_timeout(
    make_settings: Callable[..., Settings],
) -> None:
    interval, timeout = 0.2, 1.0
    async with run_service(make_settings(ping_interval=interval, ping_timeout=timeout)) as service:
        # A client that reads (so that nothing blocks) but never sends a byte after its
        # handshake: its pong waits in data_to_send, never written.
        silent = ClientProtocol(parse_uri(service.ws))
        silent.send_request(silent.connect())
        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        writer.write(b"".join(silent.data_to_send()))
        started = time.monotonic()
        pings = 0
        async with asyncio.timeout(TIMEOUT):
            while silent.close_rcvd is None:
                data = await reader.read(4096)
                assert data, "the connection ended without a close frame"
                silent.receive_data(data)
                events = silent.events_received()
                pings += sum(isinstance(e, Frame) and e.opcode is Opcode.PING for e in events)
        took = time.monotonic() - started
        writer.close()
        # Closed by the keepalive (not by a crash, which would also be a 1011): one ping
        # went unanswered, and the close came once the interval and the timeout had passed.
        assert (silent.close_rcvd.code, silent.close_rcvd.reason) == (
            1011,
            "keepalive ping timeout",
        )
        assert pings == 1
        assert interval + timeout <= took < TIMEOUT
        # A live client is not affected: it has answered the pings of longer than that.
        async with connect(service) as client:
            await client.receive()
            await asyncio.sleep(2 * interval + timeout)
            await client.send({"op": "ping", "id": 2})
            assert (await client.receive())["type"] == "pong"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def burst(port: int, count: int) -> None:
    """Open ``count`` connections (500 at a time), read the hello, drop them; every one
    must open."""
    semaphore = asyncio.Semaphore(500)
    opened = 0
    failures: Counter[str] = Counter()

    async def one() -> None:
        nonlocal opened
        async with semaphore:
            try:
                async with websockets.connect(
                    f"ws://127.0.0.1:{port}/ws", open_timeout=TIMEOUT, compression=None
                ) as ws:
                    async with asyncio.timeout(TIMEOUT):
                        hello = orjson.loads(await ws.recv())
                    if hello["type"] == "hello":
                        opened += 1
            except (OSError, ConnectionClosed, TimeoutError) as exc:
                failures[type(exc).__name__] += 1

    await asyncio.gather(*(one() for _ in range(count)))
    assert (opened, dict(failures)) == (count, {})


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
            async with websockets.connect(
                f"ws://127.0.0.1:{port}/ws", open_timeout=TIMEOUT
            ) as watcher:
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
