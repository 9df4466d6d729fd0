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
from service.core.seq import ZERO, Seq
from service.core.tally import NATIONAL, constituency_channel
from service.longpoll import BadWait, parse_wait
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


def channel_grant(request: Request, channel: str, what: str) -> Grant | Response:
    """The caller's grant for ``channel``, or the error to answer (503, 401, 404, 403)."""
    if (refusal := not_ready(request)) is not None:
        return refusal
    grant = request_grant(request)
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
    return channel == NATIONAL and not grant.embargoed and runtime.hub.embargo.active()


async def channel_response(request: Request, channel: str, what: str) -> Response:
    """The channel's state; with ``?wait=<seq>``, once the channel has moved past that seq
    (at once if it has), or 304 when it has not within the long-poll timeout."""
    grant = channel_grant(request, channel, what)
    if isinstance(grant, Response):
        return grant
    runtime = _runtime(request)
    wait = request.query_params.get("wait")
    if wait is not None:
        try:
            held = parse_wait(wait)
        except BadWait as exc:
            return error_response(400, "bad_wait", str(exc))
        if not moved_now(runtime, channel, held):
            if runtime.waiters.full:
                return error_response(
                    503,
                    "too_many_waiters",
                    "this instance holds as many ?wait= requests as it may: poll again shortly",
                    {"Retry-After": "2"},
                )
            if not await moved(runtime, channel, held):
                tag = entity_tag(
                    runtime.hub.epoch,
                    runtime.tally.channel_seq(channel),
                    withheld=withheld(runtime, channel, grant),
                )
                headers = cache_headers(request, tag, runtime.settings.cache_control)
                return Response(status_code=304, headers=headers)
    seq = runtime.tally.channel_seq(channel)
    return cached(
        request,
        seq,
        lambda: {"seq": str(seq), "data": runtime.hub.public_state(channel, grant.embargoed)},
        withheld=withheld(runtime, channel, grant),
    )


def moved_now(runtime: Runtime, channel: str, held: tuple[str | None, Seq]) -> bool:
    epoch, seq = held
    if epoch is not None and epoch != str(runtime.hub.epoch):
        return True  # another run of the stream: what the caller holds is gone
    return runtime.tally.channel_seq(channel) > seq


async def moved(runtime: Runtime, channel: str, held: tuple[str | None, Seq]) -> bool:
    """Whether the channel moves past ``held`` within the long-poll timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + runtime.settings.long_poll_timeout
    while not moved_now(runtime, channel, held):
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        with runtime.waiters.holding(channel) as changed:
            try:
                async with asyncio.timeout(remaining):
                    await changed
            except TimeoutError:
                return False
    return True


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


async def constituency(request: Request) -> Response:
    seat_id = request.path_params["id"]
    return await channel_response(
        request, constituency_channel(seat_id), f"constituency {seat_id!r}"
    )


async def constituencies(request: Request) -> Response:
    if (refusal := not_ready(request)) is not None:
        return refusal
    grant = request_grant(request)
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
