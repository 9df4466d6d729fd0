"""create_app(): the Starlette routes, the lifespan and the wiring — nothing more."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
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
from starlette.websockets import WebSocket

from service import collector, graphics
from service.access import Access, AccessDenied, Grant, bearer
from service.caching import conditional, entity_tag
from service.connection import CATCHING_UP, NOT_READY_WAIT, serve_websocket
from service.core.election import Election, load_election
from service.core.posts import POSTS
from service.core.seq import ZERO, Seq
from service.core.tally import Applied, Tally, constituency_channel
from service.feed import Feed, FeedListener, Rejection
from service.hub import CLOSE_TRY_LATER, Hub
from service.logs import redact_tokens
from service.metrics import Metrics
from service.settings import Settings

log = logging.getLogger("seatcast")
STATIC = Path(__file__).parent / "static"
STOP_GRACE = 0.5
"""Seconds the stream reader gets to stop, before and after its connections are dropped."""
FLUSH_EVERY = 32
"""Within a large batch of stream entries (catching up, a burst), hand clients what they
have every this many events, so that queues hold a slice of the burst and not all of it."""
ASYNCAPI = Path(__file__).parent / "asyncapi.yaml"


@dataclass
class Runtime:
    """Everything one running service holds, reachable from requests as app.state.runtime."""

    settings: Settings
    election: Election
    metrics: Metrics = field(default_factory=Metrics)
    hub: Hub = field(init=False)
    feed: Feed = field(init=False)
    client: aioredis.Redis = field(init=False)
    access: Access = field(init=False)
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    ready: bool = False
    waiting_connections: set[asyncio.Task[None]] = field(default_factory=set)
    """Websocket handshakes held until the instance is ready (see service.direct)."""
    connected: bool = False
    _published: list[Seq] = field(default_factory=list)
    _embargo_timer: asyncio.TimerHandle | None = None

    def __post_init__(self) -> None:
        settings = self.settings
        if settings.redis_url is None:
            raise ValueError("create_app needs a redis_url (the caller starts the embedded one)")
        self.access = Access(
            secret=settings.token_secret,
            public_key=settings.token_public_key,
            required=settings.require_token,
            allowed_origins=tuple(o.strip() for o in settings.allowed_origins.split(",") if o),
            metrics_token=settings.metrics_token,
        )
        self.client = aioredis.Redis.from_url(
            settings.redis_url, socket_timeout=10, socket_connect_timeout=5
        )
        listener = FeedListener(
            applied=self._applied,
            rejected=self._rejected,
            reset=self._reset,
            epoch_adopted=lambda epoch: self.hub.adopt_epoch(epoch),
            settled=lambda kept: self.hub.settled(kept),
            ready=self._ready,
            batch_done=self._batch_done,
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
        self.hub.on_embargo = self._schedule_lift

    def _schedule_lift(self, until: float) -> None:
        if self._embargo_timer is not None:
            self._embargo_timer.cancel()
        delay = max(0.0, until - time.time()) + 0.01
        self._embargo_timer = asyncio.get_running_loop().call_later(delay, self.hub.lift_embargo)

    def _applied(self, seq: Seq, applied: Applied) -> None:
        if applied.stale:
            self.metrics.events_stale.inc()
            return
        self.metrics.events_applied.inc()
        if applied.changes:
            self.hub.publish(applied.changes)
            self._published.append(seq)
            if len(self._published) >= FLUSH_EVERY:
                self._batch_done()

    def _batch_done(self) -> None:
        """After each batch of stream entries: one write per client with new messages."""
        self.hub.flush()
        if self.ready:
            now = time.time()
            for seq in self._published:
                self.metrics.fanout_latency.observe(max(0.0, now - seq.ms / 1000))
        self._published.clear()

    def _rejected(self, rejection: Rejection) -> None:
        self.metrics.events_rejected.inc()
        log.warning("rejected %s", rejection.reason)

    def _reset(self, tally: Tally, epoch: Seq) -> None:
        if self._embargo_timer is not None:
            self._embargo_timer.cancel()
        self.hub.reset(tally, epoch)

    def _ready(self) -> None:
        if not self.ready:
            self.ready = True
            collector.freeze_startup()
            self.caught_up.set()
            self.metrics.ready.set(1)

    def _connected(self, connected: bool) -> None:
        self.connected = connected
        self.metrics.redis_connected.set(1 if connected else 0)


async def stop_feed(task: asyncio.Task[None], client: aioredis.Redis) -> None:
    """Cancel the feed and wait for it, bounded (DESIGN: exit within 5 s of SIGTERM).

    Not ``await task``: that would pass our own cancellation on to it and then wait however
    long it takes. redis-py can swallow a cancellation that lands mid-command and go on
    reading (seen with the feed's pipeline on Python 3.11); dropping its connections makes
    that read fail, and a failing feed that is being cancelled stops.
    """
    task.cancel()
    if (await asyncio.wait({task}, timeout=STOP_GRACE))[0]:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await client.connection_pool.disconnect()
    if not (await asyncio.wait({task}, timeout=STOP_GRACE))[0]:
        log.error("the stream reader did not stop; exiting without it")


def create_app(settings: Settings, election: Election | None = None) -> Starlette:
    redact_tokens()
    runtime = Runtime(settings, election or load_election(settings.election))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        thresholds = collector.take_over()
        task = asyncio.create_task(runtime.feed.run(), name="seatcast-feed")
        collections = asyncio.create_task(collector.run_full_collections(), name="seatcast-gc")
        try:
            yield
        finally:
            collections.cancel()
            gc.set_threshold(*thresholds)
            await stop_feed(task, runtime.client)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await runtime.client.aclose()

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/election", election_info),
            Route("/api/national", national),
            Route("/api/declarations", declarations),
            Route("/api/posts", posts),
            Route("/api/constituencies", constituencies),
            Route("/api/constituencies/{id}", constituency),
            Route("/api/regions", functools.partial(areas, kind="region")),
            Route("/api/regions/{slug}", functools.partial(area, kind="region")),
            Route("/api/nations", functools.partial(areas, kind="nation")),
            Route("/api/nations/{slug}", functools.partial(area, kind="nation")),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/asyncapi.yaml", asyncapi),
            Mount("/graphics", routes=graphics.routes()),
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
    return error_response(404, "not_found", f"no such {what}")


def error_response(status: int, code: str, message: str) -> Response:
    return json_response({"error": code, "message": message}, status)


def request_grant(request: Request) -> Grant | Response:
    """The caller's grant from ``Authorization: Bearer`` or ``?token=``, or a 401 response."""
    token = bearer(request.headers.get("authorization")) or request.query_params.get("token")
    try:
        return _runtime(request).access.grant(token)
    except AccessDenied as exc:
        return error_response(401, "unauthorized", str(exc))


def not_ready(request: Request) -> Response | None:
    """Before the stream as it stood at start-up is applied, the state is partial: say so."""
    if _runtime(request).ready:
        return None
    return error_response(503, "not_ready", CATCHING_UP)


def channel_response(request: Request, channel: str, what: str) -> Response:
    if (refusal := not_ready(request)) is not None:
        return refusal
    grant = request_grant(request)
    if isinstance(grant, Response):
        return grant
    hub = _runtime(request).hub
    if not hub.tally.has_channel(channel):
        return not_found(what)
    if not grant.allows(channel):
        return error_response(403, "forbidden", f"your credential does not allow {channel}")
    seq = hub.tally.channel_seq(channel)
    withheld = channel == "national" and not grant.embargoed and hub.embargo_active()
    return cached(
        request,
        seq,
        lambda: {"seq": str(seq), "data": hub.public_state(channel, grant.embargoed)},
        withheld=withheld,
    )


def cached(
    request: Request, seq: Seq, body: Callable[[], Any], *, withheld: bool = False
) -> Response:
    """The JSON ``body()`` of what changed last at ``seq``, with the caching headers, or 304."""
    runtime = _runtime(request)
    tag = entity_tag(runtime.hub.epoch, seq, withheld=withheld)
    return conditional(request, tag, runtime.settings.cache_control, lambda: json_response(body()))


async def index(request: Request) -> Response:
    page = STATIC / "index.html"
    if not page.exists():
        return json_response({"error": "not_found", "message": "the live page is not built"}, 404)
    return FileResponse(page)


async def election_info(request: Request) -> Response:
    """What a display needs of the definition beyond the states: party names and colours."""
    tally = _runtime(request).hub.tally
    election = tally.election
    parties: dict[str, dict[str, str]] = {}
    for code, party in election.parties.items():
        parties[code] = {"name": party.name}
        if party.colour is not None:
            parties[code]["colour"] = party.colour
    data: dict[str, object] = {
        "id": election.id,
        "name": election.name,
        "majority": election.majority,
    }
    if election.attribution is not None:
        data["attribution"] = election.attribution
    return cached(
        request, tally.seq, lambda: {"seq": str(tally.seq), "data": {**data, "parties": parties}}
    )


async def asyncapi(request: Request) -> Response:
    return FileResponse(ASYNCAPI, media_type="application/yaml")


async def national(request: Request) -> Response:
    return channel_response(request, "national", "channel")


async def declarations(request: Request) -> Response:
    return channel_response(request, "declarations", "channel")


async def posts(request: Request) -> Response:
    """The posts log's snapshot; with ``?constituency=<id>``, every post about that seat."""
    seat_id = request.query_params.get("constituency")
    if seat_id is None:
        return channel_response(request, POSTS, "channel")
    if (refusal := not_ready(request)) is not None:
        return refusal
    grant = request_grant(request)
    if isinstance(grant, Response):
        return grant
    tally = _runtime(request).hub.tally
    if not grant.allows(POSTS):
        return error_response(403, "forbidden", f"your credential does not allow {POSTS}")
    if seat_id not in tally.election.constituencies:
        return not_found(f"constituency {seat_id!r}")
    seq = tally.channel_seq(POSTS)
    return cached(
        request, seq, lambda: {"seq": str(seq), "data": {"posts": tally.posts_about(seat_id)}}
    )


async def constituency(request: Request) -> Response:
    seat_id = request.path_params["id"]
    return channel_response(request, constituency_channel(seat_id), f"constituency {seat_id!r}")


async def constituencies(request: Request) -> Response:
    if (refusal := not_ready(request)) is not None:
        return refusal
    grant = request_grant(request)
    if isinstance(grant, Response):
        return grant
    tally = _runtime(request).hub.tally
    allowed = [
        constituency_channel(seat_id)
        for seat_id in tally.election.constituencies
        if grant.allows(constituency_channel(seat_id))
    ]
    # The seats' last change, as a snapshot's seq is its channel's: what the tag names.
    last = max((tally.channel_seq(channel) for channel in allowed), default=ZERO)
    return cached(
        request,
        last,
        lambda: {"seq": str(last), "data": {c.partition(":")[2]: tally.state(c) for c in allowed}},
    )


async def areas(request: Request, kind: str) -> Response:
    tally = _runtime(request).hub.tally
    table = tally.election.regions if kind == "region" else tally.election.nations
    data = {
        slug: {"name": a.name, "constituencies": list(a.constituencies)}
        for slug, a in table.items()
    }
    return cached(request, tally.seq, lambda: {"seq": str(tally.seq), "data": data})


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
    if not runtime.access.metrics_allowed(request.headers):
        return error_response(401, "unauthorized", "/metrics needs its bearer token")
    m = runtime.metrics
    m.connections.set(len(runtime.hub.subscribers))
    m.subscriptions.clear()
    for kind, count in runtime.hub.subscription_counts().items():
        m.subscriptions.labels(kind).set(count)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


async def websocket(ws: WebSocket) -> None:
    runtime = _runtime(ws)
    if not runtime.ready:
        # A restarted instance must not show clients the partial state of its catch-up:
        # hold the connection until it is ready, or tell the client to come back.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(NOT_READY_WAIT):
                await runtime.caught_up.wait()
        if not runtime.ready:
            await ws.accept()
            await ws.close(CLOSE_TRY_LATER, CATCHING_UP)
            return
    await serve_websocket(ws, runtime.hub, runtime.settings.queue_bytes, runtime.access)
