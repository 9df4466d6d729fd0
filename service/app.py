"""create_app(): the routes of every part, and the lifespan that starts and stops them."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from service import gc_policy, graphics, http
from service.core.election import Election, load_election
from service.logs import redact_tokens
from service.publish import publish_route
from service.runtime import Runtime, stop_feed
from service.settings import Settings
from service.transport.asgi import serve_websocket
from service.transport.sse import Streams
from service.transport.sse_asgi import serve_sse
from service.webhooks import stop_webhooks

STATIC = Path(__file__).parent / "static"


def create_app(settings: Settings, election: Election | None = None) -> Starlette:
    """The service as an ASGI app. /ws is served here only for compressed connections;
    uncompressed ones are taken below ASGI (service.server, service.transport.direct)."""
    redact_tokens()
    runtime = Runtime(settings, election or load_election(settings.election))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        thresholds = gc_policy.take_over()
        task = asyncio.create_task(runtime.feed.run(), name="seatcast-feed")
        collections = asyncio.create_task(gc_policy.run_full_collections(), name="seatcast-gc")
        pushing = asyncio.create_task(
            runtime.webhooks.run(runtime.admission.caught_up), name="webhooks"
        )
        try:
            yield
        finally:
            collections.cancel()
            await stop_webhooks(pushing)
            gc.set_threshold(*thresholds)
            await stop_feed(task, runtime.reader)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await runtime.redis.aclose()

    async def websocket(ws: WebSocket) -> None:
        await serve_websocket(ws, runtime.admission)

    app = Starlette(
        routes=[
            *http.routes(),
            publish_route(runtime),
            Mount("/graphics", routes=graphics.routes()),
            WebSocketRoute("/ws", websocket),
            Route("/sse", serve_sse),
            Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static"),
        ],
        middleware=[Middleware(http.RequestCounter, counter=runtime.metrics.http_requests)],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.admission = runtime.admission
    app.state.streams = Streams(
        runtime.admission,
        heartbeat=settings.sse_heartbeat,
        retry=settings.sse_retry,
        open_rate=settings.sse_open_rate,
    )
    return app
