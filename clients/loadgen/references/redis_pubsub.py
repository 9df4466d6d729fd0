"""Reference (c), the relay half: Redis pub/sub in C, with subscribers speaking RESP.

The fan-out itself is a ``redis-server`` of the load generator's own (see
:func:`clients.loadgen.servers.start`). This process only feeds it: it reads the stream from
the main Redis as the other references do, frames each entry per channel with the same
:class:`~clients.loadgen.references.relay.Relay` (so every message is the same JSON with
``seq``/``prev``), and PUBLISHes each frame's text to the channel's name on the dedicated
Redis. Subscribers connect to that Redis directly.

The PUBLISHes of one XREAD are pipelined, one round trip per read, as a relay in production
would: at a steady rate a read holds one entry, so nothing changes; in a burst Redis takes
a read's messages in one go and writes each subscriber's share with one ``write`` instead of
one per message. That is Redis at its best, the fair baseline for seatcast, which batches too.

It answers ``GET /readyz`` on ``--port`` (200 once it has reached the stream's end, having
first PINGed the dedicated Redis), so the load generator waits for it as for any server.

``python -m clients.loadgen.references.redis_pubsub --port P --stream K --redis-url U
--publish-url redis://127.0.0.1:R/0``
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence

import redis.asyncio as aioredis

from clients.loadgen.references.relay import (
    Frames,
    Relay,
    argument_parser,
    follow,
    parse_args,
    stop_signal,
)

logger = logging.getLogger("redis_pubsub")

REQUEST_TIMEOUT = 5.0
MAX_REQUEST = 8192


def response(status: str, body: str) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n\r\n{body}"
    ).encode()


async def relay_until_stopped(
    host: str, port: int, redis_url: str, stream: str, publish_url: str
) -> int:
    relay = Relay()
    source = aioredis.Redis.from_url(redis_url)
    target = aioredis.Redis.from_url(publish_url)

    pipe = target.pipeline(transaction=False)

    async def deliver(frames: Frames) -> None:
        for channel, text in frames:
            pipe.publish(channel, text)

    async def flush() -> None:
        await pipe.execute()  # and empties it for the next read

    async def readyz(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Just enough HTTP for servers.ready(): one request, one answer, then close.
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"GET /readyz "):
                writer.write(response("404 Not Found", "not found\n"))
            elif relay.ready:
                writer.write(response("200 OK", "ready\n"))
            else:
                writer.write(response("503 Service Unavailable", "catching up\n"))
            await writer.drain()
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    stopped = stop_signal()
    try:
        # Not ready, and no /readyz to say so, until the dedicated Redis answers.
        await target.ping()
        server = await asyncio.start_server(readyz, host, port, limit=MAX_REQUEST)
        async with server:
            task = asyncio.create_task(follow(source, stream, relay, deliver, flush))
            await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                # follow() runs forever: if it ended, publishing failed; say so and exit 1.
                logger.error("the relay stopped: %r", task.exception())
                return 1
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        return 0
    finally:
        await source.aclose()
        await target.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser("redis_pubsub")
    parser.add_argument(
        "--publish-url", required=True, help="the dedicated Redis to PUBLISH each frame on"
    )
    args = parse_args("redis_pubsub", argv, parser)
    return asyncio.run(
        relay_until_stopped(args.host, args.port, args.redis_url, args.stream, args.publish_url)
    )


if __name__ == "__main__":
    sys.exit(main())
