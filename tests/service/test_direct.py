"""The /ws protocol below ASGI (transport.direct): what it must do that Starlette used to."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable

import redis.asyncio as aioredis
import websockets
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

from service import gc_policy
from service.settings import Settings
from service.transport.direct import DirectConnection
from tests.conftest import TIMEOUT
from tests.service.conftest import (
    NIGHT_2024,
    Client,
    RunningService,
    connect,
    run_service,
    xadd,
)
from tests.service.test_hostile import raw_websocket
from tests.service.test_slow_clients import stalled_client


async def test_a_websocket_handshake_elsewhere_than_ws_gets_404(service: RunningService) -> None:
    url = f"ws://127.0.0.1:{service.port}/not-here"
    try:
        async with websockets.connect(url, open_timeout=TIMEOUT):
            raise AssertionError("the handshake should have been refused")
    except websockets.InvalidStatus as exc:
        assert exc.response.status_code == 404
    async with connect(service) as client:
        assert (await client.receive())["type"] == "hello"


async def test_a_request_sent_in_fragments_is_answered(service: RunningService) -> None:
    reader, writer = await raw_websocket(service.port)
    request = b'{"op": "ping", "id": "in pieces"}'
    first, second = request[:10], request[10:]
    async with asyncio.timeout(TIMEOUT):
        await reader.readuntil(b"\r\n\r\n")  # a client waits for the 101 (RFC 6455 4.1)
        for frame in (
            Frame(Opcode.TEXT, first, fin=False),
            Frame(Opcode.CONT, second, fin=True),
        ):
            writer.write(frame.serialize(mask=True))
            await writer.drain()
        seen = b""
        while b"in pieces" not in seen:
            chunk = await reader.read(4096)
            assert chunk, "the connection closed before the pong"
            seen += chunk
    assert b'"type":"pong"' in seen
    writer.close()


async def test_a_client_that_reads_slowly_through_a_tiny_buffer_gets_every_declaration(
    service: RunningService, redis: aioredis.Redis
) -> None:
    """Writes the socket only partly takes go through the transport and resume in order."""
    # The stalled client's tiny buffers, but this one reads, slowly.
    async with stalled_client(service, ["declarations"]) as ws:
        client = Client(ws)
        assert (await client.receive())["type"] == "snapshot"
        ids = await xadd(redis, service.settings.stream, *NIGHT_2024[:200])
        seq = "0-0"
        count = 0
        async with asyncio.timeout(TIMEOUT * 2):
            while seq != ids[-1]:
                message = await client.receive()
                assert message["type"] == "event"
                assert message["prev"] == seq
                seq = message["seq"]
                count += 1
                if count % 20 == 0:
                    await asyncio.sleep(0.05)  # let the server's writes back up
        assert count == len(ids) - 1  # every declaration (the first entry is the exit poll)


async def test_a_frame_that_breaks_the_protocol_closes_only_that_connection(
    service: RunningService,
) -> None:
    reader, writer = await raw_websocket(service.port)
    async with asyncio.timeout(TIMEOUT):
        data = await reader.readuntil(b"\r\n\r\n")
        # Unmasked client frame: RFC 6455 requires the server to fail the connection (1002).
        writer.write(bytes([0x81, 2]) + b"{}")
        while chunk := await reader.read(65536):
            data += chunk
    close_at = data.find(b"\x88")
    assert close_at >= 0
    assert int.from_bytes(data[close_at + 2 : close_at + 4], "big") == 1002
    writer.close()
    async with connect(service) as client:
        await client.receive()
        await client.send({"op": "ping", "id": os.getpid()})
        assert (await client.receive())["type"] == "pong"


async def test_a_closed_connection_is_freed_by_reference_counting(
    service: RunningService,
) -> None:
    """Full collections are rare (service.gc_policy): a connection must not wait for one."""

    def alive() -> int:
        kinds = (DirectConnection, ServerProtocol)
        return sum(issubclass(type(o), kinds) for o in gc.get_objects())

    gc.collect()
    before = alive()
    gc.disable()
    try:
        for _ in range(5):
            # Dropped mid-stream (no close frame, no EOF): the parser is left suspended.
            reader, writer = await raw_websocket(service.port)
            async with asyncio.timeout(TIMEOUT):
                await reader.readuntil(b"\r\n\r\n")
                await reader.read(4096)
            writer.transport.abort()
        async with asyncio.timeout(TIMEOUT):
            while alive() > before:
                await asyncio.sleep(0.05)
    finally:
        gc.enable()


async def test_while_serving_only_timed_collections_walk_the_oldest_generation(
    make_settings: Callable[..., Settings],
) -> None:
    before = gc.get_threshold()
    async with run_service(make_settings()):
        assert gc.get_threshold()[2] >= gc_policy.NEVER
        assert gc.get_freeze_count() > 0  # what the catch-up built
    assert gc.get_threshold() == before
