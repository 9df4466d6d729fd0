"""/ws below ASGI: a small protocol object per connection, no task, the hub's frames written
straight to the socket.

Why (PERFORMANCE.md has the numbers): through ASGI every message to every client is a trip
through uvicorn's protocol, an ASGI task and Starlette's WebSocket, and every connection
holds a task, a queue and an event; at 10,000 clients that was most of the fan-out's CPU and
RSS. An uncompressed server frame is the same bytes for every client, so the hub encodes it
once and this protocol writes it with one ``os.write`` per client: all the client's pending
messages in that one write. What the socket does not take goes to the asyncio transport,
whose buffer limit is zero, so "the transport holds nothing" is exactly "writable" and our
direct writes can never overtake bytes it still holds. Handshake and client frames are
parsed by the websockets library's sans-I/O ``ServerProtocol``.

uvicorn still accepts the TCP connection and parses the HTTP request; it hands the upgrade
to this class (``uvicorn.Config(ws=...)``). Starlette serves everything else.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs

from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State as Phase
from websockets.server import ServerProtocol

from service.access import AccessDenied
from service.fanout.subscriber import Subscriber
from service.protocol import messages
from service.protocol.messages import (
    CLOSE_BAD_DATA,
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    CLOSE_RESTART,
    CLOSE_TRY_LATER,
    Outgoing,
)
from service.transport.admission import CATCHING_UP, Admission, token_from
from service.transport.writes import DirectSink

if TYPE_CHECKING:
    from starlette.applications import Starlette

log = logging.getLogger("seatcast.ws")
PATH = "/ws"
CLOSE_TIMEOUT = 10.0
"""Seconds to wait for the client's answer to our close frame before dropping the socket."""


