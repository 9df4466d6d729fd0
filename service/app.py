"""create_app(): the Starlette routes, the lifespan and the wiring — nothing more."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from service.core.election import Election, load_election
from service.core.seq import Seq
from service.core.tally import Applied, Tally, constituency_channel
from service.feed import Feed, FeedListener, Rejection
from service.hub import Hub, Subscriber, error_frame
from service.metrics import Metrics
from service.settings import Settings

log = logging.getLogger("seatcast")
STATIC = Path(__file__).parent / "static"


@dataclass
class Runtime:
    """Everything one running service holds, reachable from requests as app.state.runtime."""

    settings: Settings
    election: Election
    metrics: Metrics = field(default_factory=Metrics)
    hub: Hub = field(init=False)
    feed: Feed = field(init=False)
    client: aioredis.Redis = field(init=False)
    ready: bool = False
    connected: bool = False

    def __post_init__(self) -> None:
        settings = self.settings
        if settings.redis_url is None:
            raise ValueError("create_app needs a redis_url (the caller starts the embedded one)")
        self.client = aioredis.Redis.from_url(
            settings.redis_url, socket_timeout=10, socket_connect_timeout=5
        )
        listener = FeedListener(
            applied=self._applied,
            rejected=self._rejected,
            reset=self._reset,
            epoch_adopted=lambda epoch: self.hub.adopt_epoch(epoch),
            ready=self._ready,
            connected=self._connected,
            lag=self.metrics.stream_lag.set,
        )
        self.feed = Feed(
            self.client,
            settings.stream,
            settings.rejected,
            self.election,
            listener,
            batch=settings.read_batch,
        )
        self.hub = Hub(
            self.feed.tally,
            history=settings.history,
            max_channels=settings.max_channels,
            rate_limit=settings.rate_limit,
            on_send=self.metrics.messages_sent.inc,
            on_slow_close=self.metrics.slow_closes.inc,
        )

    def _applied(self, seq: Seq, applied: Applied) -> None:
        if applied.stale:
            self.metrics.events_stale.inc()
            return
        self.metrics.events_applied.inc()
        if applied.changes:
            self.hub.publish(applied.changes)
            if self.ready:
                self.metrics.fanout_latency.observe(max(0.0, time.time() - seq.ms / 1000))

    def _rejected(self, rejection: Rejection) -> None:
        self.metrics.events_rejected.inc()
        log.warning("rejected %s", rejection.reason)

    def _reset(self, tally: Tally, epoch: Seq) -> None:
        self.hub.reset(tally, epoch)

    def _ready(self) -> None:
        if not self.ready:
            self.ready = True
            self.metrics.ready.set(1)

    def _connected(self, connected: bool) -> None:
        self.connected = connected
        self.metrics.redis_connected.set(1 if connected else 0)


def create_app(settings: Settings, election: Election | None = None) -> Starlette:
    runtime = Runtime(settings, election or load_election(settings.election))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(runtime.feed.run(), name="seatcast-feed")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await runtime.client.aclose()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/national", national),
            Route("/api/declarations", declarations),
            Route("/api/constituencies", constituencies),
            Route("/api/constituencies/{id}", constituency),
            Route("/api/regions", functools.partial(areas, kind="region")),
            Route("/api/regions/{slug}", functools.partial(area, kind="region")),
            Route("/api/nations", functools.partial(areas, kind="nation")),
            Route("/api/nations/{slug}", functools.partial(area, kind="nation")),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            WebSocketRoute("/ws", websocket),
            Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static"),
        ],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app


def _runtime(request: Request | WebSocket) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def not_found(what: str) -> Response:
    return json_response({"error": "not_found", "message": f"no such {what}"}, 404)


def channel_response(request: Request, channel: str, what: str) -> Response:
    tally = _runtime(request).hub.tally
    if not tally.has_channel(channel):
        return not_found(what)
    return json_response({"seq": str(tally.channel_seq(channel)), "data": tally.state(channel)})


async def index(request: Request) -> Response:
    page = STATIC / "index.html"
    if not page.exists():
        return json_response({"error": "not_found", "message": "the live page is not built"}, 404)
    return FileResponse(page)


async def national(request: Request) -> Response:
    return channel_response(request, "national", "channel")


async def declarations(request: Request) -> Response:
    return channel_response(request, "declarations", "channel")


async def constituency(request: Request) -> Response:
    seat_id = request.path_params["id"]
    return channel_response(request, constituency_channel(seat_id), f"constituency {seat_id!r}")


async def constituencies(request: Request) -> Response:
    tally = _runtime(request).hub.tally
    data = {
        seat_id: tally.state(constituency_channel(seat_id))
        for seat_id in tally.election.constituencies
    }
    return json_response({"seq": str(tally.seq), "data": data})


async def areas(request: Request, kind: str) -> Response:
    tally = _runtime(request).hub.tally
    table = tally.election.regions if kind == "region" else tally.election.nations
    data = {
        slug: {"name": a.name, "constituencies": list(a.constituencies)}
        for slug, a in table.items()
    }
    return json_response({"seq": str(tally.seq), "data": data})


async def area(request: Request, kind: str) -> Response:
    slug = request.path_params["slug"]
    return channel_response(request, f"{kind}:{slug}", f"{kind} {slug!r}")


async def healthz(request: Request) -> Response:
    return json_response({"status": "alive"})


async def readyz(request: Request) -> Response:
    runtime = _runtime(request)
    reachable = False
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            reachable = bool(await runtime.client.ping())
    body = {
        "ready": runtime.ready and reachable,
        "caught_up": runtime.ready,
        "redis": "reachable" if reachable else "unreachable",
        "seq": str(runtime.hub.tally.seq),
        "epoch": str(runtime.hub.epoch),
    }
    return json_response(body, 200 if body["ready"] else 503)


async def metrics(request: Request) -> Response:
    runtime = _runtime(request)
    m = runtime.metrics
    m.connections.set(len(runtime.hub.subscribers))
    m.subscriptions.clear()
    for kind, count in runtime.hub.subscription_counts().items():
        m.subscriptions.labels(kind).set(count)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


async def websocket(ws: WebSocket) -> None:
    runtime = _runtime(ws)
    hub = runtime.hub
    await ws.accept()
    wake = asyncio.Event()
    subscriber = Subscriber(limit=runtime.settings.queue_bytes, wake=wake.set)
    hub.connect(subscriber)
    writer = asyncio.create_task(_write(ws, hub, subscriber, wake))
    try:
        while subscriber.close_code is None:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                subscriber.push(
                    error_frame("binary_not_supported", "send JSON requests as text frames")
                )
            else:
                hub.handle(subscriber, text)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        hub.disconnect(subscriber)
        if subscriber.close_code is None:
            writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer


async def _write(ws: WebSocket, hub: Hub, subscriber: Subscriber, wake: asyncio.Event) -> None:
    while True:
        await wake.wait()
        wake.clear()
        if subscriber.close_code is not None:
            await ws.close(subscriber.close_code, subscriber.close_reason)
            return
        for frame in hub.drain(subscriber):
            await ws.send_text(frame.decode())
