"""GET /sse: the hub's messages as Server-Sent Events, for clients that cannot open a websocket
(a proxy that blocks the upgrade, a CDN) or only need to listen. What both ways of serving
it share: the request's checks, the heartbeat, the open rate, and the events' order and ids.

Each message goes out as ``Outgoing.sse``, encoded once for every SSE subscriber; its ``id:``
is the stream position ``<epoch>:<seq>``, one position for every channel, so a reconnecting
``EventSource`` resumes all its channels from its ``Last-Event-ID`` by rule 3.

Served below ASGI by ``transport.sse_direct`` (as /ws is by ``transport.direct``, and for the
same reasons: PERFORMANCE.md has the numbers); through Starlette by ``transport.sse_asgi``
when the app runs under another server.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import orjson
from starlette.datastructures import Headers, QueryParams

from service.access import AccessDenied, Grant
from service.core.seq import ZERO, Seq
from service.fanout.subscriber import TokenBucket
from service.protocol.messages import Outgoing, listed, parse_position
from service.protocol.requests import Subscribe
from service.transport.admission import CATCHING_UP, Admission, token_from

PATH = "/sse"
MEDIA_TYPE = "text/event-stream; charset=utf-8"
IDLE_BUCKETS = 10_000
"""Open-rate buckets kept before idle ones are dropped."""
HEARTBEAT = b":\n\n"
CLOSING_COMMENTS = {
    1001: b": closed: going away; reconnect\n\n",
    1008: b": closed: the credential is no longer valid\n\n",
    1012: b": closed: server restarting; reconnect\n\n",
    1013: b": closed: too far behind; reconnect with Last-Event-ID to resume\n\n",
}


class Beating(Protocol):
    def heartbeat(self) -> None:
        """A heartbeat comment is due: send one if nothing else is being sent."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """An /sse request answered with an error instead of a stream."""

    status: int
    code: str
    message: str
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def body(self) -> bytes:
        return orjson.dumps({"error": self.code, "message": self.message})


@dataclass(frozen=True, slots=True)
class Opening:
    """An /sse request let in: its grant, what it subscribes to, its response headers."""

    grant: Grant
    subscribe: Subscribe
    headers: tuple[tuple[str, str], ...]


NOT_READY = Refusal(503, "not_ready", CATCHING_UP, (("Retry-After", "2"),))


class Streams:
    """One app's open SSE streams: their shared heartbeat, and the rate of opens per client."""

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
        self.sinks: set[Beating] = set()
        self._buckets: dict[str, TokenBucket] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, sink: Beating) -> None:
        self.sinks.add(sink)
        if self._timer is None and self.heartbeat > 0:
            self._timer = asyncio.get_running_loop().call_later(self.heartbeat, self._beat)

    def discard(self, sink: Beating) -> None:
        self.sinks.discard(sink)

    def _beat(self) -> None:
        # One timer for all streams, not one per connection: an idle stream costs no timer.
        self._timer = None
        for sink in list(self.sinks):
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

    def check(self, headers: Headers, query: QueryParams, address: str | None) -> Refusal | Opening:
        """Check an /sse request as a websocket's is checked (the instance must be ready):
        origin, credential, channels, then the open rate."""
        admission = self.admission
        hub = admission.hub
        origin = headers.get("origin")
        if not admission.access.origin_allowed(origin):
            return Refusal(403, "forbidden_origin", "this origin is not allowed")
        token = token_from(headers.get("authorization"), query.get("token"))
        try:
            grant = admission.access.grant(token)
        except AccessDenied as exc:
            return Refusal(401, "unauthorized", str(exc))
        channels = tuple(
            dict.fromkeys(
                name.strip()
                for value in query.getlist("channels")
                for name in value.split(",")
                if name.strip()
            )
        )
        if not channels:
            example = "/sse?channels=national,declarations"
            return Refusal(400, "no_channels", f"name the channels to follow: {example}")
        if len(channels) > hub.max_channels:
            return Refusal(
                400,
                "too_many_channels",
                f"a stream may hold at most {hub.max_channels} channels, not {len(channels)}",
            )
        known = [channel for channel in channels if hub.tally.has_channel(channel)]
        if not known:
            return Refusal(400, "unknown_channel", f"no such channel: {listed(channels)}")
        if not any(grant.allows(channel) for channel in known):
            denied = listed(known)
            return Refusal(403, "forbidden", f"your credential does not allow: {denied}")
        wait = self.seconds_until_open(_client(grant, token, address))
        if wait:
            return Refusal(
                429,
                "rate_limited",
                f"too many streams opened: at most {self.open_rate:g} a second",
                (("Retry-After", str(wait)),),
            )
        # The header is the browser's own, newer than the query of the URL it reopens.
        resume = parse_position(headers.get("last-event-id") or query.get("last_event_id"))
        epoch, since = resume if resume is not None else (None, None)
        subscribe = Subscribe(channels, dict.fromkeys(channels, since) if since else {}, epoch)
        response = [("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no")]
        if origin is not None:
            response += [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        return Opening(grant, subscribe, tuple(response))


def _client(grant: Grant, token: str | None, address: str | None) -> str:
    """Whom the open rate counts against: the credential, else the address."""
    if grant.subject:
        return f"sub:{grant.subject}"
    if token:
        return f"token:{hash(token)}"
    return f"addr:{address or '?'}"


def events(queued: list[Outgoing]) -> bytes:
    """Messages as events: in position order, each entry's last one with its id.

    One entry changes several channels: a client holds the entry whole only once it has
    read all of that entry's messages, so only the last of them names its position.
    """
    if len(queued) == 1:
        return queued[0].sse
    ordered = in_position_order(queued)
    parts = []
    for message, after in itertools.pairwise(ordered):
        same = message.at is not None and after.at is not None and after.at[1] == message.at[1]
        parts.append(message.sse_without_id if same else message.sse)
    parts.append(ordered[-1].sse)
    return b"".join(parts)


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


def _position_key(message: Outgoing) -> tuple[int, Seq]:
    return (0, ZERO) if message.at is None else (1, message.at[1])
