"""/sse through Starlette: a streaming response with a task of its own per client.

``transport.sse_direct`` takes /sse below ASGI when seatcast runs under its own uvicorn
configuration (``service.server``); this serves it when the app runs anywhere else.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from service.access import Grant
from service.fanout.subscriber import Subscriber
from service.protocol.messages import CLOSE_GOING_AWAY, Outgoing
from service.protocol.requests import Subscribe
from service.transport.sse import (
    CLOSING_COMMENTS,
    HEARTBEAT,
    MEDIA_TYPE,
    NOT_READY,
    Refusal,
    Streams,
    events,
)

GONE = -1
"""``StreamSink.closing`` when the client went away: nothing more can be written."""


class StreamSink:
    """The hub's sink for one SSE response: the response's own task writes what is queued."""

    __slots__ = ("beat", "closing", "wakeup")

    def __init__(self) -> None:
        self.wakeup = asyncio.Event()
        self.closing: int | None = None
        self.beat = False

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


async def serve_sse(request: Request) -> Response:
    """``GET /sse?channels=a,b``: check the request like a websocket's, then stream."""
    streams: Streams = request.app.state.streams
    if not await streams.admission.wait_until_ready():
        return refusal(NOT_READY)
    address = request.client.host if request.client else None
    opening = streams.check(request.headers, request.query_params, address)
    if isinstance(opening, Refusal):
        return refusal(opening)
    return EventStream(streams, opening.grant, opening.subscribe, dict(opening.headers))


def refusal(refused: Refusal) -> Response:
    return Response(
        refused.body,
        status_code=refused.status,
        media_type="application/json",
        headers=dict(refused.headers),
    )


class EventStream(StreamingResponse):
    """The streaming response: join the hub, then write what it queues until either side
    ends it."""

    def __init__(
        self, streams: Streams, grant: Grant, subscribe: Subscribe, headers: dict[str, str]
    ) -> None:
        super().__init__((), headers=headers, media_type=MEDIA_TYPE)  # no Content-Length
        self.streams = streams
        self.grant = grant
        self.subscribe = subscribe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        streams = self.streams
        hub = streams.admission.hub
        sink = StreamSink()
        subscriber, expiry = streams.admission.join(sink, self.grant)
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
            if closing != GONE:
                ending = chunk + CLOSING_COMMENTS.get(closing, b": closed\n\n")
                await send({"type": "http.response.body", "body": ending, "more_body": False})
            return
        queued = subscriber.take()
        if queued:
            chunk += events(queued)
        if sink.beat:
            sink.beat = False
            if not chunk:
                chunk = HEARTBEAT
        if chunk:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            chunk = b""
        if sink.closing is None and not subscriber.queue and not subscriber.resync:
            await sink.wakeup.wait()
        sink.wakeup.clear()


async def _until_disconnected(receive: Receive, sink: StreamSink) -> None:
    message: Message = {}
    while message.get("type") != "http.disconnect":
        message = await receive()
    sink.closing = GONE
    sink.wakeup.set()
