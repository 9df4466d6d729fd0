"""GET /sse: the hub's messages as Server-Sent Events, for clients that cannot open a websocket
(a proxy that blocks the upgrade, a CDN) or only need to listen.

One streaming response per client, through Starlette. Each message goes out as the bytes
``Outgoing.sse`` encoded once for every SSE subscriber; its ``id:`` is the stream position
``<epoch>:<seq>``, one position for every channel, so a reconnecting ``EventSource`` resumes
all its channels from its ``Last-Event-ID`` by rule 3.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections.abc import Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from service.access import AccessDenied, Grant
from service.core.seq import ZERO, Seq
from service.fanout.subscriber import Subscriber, TokenBucket
from service.protocol.messages import CLOSE_GOING_AWAY, Outgoing, parse_position
from service.protocol.requests import Subscribe
from service.transport.admission import CATCHING_UP, Admission, token_from

IDLE_BUCKETS = 10_000
"""Open-rate buckets kept before idle ones are dropped."""
CLOSING_COMMENTS = {
    1001: b": closed: going away; reconnect\n\n",
    1008: b": closed: the credential is no longer valid\n\n",
    1012: b": closed: server restarting; reconnect\n\n",
    1013: b": closed: too far behind; reconnect with Last-Event-ID to resume\n\n",
}


class StreamSink:
    """The hub's sink for one SSE response: the response's own task writes what is queued."""

    __slots__ = ("beat", "closing", "subscriber", "wakeup")

    def __init__(self) -> None:
        self.wakeup = asyncio.Event()
        self.closing: int | None = None
        self.beat = False
        """A heartbeat comment is due (sent only if nothing else is)."""
        self.subscriber: Subscriber | None = None

    def send_now(self, message: Outgoing) -> bool:
        return False  # the response's task sends everything, in order

    def wake(self) -> None:
        self.wakeup.set()

    def close(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = code
        self.wakeup.set()

    def heartbeat(self) -> None:
        self.beat = True
        self.wakeup.set()


class Streams:
    """One app's open SSE streams: their shared heartbeat and the rate of opens per client."""

    def __init__(
        self,
        admission: Admission,
        *,
        heartbeat: float,
        retry: float,
        open_rate: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.admission = admission
        self.heartbeat = heartbeat
        self.retry = retry
        self.open_rate = open_rate
        self.clock = clock
        self.sinks: set[StreamSink] = set()
        self._buckets: dict[str, TokenBucket] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, sink: StreamSink) -> None:
        self.sinks.add(sink)
        if self._timer is None and self.heartbeat > 0:
            self._timer = asyncio.get_running_loop().call_later(self.heartbeat, self._beat)

    def discard(self, sink: StreamSink) -> None:
        self.sinks.discard(sink)

    def _beat(self) -> None:
        # One timer for all streams, not one per connection: an idle stream costs no timer.
        self._timer = None
        for sink in self.sinks:
            sink.heartbeat()
        if self.sinks:
            self._timer = asyncio.get_running_loop().call_later(self.heartbeat, self._beat)

    def retry_field(self) -> bytes:
        """``retry:`` in milliseconds, with jitter: a restart's clients come back spread out.
        A field line of the first event's block (the hello), not a block of its own."""
        milliseconds = round(self.retry * 1000 * random.uniform(0.5, 1.5))
        return b"retry: %d\n" % milliseconds

    def seconds_until_open(self, client: str) -> int:
        """0 if ``client`` may open a stream now (and counts it), else seconds to wait."""
        if self.open_rate <= 0:
            return 0
        now = self.clock()
        if len(self._buckets) > IDLE_BUCKETS:
            idle = 2 / self.open_rate
            self._buckets = {k: b for k, b in self._buckets.items() if now - b.refilled < idle}
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = TokenBucket(self.open_rate, self.clock)
        if bucket.take():
            return 0
        return max(1, math.ceil(-bucket.tokens / self.open_rate))


async def serve_sse(request: Request) -> Response:
    """``GET /sse?channels=a,b``: check the request like a websocket's, then stream."""
    streams: Streams = request.app.state.streams
    admission = streams.admission
    hub = admission.hub
    if not await admission.wait_until_ready():
        return _refusal(503, "not_ready", CATCHING_UP, {"Retry-After": "2"})
    origin = request.headers.get("origin")
    if not admission.access.origin_allowed(origin):
        return _refusal(403, "forbidden_origin", "this origin is not allowed")
    token = token_from(request.headers.get("authorization"), request.query_params.get("token"))
    try:
        grant = admission.access.grant(token)
    except AccessDenied as exc:
        return _refusal(401, "unauthorized", str(exc))
    channels = _channels(request)
    if not channels:
        return _refusal(
            400, "no_channels", "name the channels to follow: /sse?channels=national,declarations"
        )
    if len(channels) > hub.max_channels:
        return _refusal(
            400,
            "too_many_channels",
            f"a stream may hold at most {hub.max_channels} channels; {len(channels)} were asked",
        )
    known = [channel for channel in channels if hub.tally.has_channel(channel)]
    if not known:
        return _refusal(400, "unknown_channel", f"no such channel: {', '.join(channels[:5])}")
    if not any(grant.allows(channel) for channel in known):
        return _refusal(403, "forbidden", f"your credential does not allow: {', '.join(known[:5])}")
    wait = streams.seconds_until_open(_client(request, grant, token))
    if wait:
        return _refusal(
            429,
            "rate_limited",
            f"too many streams opened: at most {streams.open_rate:g} a second",
            {"Retry-After": str(wait)},
        )
    last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    resume = parse_position(last)
    epoch, since = resume if resume is not None else (None, None)
    subscribe = Subscribe(channels, dict.fromkeys(channels, since) if since else {}, epoch)
    headers = {
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    }
    if origin is not None:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Vary"] = "Origin"
    return EventStream(streams, grant, subscribe, headers)


