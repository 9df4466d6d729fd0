"""Reference (b): the websockets library's own server, fanning out with ``broadcast()``,
which writes one message to many connections without awaiting any of them.

``python -m clients.loadgen.references.ws_broadcast --port P --stream K --redis-url U``
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence

import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

from clients.loadgen.references.relay import Frames, Relay, error, follow, parse_args, stop_signal


async def serve_until_stopped(host: str, port: int, redis_url: str, stream: str) -> None:
    relay = Relay()
    subscribers: dict[str, set[ServerConnection]] = {}

    def forget(ws: ServerConnection) -> None:
        for members in subscribers.values():
            members.discard(ws)

    async def deliver(frames: Frames) -> None:
        for channel, text in frames:
            members = subscribers.get(channel)
            if members:
                broadcast(members, text)

    def health(connection: ServerConnection, request: Request) -> Response | None:
        if request.path != "/readyz":
            return None
        if relay.ready:
            return connection.respond(200, "ready\n")
        return connection.respond(503, "catching up\n")

    async def handler(ws: ServerConnection) -> None:
        # Every send goes through broadcast(), which never awaits, so a request's answers
        # and the stream's frames reach the connection in the order they were made.
        broadcast([ws], relay.hello())
        try:
            async for text in ws:
                answer = relay.request(text)
                if isinstance(answer, str):
                    broadcast([ws], answer)
                    continue
                op, channels = answer
                for channel in channels:
                    if not relay.known(channel):
                        broadcast([ws], error("unknown_channel", f"no such channel: {channel}"))
                    elif op == "subscribe":
                        # The snapshot and joining the channel, with no await in between.
                        broadcast([ws], relay.snapshot(channel))
                        subscribers.setdefault(channel, set()).add(ws)
                    else:
                        subscribers.get(channel, set()).discard(ws)
        finally:
            forget(ws)

    stopped = stop_signal()
    client = aioredis.Redis.from_url(redis_url)
    async with serve(handler, host, port, compression=None, process_request=health):
        task = asyncio.create_task(follow(client, stream, relay, deliver))
        await stopped
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await client.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args("ws_broadcast", argv)
    asyncio.run(serve_until_stopped(args.host, args.port, args.redis_url, args.stream))
    return 0


if __name__ == "__main__":
    sys.exit(main())