class DirectConnection(DirectSink):
    """One /ws connection: the hub's sink for one subscriber."""

    app: ClassVar[Starlette]
    """Set on the subclass ``protocol_for`` makes; ``app.state.admission`` lets clients in."""

    __slots__ = (
        "_close_timer",
        "_expiry",
        "_fragments",
        "_keepalive",
        "_message_opcode",
        "_ping_interval",
        "_ping_payload",
        "_ping_timeout",
        "admission",
        "conn",
        "subscriber",
    )

    def __init__(self, config: Any, server_state: Any, app_state: Any, **_: Any) -> None:
        super().__init__(server_state.connections)
        self.conn = ServerProtocol(max_size=config.ws_max_size, logger=log)
        self.admission: Admission = self.app.state.admission
        self.subscriber: Subscriber | None = None
        self._fragments: list[bytes] = []
        self._message_opcode = Opcode.TEXT
        self._ping_interval: float | None = config.ws_ping_interval
        self._ping_timeout: float | None = config.ws_ping_timeout
        self._ping_payload: bytes | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Paused whenever the transport holds anything: see the module docstring.
        self._attach(transport)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        for event in conn.events_received():
            if isinstance(event, Request):
                self._handshake(event)
            elif isinstance(event, Frame):
                self._frame(event)
        self._send_pending()

    def connection_lost(self, exc: Exception | None) -> None:
        self._detach()
        for timer in (self._keepalive, self._expiry, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._keepalive = self._expiry = self._close_timer = None
        subscriber, self.subscriber = self.subscriber, None
        if subscriber is not None:
            subscriber.closed(CLOSE_GOING_AWAY)
            self.admission.hub.disconnect(subscriber)
        # The library's parser is a generator holding its protocol: a cycle, which would
        # wait for a full collection (see service.gc_policy). Ending it frees both now.
        self.conn.parser.close()

    def shutdown(self) -> None:
        """uvicorn is stopping: tell the client to reconnect (elsewhere) with 1012."""
        if self.conn.state is Phase.OPEN:
            self.close(CLOSE_RESTART, "server restarting")
        if self.transport is not None:
            self.transport.close()

    # --- the hub's sink -------------------------------------------------------------------

    def wake(self) -> None:
        """Write everything queued for the client in one write, if the socket can take it."""
        subscriber = self.subscriber
        if not self._writable or subscriber is None:
            return
        queued = subscriber.take()
        if queued:
            self._write(b"".join([message.wire for message in queued]))

    def send_now(self, message: Outgoing) -> bool:
        """One message for a client with nothing else pending: written at once."""
        if not self._writable:
            return False
        self._write(message.wire)
        return True

    def close(self, code: int, reason: str) -> None:
        """Send a close frame; the client answers it and the socket closes, or we drop it.
        (The subscriber leaves the hub when the connection is lost.)"""
        if self.conn.state is not Phase.OPEN or self.transport is None:
            return
        self.conn.send_close(code, reason)
        self._send_pending()
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if not self.transport.is_closing():
            loop = asyncio.get_running_loop()
            self._close_timer = loop.call_later(CLOSE_TIMEOUT, self.transport.abort)

    # --- opening ---------------------------------------------------------------------------

    def _handshake(self, request: Request) -> None:
        path, _, query = request.path.partition("?")
        if path != PATH:
            self._refuse(self.conn.reject(404, f"no websocket at {path}; use {PATH}\n"))
            return
        response = self.conn.accept(request)
        if response.status_code != 101:
            self._refuse(response)
            return
        if self.admission.ready:
            self._open(request, response, query)
            return
        # The handshake waits until the instance is ready (this task is the only one a
        # connection ever has, and only then).
        self.admission.hold(asyncio.ensure_future(self._open_when_ready(request, response, query)))

    async def _open_when_ready(self, request: Request, response: Response, query: str) -> None:
        await self.admission.wait_until_ready()
        self._open(request, response, query)

    def _refuse(self, response: Response) -> None:
        self.conn.send_response(response)
        self._send_pending()
        assert self.transport is not None
        self.transport.close()

    def _open(self, request: Request, response: Response, query: str) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.conn.send_response(response)
        self._writable = True
        self._send_pending()
        admission = self.admission
        if not admission.ready:
            self.close(CLOSE_TRY_LATER, CATCHING_UP)
            return
        origins = request.headers.get_all("Origin")
        token = token_from(
            next(iter(request.headers.get_all("Authorization")), None),
            parse_qs(query).get("token", [None])[-1],
        )
        # Refused only once accepted, so that the client is told why, with close code 1008.
        try:
            grant = admission.admit(origins[0] if origins else None, token)
        except AccessDenied as exc:
            self.close(CLOSE_POLICY, str(exc))
            return
        self.subscriber, self._expiry = admission.join(self, grant)
        self.wake()
        self._schedule_ping()

    # --- client frames ---------------------------------------------------------------------

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONT:
            self._message_part(frame)
        elif opcode is Opcode.PONG:
            if self._ping_payload is not None and bytes(frame.data) == self._ping_payload:
                self._ping_payload = None
                self._schedule_ping()
        # PING and CLOSE are answered by ServerProtocol itself: see _send_pending.

    def _message_part(self, frame: Frame) -> None:
        """Gather a message's frames; the library bounds its size (max_size) and order."""
        if frame.opcode is not Opcode.CONT:
            self._message_opcode = frame.opcode
            self._fragments = []
        self._fragments.append(bytes(frame.data))
        if not frame.fin:
            return
        parts, self._fragments = self._fragments, []
        subscriber = self.subscriber
        if subscriber is None:
            return  # closing, or not let in: nothing the client says matters now
        if self._message_opcode is Opcode.BINARY:
            subscriber.push(
                messages.error("binary_not_supported", "send JSON requests as text frames")
            )
            self.wake()
            return
        try:
            text = b"".join(parts).decode()
        except UnicodeDecodeError:
            # The library sends the close frame; _send_pending writes it and lets go.
            self.conn.fail(CLOSE_BAD_DATA, "invalid UTF-8 in a text frame")
            return
        self.admission.hub.handle(subscriber, text)
        self.wake()

    def _send_pending(self) -> None:
        """Write what the library has for the client: handshake, pongs, close frames; close
        the socket when it says the connection is over."""
        transport = self.transport
        if transport is None:
            return
        chunks = self.conn.data_to_send()
        if not chunks:
            return
        data = b"".join(chunks)
        if data and not transport.is_closing():
            transport.write(data)
        if self.conn.state is not Phase.OPEN:
            # A close frame is out: no message may follow it.
            self._writable = False
            if self.subscriber is not None:
                self.subscriber.closed(CLOSE_GOING_AWAY)
        if chunks[-1] == b"":
            transport.close()

    # --- keepalive -------------------------------------------------------------------------

    def _schedule_ping(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if self._ping_interval and self.conn.state is Phase.OPEN:
            loop = asyncio.get_running_loop()
            self._keepalive = loop.call_later(self._ping_interval, self._ping)

    def _ping(self) -> None:
        self._keepalive = None
        if self.conn.state is not Phase.OPEN:
            return
        self._ping_payload = os.urandom(4)
        self.conn.send_ping(self._ping_payload)
        self._send_pending()
        if self._ping_timeout:
            loop = asyncio.get_running_loop()
            self._keepalive = loop.call_later(self._ping_timeout, self._ping_timed_out)
        else:
            self._schedule_ping()

    def _ping_timed_out(self) -> None:
        self._keepalive = None
        self.close(CLOSE_INTERNAL, "keepalive ping timeout")


def protocol_for(app: Starlette) -> type[DirectConnection]:
    """The uvicorn websocket protocol class serving /ws for this app."""

    class AppConnection(DirectConnection):
        __slots__ = ()

    AppConnection.app = app
    return AppConnection