class EventStream(StreamingResponse):
    """The streaming response: join the hub, then write what it queues until either side
    ends it."""

    media_type = "text/event-stream"

    def __init__(
        self, streams: Streams, grant: Grant, subscribe: Subscribe, headers: dict[str, str]
    ) -> None:
        super().__init__((), headers=headers, media_type=self.media_type)  # no Content-Length
        self.streams = streams
        self.grant = grant
        self.subscribe = subscribe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        streams = self.streams
        hub = streams.admission.hub
        sink = StreamSink()
        subscriber, expiry = streams.admission.join(sink, self.grant)
        sink.subscriber = subscriber
        hub.subscribe(subscriber, self.subscribe)
        streams.add(sink)
        listener = asyncio.create_task(_until_disconnected(receive, sink))
        try:
            await _pump(sink, subscriber, send, streams.retry_field())
        finally:
            if expiry is not None:
                expiry.cancel()
            streams.discard(sink)
            subscriber.closed(CLOSE_GOING_AWAY)
            hub.disconnect(subscriber)
            listener.cancel()


async def _pump(sink: StreamSink, subscriber: Subscriber, send: Send, first: bytes) -> None:
    """Write what the subscriber has queued each time it is woken, all of it in one chunk.

    The send waits while the socket is full: meanwhile the hub queues (bounded in bytes) and
    applies the slow-client policy, as for a websocket.
    """
    chunk = first
    while True:
        closing = sink.closing
        if closing is not None:
            if closing != _GONE:
                ending = chunk + CLOSING_COMMENTS.get(closing, b": closed\n\n")
                await send({"type": "http.response.body", "body": ending, "more_body": False})
            return
        queued = subscriber.take()
        if queued:
            chunk += queued[0].sse if len(queued) == 1 else events(queued)
        if sink.beat:
            sink.beat = False
            if not chunk:
                chunk = b":\n\n"
        if chunk:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            chunk = b""
        if sink.closing is None and not subscriber.queue and not subscriber.resync:
            await sink.wakeup.wait()
        sink.wakeup.clear()


def in_position_order(queued: list[Outgoing]) -> list[Outgoing]:
    """The messages so that every ``id:`` names a position the client holds whole.

    A resume answers channel by channel (``resumed``, then that channel's changes), so the
    ids would go up on one channel and back down on the next: a client dropped in between
    would resume the second channel from too late a position, with a gap. Messages without
    a position (hello, resumed, error) go first, the rest by position, each channel's in the
    order it had: every id is then a position up to which every channel has been sent.
    """
    latest: Seq | None = None
    for message in queued:
        at = message.at
        if at is None:
            if latest is not None:
                break
        elif latest is not None and at[1] < latest:
            break
        else:
            latest = at[1]
    else:
        return queued  # already so: the common case
    return sorted(queued, key=_position_key)


def events(queued: list[Outgoing]) -> bytes:
    """Several messages as events: in position order, each entry's last one with its id.

    One entry changes several channels: a client holds the entry whole only once it has
    read all of that entry's messages, so only the last of them names its position.
    """
    ordered = in_position_order(queued)
    parts = []
    for message, after in itertools.pairwise(ordered):
        same = message.at is not None and after.at is not None and after.at[1] == message.at[1]
        parts.append(message.sse_without_id if same else message.sse)
    parts.append(ordered[-1].sse)
    return b"".join(parts)


def _position_key(message: Outgoing) -> tuple[int, Seq]:
    return (0, ZERO) if message.at is None else (1, message.at[1])


_GONE = -1
"""``StreamSink.closing`` when the client went away: nothing more can be written."""


async def _until_disconnected(receive: Receive, sink: StreamSink) -> None:
    message: Message = {}
    while message.get("type") != "http.disconnect":
        message = await receive()
    sink.closing = _GONE
    sink.wakeup.set()


def _channels(request: Request) -> tuple[str, ...]:
    names = [
        name.strip()
        for value in request.query_params.getlist("channels")
        for name in value.split(",")
    ]
    return tuple(dict.fromkeys(name for name in names if name))


def _client(request: Request, grant: Grant, token: str | None) -> str:
    """Whom the open rate counts against: the credential, else the address."""
    if grant.subject:
        return f"sub:{grant.subject}"
    if token:
        return f"token:{hash(token)}"
    return f"addr:{request.client.host if request.client else '?'}"


def _refusal(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    body = orjson.dumps({"error": code, "message": message})
    return Response(body, status_code=status, media_type="application/json", headers=headers)
