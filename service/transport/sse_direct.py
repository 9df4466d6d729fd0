"""/sse below ASGI: a small protocol object per stream, no task, the hub's pre-encoded events
written straight to the socket as the chunks of one chunked HTTP/1.1 response.

Why (PERFORMANCE.md has the numbers): through Starlette each stream holds a task, an event
and a listener task, and every message to every client is a task switch and a trip through
Starlette's and uvicorn's send; that cost twice the websocket path's CPU per delivery and
three times its memory per connection. An event is the same bytes for every client, so as
for /ws (``transport.direct``, whose writing rules this follows: the transport's buffer limit
is zero, so "it holds nothing" is exactly "writable"), each client costs one ``os.write``.

uvicorn still accepts the connection and parses the request; ``SseHttpProtocol`` is its h11
protocol with one change: a ``GET /sse`` is handed over to a ``DirectStream`` the way a
websocket upgrade is handed to the websocket protocol. Everything else is Starlette's.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar, cast

import h11
from starlette.datastructures import Headers, QueryParams
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.fanout.subscriber import Subscriber
from service.protocol.messages import CLOSE_GOING_AWAY, CLOSE_RESTART, Outgoing
from service.transport.direct import CLOSE_TIMEOUT
from service.transport.sse import (
    CLOSING_COMMENTS,
    HEARTBEAT,
    MEDIA_TYPE,
    NOT_READY,
    PATH,
    Refusal,
    Streams,
    events,
)
from service.transport.writes import DirectSink

if TYPE_CHECKING:
    from starlette.applications import Starlette

LAST_CHUNK = b"0\r\n\r\n"


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked HTTP/1.1 body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class DirectStream(DirectSink):
    """One /sse response: the hub's sink for one subscriber."""

    __slots__ = (
        "_chunked",
        "_close_timer",
        "_expiry",
        "_head",
        "_retry",
        "streams",
        "subscriber",
    )

    def __init__(self, streams: Streams, connections: set[Any]) -> None:
        super().__init__(connections)
        self.streams = streams
        self.subscriber: Subscriber | None = None
        self._head = b""
        """The response's head, written with the first events."""
        self._retry = b""
        self._chunked = True
        """HTTP/1.1: the body in chunks; HTTP/1.0 (a proxy's default upstream) has no chunks,
        so its body runs until the connection closes."""
        self._expiry: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._writable = self._attach(transport).get_write_buffer_size() == 0

    def data_received(self, data: bytes) -> None:
        pass  # a GET has said all it will: anything more is not for us

    def connection_lost(self, exc: Exception | None) -> None:
        self._detach()
        for timer in (self._expiry, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._expiry = self._close_timer = None
        self.streams.discard(self)
        subscriber, self.subscriber = self.subscriber, None
        if subscriber is not None:
            subscriber.closed(CLOSE_GOING_AWAY)
            self.streams.admission.hub.disconnect(subscriber)

    def shutdown(self) -> None:
        """uvicorn is stopping: end the stream (the client reconnects, elsewhere)."""
        if self.subscriber is not None:
            self.subscriber.closed(CLOSE_RESTART)
            self.close(CLOSE_RESTART, "server restarting")
        elif self.transport is not None:
            self.transport.close()

    # --- opening ---------------------------------------------------------------------------

    def open(self, scope: dict[str, Any]) -> None:
        """Answer the request uvicorn parsed: a refusal, or the stream."""
        admission = self.streams.admission
        if admission.ready:
            self._open(scope)
        else:  # held until the instance has caught up, as a websocket handshake is
            admission.hold(asyncio.ensure_future(self._open_when_ready(scope)))

    async def _open_when_ready(self, scope: dict[str, Any]) -> None:
        await self.streams.admission.wait_until_ready()
        self._open(scope)

    def _open(self, scope: dict[str, Any]) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        streams = self.streams
        if not streams.admission.ready:
            self._refuse(NOT_READY)
            return
        client = scope.get("client")
        opening = streams.check(
            Headers(scope=scope), QueryParams(scope["query_string"]), client[0] if client else None
        )
        if isinstance(opening, Refusal):
            self._refuse(opening)
            return
        head = [b"HTTP/1.1 200 OK", b"Content-Type: " + MEDIA_TYPE.encode()]
        head += [f"{name}: {value}".encode("latin-1") for name, value in opening.headers]
        self._chunked = scope.get("http_version") != "1.0"
        head.append(b"Transfer-Encoding: chunked" if self._chunked else b"Connection: close")
        head.append(b"\r\n")
        self._head = b"\r\n".join(head)
        self._retry = streams.retry_field()
        subscriber, self._expiry = streams.admission.join(self, opening.grant)
        self.subscriber = subscriber
        streams.admission.hub.subscribe(subscriber, opening.subscribe)
        streams.add(self)
        self.wake()

    def _refuse(self, refusal: Refusal) -> None:
        assert self.transport is not None
        body = refusal.body
        head = [
            f"HTTP/1.1 {refusal.status} {HTTPStatus(refusal.status).phrase}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in refusal.headers),
        ]
        self.transport.write("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body)
        self.transport.close()

    # --- the hub's sink -------------------------------------------------------------------

    def wake(self) -> None:
        """Write everything queued for the client in one write, if the socket can take it."""
        subscriber = self.subscriber
        if not self._writable or subscriber is None:
            return
        queued = subscriber.take()
        if not queued:
            return
        data = events(queued)
        if self._head:
            data = self._retry + data  # a field of the hello's block
            self._write(self._head + self._frame(data))
            self._head = b""
        else:
            self._write(self._frame(data))

    def send_now(self, message: Outgoing) -> bool:
        """One message for a client with nothing else pending: written at once."""
        if not self._writable or self._head:
            return False
        self._write(message.sse_chunk if self._chunked else message.sse)
        return True

    def heartbeat(self) -> None:
        subscriber = self.subscriber
        if self._writable and not self._head and subscriber is not None and not subscriber.queue:
            self._write(self._frame(HEARTBEAT))

    def close(self, code: int, reason: str) -> None:
        """End the response (the last chunk), then the connection; a client that does not
        read what is left is dropped after CLOSE_TIMEOUT. It leaves the hub when it is gone."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._writable = False
        ending = self._frame(CLOSING_COMMENTS.get(code, b": closed\n\n"))
        if self._chunked:
            ending += LAST_CHUNK
        transport.write(ending if not self._head else self._head + ending)
        transport.close()
        self._close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, transport.abort)

    def _frame(self, data: bytes) -> bytes:
        return chunk(data) if self._chunked else data


class SseHttpProtocol(H11Protocol):
    """uvicorn's h11 protocol, handing ``GET /sse`` to a ``DirectStream``."""

    seatcast: ClassVar[Starlette]
    """Set on the subclass ``http_protocol_for`` makes (uvicorn's ``app`` is the wrapped one)."""

    def _should_upgrade(self) -> bool:
        if self._is_sse():
            return True
        return super()._should_upgrade()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        if not self._is_sse():
            super().handle_websocket_upgrade(event)
            return
        self.connections.discard(self)
        scope = dict(self.scope)
        if self.config.proxy_headers:
            _forwarded(scope, self.config.forwarded_allow_ips)
        stream = DirectStream(self.seatcast.state.streams, self.connections)
        self.transport.set_protocol(stream)
        stream.connection_made(self.transport)
        stream.open(scope)

    def _is_sse(self) -> bool:
        return self.scope["path"] == PATH and self.scope["method"] == "GET"


def _forwarded(scope: dict[str, Any], trusted: list[str] | str) -> None:
    """The client's address from ``X-Forwarded-For`` when a proxy uvicorn trusts sent the
    request: uvicorn's own middleware does it for requests that reach the app, and is run
    here on this one (it completes without suspending: its inner app does nothing)."""

    async def nothing(scope: Any, receive: Any, send: Any) -> None:
        return None

    middleware = ProxyHeadersMiddleware(nothing, trusted)
    step = middleware(cast(Any, scope), cast(Any, None), cast(Any, None))
    try:
        step.send(None)
    except StopIteration:
        return
    step.close()
    raise RuntimeError("uvicorn's ProxyHeadersMiddleware no longer completes at once")


def http_protocol_for(app: Starlette) -> type[SseHttpProtocol]:
    """The uvicorn HTTP protocol class serving /sse below ASGI for this app."""

    class AppHttpProtocol(SseHttpProtocol):
        pass

    AppHttpProtocol.seatcast = app
    return AppHttpProtocol
