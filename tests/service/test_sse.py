"""GET /sse: the hub's messages as Server-Sent Events, and one Last-Event-ID resuming all."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import redis.asyncio as aioredis
import uvicorn

from service.app import create_app
from service.core.seq import Seq
from service.protocol.messages import encode
from service.settings import Settings
from tests.conftest import TIMEOUT
from tests.service.conftest import NIGHT_2024, RunningService, run_service, xadd
from tests.service.sse_support import SseClient, refused, sse
from tests.service.test_slow_clients import churn, xadd_many


async def applied(service: RunningService, seq: str) -> None:
    """Wait until the service has applied the entry ``seq``."""
    async with asyncio.timeout(TIMEOUT):
        while (await service.get("/readyz")).json()["seq"] != seq:
            await asyncio.sleep(0.02)


async def opening(client: SseClient, *channels: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The hello, then one answer per channel: the hello and each channel's seq."""
    hello = await client.receive()
    assert hello["type"] == "hello"
    held = {}
    for channel in channels:
        message = await client.receive()
        assert message["channel"] == channel
        assert message["type"] in ("snapshot", "resumed")
        held[channel] = message["seq"]
    return hello, held


async def follow(client: SseClient, held: dict[str, str], until: str) -> None:
    """Read up to the entry ``until``, checking each chain in ``held`` (channel -> the seq
    the client holds): a ``resumed`` must name that seq, each change's ``prev`` too."""
    while client.last_id.partition(":")[2] != until:
        message = await client.receive()
        channel = message["channel"]
        if message["type"] == "resumed":
            assert message["seq"] == held[channel], f"resumed {channel} elsewhere"
            continue
        assert message["type"] in ("delta", "event"), message
        assert message["prev"] == held[channel], f"a gap on {channel}"
        held[channel] = message["seq"]


def test_an_outgoing_message_is_encoded_as_one_event_once() -> None:
    message = encode({"type": "delta", "channel": "national", "seq": "5-0"}, (Seq(1, 0), Seq(5, 0)))
    assert message.sse is message.sse
    assert message.sse == (
        b'event: delta\ndata: {"type":"delta","channel":"national","seq":"5-0"}\nid: 1-0:5-0\n\n'
    )
    assert encode({"type": "hello"}).sse == b'event: hello\ndata: {"type":"hello"}\n\n'


async def test_a_stream_sends_hello_snapshots_then_each_change_with_its_position_as_id(
    service: RunningService, redis: aioredis.Redis
) -> None:
    first = await xadd(redis, service.settings.stream, *NIGHT_2024[:3])
    await applied(service, first[-1])
    async with sse(service.http, "national,declarations") as client:
        headers = client.response.headers
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["cache-control"] == "no-cache"
        assert headers["x-accel-buffering"] == "no"
        hello, held = await opening(client, "national", "declarations")
        epoch = hello["epoch"]
        assert epoch == first[0]
        # A snapshot's id is the latest entry applied: every channel is whole up to there.
        assert client.last_id == f"{epoch}:{first[-1]}"
        assert client.retry is not None and 1500 <= client.retry <= 4500
        more = await xadd(redis, service.settings.stream, *NIGHT_2024[3:6])
        await follow(client, held, more[-1])
        assert client.last_id == f"{epoch}:{more[-1]}"


