"""The HTTP API: REST snapshots with caching headers, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from service.access import AccessDenied, Grant
from service.caching import cache_headers, conditional, entity_tag
from service.core.posts import POSTS
from service.core.seq import ZERO, Seq
from service.core.tally import NATIONAL, constituency_channel
from service.longpoll import BadWait, Held, parse_wait
from service.runtime import Runtime
from service.transport.admission import CATCHING_UP, token_from

STATIC = Path(__file__).parent / "static"
ASYNCAPI = Path(__file__).parent / "asyncapi.yaml"


def routes() -> list[BaseRoute]:
    return [
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
    ]


def _runtime(request: Request | WebSocket) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def not_found(what: str) -> Response:
    return error_response(404, "not_found", f"no such {what}")


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    response = json_response({"error": code, "message": message}, status)
    if headers:
        response.headers.update(headers)
    return response


def request_grant(request: Request) -> Grant | Response:
    """The caller's grant from ``Authorization: Bearer`` or ``?token=``, or a 401 response."""
    token = token_from(request.headers.get("authorization"), request.query_params.get("token"))
    try:
        return _runtime(request).access.grant(token)
    except AccessDenied as exc:
        return error_response(401, "unauthorized", str(exc))


def not_ready(request: Request) -> Response | None:
    """Before the stream as it stood at start-up is applied, the state is partial: say so."""
    if _runtime(request).ready:
        return None
    return error_response(503, "not_ready", CATCHING_UP)


def ready_grant(request: Request) -> Grant | Response:
    """The caller's grant once the state is whole, or the error to answer (503, 401)."""
    if (refusal := not_ready(request)) is not None:
        return refusal
    return request_grant(request)


def channel_grant(request: Request, channel: str, what: str) -> Grant | Response:
    """The caller's grant for ``channel``, or the error to answer (503, 401, 404, 403)."""
    grant = ready_grant(request)
    if isinstance(grant, Response):
        return grant
    tally = _runtime(request).tally
    if not tally.has_channel(channel):
        return not_found(what)
    if not grant.allows(channel):
        return error_response(403, "forbidden", f"your credential does not allow {channel}")
    return grant


def withheld(runtime: Runtime, channel: str, grant: Grant) -> bool:
    """The answer leaves out the embargoed exit poll (and so is tagged apart)."""
    return channel == NATIONAL and not grant.sees_embargoed and runtime.hub.embargo.active()


async def channel_response(request: Request, channel: str, what: str) -> Response:
    """The channel's state; with ``?wait=``, once the answer differs from the one the caller
    holds (at once if it does), or 304 when it does not within the long-poll timeout."""
    grant = channel_grant(request, channel, what)
    if isinstance(grant, Response):
        return grant
    runtime = _runtime(request)
    wait = request.query_params.get("wait")
    if wait is None:
        return channel_answer(request, runtime, channel, grant)
    try:
        held = parse_wait(wait)
    except BadWait as exc:
        return error_response(400, "bad_wait", str(exc))
    if not moved_now(runtime, channel, held, grant):
        if runtime.waiters.full:
            return error_response(
                503,
                "too_many_waiters",
                "this instance holds as many ?wait= requests as it may: poll again shortly",
                {"Retry-After": "2"},
            )
        if not await moved(request, runtime, channel, held, grant):
            tag = entity_tag(
                runtime.hub.epoch,
                runtime.tally.channel_seq(channel),
                withheld=withheld(runtime, channel, grant),
            )
            headers = cache_headers(request, tag, runtime.settings.cache_control)
            return not_stored(Response(status_code=304, headers=headers))
    return not_stored(channel_answer(request, runtime, channel, grant))


def channel_answer(request: Request, runtime: Runtime, channel: str, grant: Grant) -> Response:
    seq = runtime.tally.channel_seq(channel)
    return cached(
        request,
        seq,
        lambda: {"seq": str(seq), "data": runtime.hub.public_state(channel, grant.sees_embargoed)},
        withheld=withheld(runtime, channel, grant),
    )


def not_stored(response: Response) -> Response:
    """A long-poll's answer, which no cache may keep: a 304 kept would answer the next
    long-poll of the same URL at once, and every one after it, in a loop."""
    response.headers["Cache-Control"] = "no-store"
    if "x-accel-expires" in response.headers:
        del response.headers["X-Accel-Expires"]
    return response


