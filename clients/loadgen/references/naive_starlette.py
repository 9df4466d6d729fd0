"""Reference (a): the naive fan-out: Starlette under uvicorn's default websocket protocol,
one ``await websocket.send_text`` per client in a loop over all of a channel's clients.

``python -m clients.loadgen.references.naive_starlette --port P --stream K --redis-url U``
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence

import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from clients.loadgen.references.relay import Frames, Relay, error, follow, parse_args


def create_app(redis_url: str, stream: str) -> Starlette:
    relay = Relay()
    subscribers: dict[str, set[WebSocket]] = {}

    def forget(ws: WebSocket) -> None:
        for members in subscribers.values():
            members.discard(ws)

    async def deliver(frames: Frames) -> None:
        for channel, text in frames:
            for ws in tuple(subscribers.get(channel, ())):
                try:
                    await ws.send_text(text)
                except Exception:
                    forget(ws)

    async def readyz(request: Request) -> PlainTextResponse:
        return PlainTextResponse(
            "ready\n" if relay.ready else "catching up\n", 200 if relay.ready else 503
        )

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.send_text(relay.hello())
            while True:
                answer = relay.request(await ws.receive_text())
                if isinstance(answer, str):
                    await ws.send_text(answer)
                    continue
                op, channels = answer
                for channel in channels:
                    if not relay.known(channel):
                        await ws.send_text(error("unknown_channel", f"no such channel: {channel}"))
                    elif op == "subscribe":
                        subscribers.setdefault(channel, set()).add(ws)
                        await ws.send_text(relay.snapshot(channel))
                    else:
                        subscribers.get(channel, set()).discard(ws)
        except Exception:
            pass  # the client went away (or sent something this reference does not read)
        finally:
            forget(ws)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = aioredis.Redis.from_url(redis_url)
        task = asyncio.create_task(follow(client, stream, relay, deliver))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            await client.aclose()

    return Starlette(
        routes=[Route("/readyz", readyz), WebSocketRoute("/ws", endpoint)], lifespan=lifespan
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args("naive_starlette", argv)
    uvicorn.run(
        create_app(args.redis_url, args.stream),
        host=args.host,
        port=args.port,
        ws=args.ws,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