async def test_one_last_event_id_resumes_every_channel_with_no_gap(
    service: RunningService, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    channels = ("national", "declarations", "region:north-east")
    await applied(service, (await xadd(redis, stream, *NIGHT_2024[:2]))[-1])
    async with sse(service.http, ",".join(channels)) as client:
        _, held = await opening(client, *channels)
        seen = await xadd(redis, stream, *NIGHT_2024[2:5])
        await follow(client, held, seen[-1])
        last = client.last_id
    at_last = dict(held)
    missed = await xadd(redis, stream, *NIGHT_2024[5:9])  # while it was away
    await applied(service, missed[-1])
    async with sse(service.http, ",".join(channels), headers={"Last-Event-ID": last}) as again:
        assert (await again.receive())["type"] == "hello"
        # Each channel resumed where the client held it (not a snapshot), then its changes.
        await follow(again, held, missed[-1])
    # ?last_event_id= does the same for a client that cannot set the header.
    async with sse(service.http, "declarations", last_event_id=last) as by_query:
        _, answer = await opening(by_query, "declarations")
        assert answer["declarations"] == at_last["declarations"]


async def test_the_header_wins_over_the_query_for_where_to_resume(
    service: RunningService, redis: aioredis.Redis
) -> None:
    ids = await xadd(redis, service.settings.stream, *NIGHT_2024[:4])
    await applied(service, ids[-1])
    epoch = ids[0]
    headers = {"Last-Event-ID": f"{epoch}:{ids[2]}"}
    async with sse(
        service.http, "declarations", headers=headers, last_event_id=f"{epoch}:{ids[0]}"
    ) as client:
        _, held = await opening(client, "declarations")
        assert held["declarations"] == ids[2]
        event = await client.receive()
        assert (event["prev"], event["seq"]) == (ids[2], ids[3])


async def raw_stream(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def read_until(reader: asyncio.StreamReader, marker: bytes, seen: bytes = b"") -> bytes:
    async with asyncio.timeout(TIMEOUT):
        while marker not in seen:
            chunk = await reader.read(65536)
            assert chunk, f"the stream ended before {marker!r}"
            seen += chunk
    return seen


async def test_idle_streams_get_comments_and_every_client_the_same_bytes(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    async with run_service(make_settings(sse_heartbeat=0.2)) as service:
        streams = [await raw_stream(service.port, "/sse?channels=declarations") for _ in range(2)]
        for reader, _ in streams:
            head = await read_until(reader, b"event: snapshot")
            assert b"retry: " in head
            assert b"event: hello\ndata: " in head
            hello = head[head.index(b"event: hello") :].split(b"\n\n")[0]
            assert b"\nid: " not in hello  # a hello is no place to resume from
            await read_until(reader, b"\n:\n\n")  # the heartbeat comment
        [entry] = await xadd(redis, service.settings.stream, NIGHT_2024[1])
        bodies = []
        for reader, writer in streams:
            seen = await read_until(reader, f"id: {entry}:{entry}\n\n".encode())
            start = seen.index(b"event: event\n")
            bodies.append(seen[start : seen.index(b"\n\n", start) + 2])
            writer.close()
        assert bodies[0] == bodies[1]
        assert orjson.loads(bodies[0].split(b"\n")[1][len(b"data: ") :])["seq"] == entry


async def test_a_stream_too_far_behind_on_declarations_ends_and_resumes_with_no_gap(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    settings = make_settings(queue_bytes=64 * 1024, history=10_000)  # it resumes, not afresh
    async with run_service(settings) as service:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", service.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"GET /sse?channels=declarations HTTP/1.1\r\nHost: x\r\n\r\n")
        await read_until(reader, b"event: snapshot")  # then it stops reading
        ids = await xadd_many(redis, service.settings.stream, churn(4000))
        async with asyncio.timeout(TIMEOUT * 2):
            while (
                "seatcast_slow_client_closes_total 1.0" not in (await service.get("/metrics")).text
            ):
                await asyncio.sleep(0.05)
        seen = await read_until(reader, b"\r\n0\r\n\r\n")  # the response's last chunk
        writer.close()
        assert b": closed: too far behind" in seen
        last = [line for line in seen.split(b"\n") if line.startswith(b"id: ")][-1][4:].decode()
        await applied(service, ids[-1])
        held = {"declarations": last.partition(":")[2]}
        async with sse(service.http, "declarations", headers={"Last-Event-ID": last}) as again:
            assert (await again.receive())["type"] == "hello"
            await follow(again, held, ids[-1])


async def test_sse_and_websocket_subscribers_count_as_connections(
    service: RunningService,
) -> None:
    async with sse(service.http, "national") as client:
        await opening(client, "national")
        async with httpx.AsyncClient() as http:
            text = (await http.get(service.http + "/metrics")).text
        assert "seatcast_connections 1.0" in text


async def test_an_http_1_0_request_gets_the_events_unchunked_until_the_connection_closes(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    """A proxy's default upstream protocol (nginx's proxy_http_version is 1.0)."""
    async with run_service(make_settings(queue_bytes=64 * 1024)) as service:
        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        writer.write(b"GET /sse?channels=declarations HTTP/1.0\r\n\r\n")
        head = await read_until(reader, b"\r\n\r\n")
        assert b"transfer-encoding" not in head.lower()
        assert b"connection: close" in head.lower()
        [entry] = await xadd(redis, service.settings.stream, NIGHT_2024[1])
        seen = await read_until(reader, f"id: {entry}:{entry}\n\n".encode(), head)
        body = seen[seen.index(b"\r\n\r\n") + 4 :]
        assert body.startswith(b"retry: ")
        blocks = body.split(b"\n\n")
        kinds = [line for block in blocks[:3] for line in block.split(b"\n") if b"event: " in line]
        assert kinds == [
            b"event: hello",
            b"event: snapshot",
            b"event: event",
        ]
        writer.close()


async def test_a_stopping_service_ends_each_stream_so_that_it_reconnects(
    make_settings: Callable[..., Settings],
) -> None:
    async with run_service(make_settings()) as service:
        reader, writer = await raw_stream(service.port, "/sse?channels=national")
        await read_until(reader, b"event: snapshot")
        await service.stop()
        seen = await read_until(reader, b"\r\n0\r\n\r\n")
        writer.close()
    assert b": closed: server restarting" in seen


async def test_under_another_server_sse_is_served_through_starlette_the_same_way(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    """Without seatcast's own uvicorn protocol (transport.sse_direct), the ASGI route serves."""
    settings = make_settings()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(TIMEOUT):
            while not server.started:
                await asyncio.sleep(0.01)
        base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        channels = ("national", "declarations")
        async with sse(base, ",".join(channels)) as client:
            _, held = await opening(client, *channels)
            seen = await xadd(redis, settings.stream, *NIGHT_2024[:3])
            await follow(client, held, seen[-1])
            last = client.last_id
        missed = await xadd(redis, settings.stream, *NIGHT_2024[3:6])
        async with sse(base, ",".join(channels), headers={"Last-Event-ID": last}) as again:
            assert (await again.receive())["type"] == "hello"
            await follow(again, held, missed[-1])
        assert (await refused(base, "?channels=nowhere")).status_code == 400
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, TIMEOUT)