def moved_now(runtime: Runtime, channel: str, held: Held, grant: Grant) -> bool:
    """Whether the caller's answer is out of date: another run of the stream, an embargo
    lifted since (or begun), or the channel moved past the seq."""
    if held.epoch is not None and held.epoch != str(runtime.hub.epoch):
        return True  # another run of the stream: what the caller holds is gone
    if held.withheld is not None and held.withheld != withheld(runtime, channel, grant):
        return True
    return runtime.tally.channel_seq(channel) > held.seq


async def moved(request: Request, runtime: Runtime, channel: str, held: Held, grant: Grant) -> bool:
    """Whether the answer changes within the long-poll timeout. A caller that goes away
    frees its place at once (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + runtime.settings.long_poll_timeout
    gone = asyncio.ensure_future(disconnected(request))
    try:
        while not moved_now(runtime, channel, held, grant):
            remaining = deadline - loop.time()
            if remaining <= 0 or gone.done():
                return False
            with runtime.waiters.holding(channel) as changed:
                await asyncio.wait(
                    {changed, gone}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
        return True
    finally:
        gone.cancel()


async def disconnected(request: Request) -> None:
    """Returns when the client has closed the connection (the request has no body to read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


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
    tally = _runtime(request).tally
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
    return await channel_response(request, "national", "channel")


async def declarations(request: Request) -> Response:
    return await channel_response(request, "declarations", "channel")


async def posts(request: Request) -> Response:
    """The posts log's snapshot; with ``?constituency=<id>``, every post about that seat."""
    seat_id = request.query_params.get("constituency")
    if seat_id is None:
        return await channel_response(request, POSTS, "channel")
    grant = channel_grant(request, POSTS, "channel")
    if isinstance(grant, Response):
        return grant
    tally = _runtime(request).tally
    if seat_id not in tally.election.constituencies:
        return not_found(f"constituency {seat_id!r}")
    seq = tally.channel_seq(POSTS)
    return cached(
        request, seq, lambda: {"seq": str(seq), "data": {"posts": tally.posts_about(seat_id)}}
    )


async def constituency(request: Request) -> Response:
    seat_id = request.path_params["id"]
    return await channel_response(
        request, constituency_channel(seat_id), f"constituency {seat_id!r}"
    )


async def constituencies(request: Request) -> Response:
    grant = ready_grant(request)
    if isinstance(grant, Response):
        return grant
    tally = _runtime(request).tally
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
    tally = _runtime(request).tally
    table = tally.election.regions if kind == "region" else tally.election.nations
    data = {
        slug: {"name": a.name, "constituencies": list(a.constituencies)}
        for slug, a in table.items()
    }
    return cached(request, tally.seq, lambda: {"seq": str(tally.seq), "data": data})


async def area(request: Request, kind: str) -> Response:
    slug = request.path_params["slug"]
    return await channel_response(request, f"{kind}:{slug}", f"{kind} {slug!r}")


async def healthz(request: Request) -> Response:
    return json_response({"status": "alive"})


async def readyz(request: Request) -> Response:
    runtime = _runtime(request)
    reachable = False
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            reachable = bool(await runtime.client.ping())
    body = {
        "ready": runtime.current and reachable,
        "caught_up": runtime.current,
        "redis": "reachable" if reachable else "unreachable",
        "reader": "connected" if runtime.connected else "disconnected",
        "seq": str(runtime.tally.seq),
        "epoch": str(runtime.hub.epoch),
    }
    return json_response(body, 200 if body["ready"] else 503)


async def metrics(request: Request) -> Response:
    runtime = _runtime(request)
    if not runtime.access.metrics_allowed(request.headers):
        return error_response(401, "unauthorized", "/metrics needs its bearer token")
    m = runtime.metrics
    m.connections.set(len(runtime.hub.subscribers))
    m.long_poll_waiters.set(runtime.waiters.count)
    m.sse_streams.set(len(request.app.state.streams.sinks))
    m.subscriptions.clear()
    for kind, count in runtime.hub.subscription_counts().items():
        m.subscriptions.labels(kind).set(count)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


class RequestCounter:
    """Counts each HTTP answer by route template and status (``/api/national 304``): what
    the origin serves behind a CDN. The streams (/sse, /ws) pass through untouched."""

    def __init__(self, app: ASGIApp, counter: Counter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/sse":
            await self.app(scope, receive, send)
            return
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = scope.get("root_path", "") + route.path if route is not None else "other"
            self.counter.labels(template, str(status or 500)).inc()
