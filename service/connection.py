"""Websocket connections: the /ws endpoint and the two ways its messages leave.

Starlette accepts the connection and reads client requests. Sending is where fan-out
costs: through ASGI each message is a coroutine trip per client. So when the connection is
served by ``DirectProtocol`` (our uvicorn websocket protocol) and is uncompressed, the hub's
pre-encoded frames are written straight to the transport — the same bytes for every
client, all of a client's pending messages in one write. Otherwise (compression on, or
another server) a writer task sends through ASGI.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from service.access import Access, AccessDenied, bearer
from service.hub import CLOSE_POLICY, Hub, Subscriber, error_message

DIRECT = "seatcast.direct"


class DirectProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O websocket protocol, reachable from the app for direct writes."""

    on_writable: Callable[[], None] | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # The ASGI task starts on the next loop turn, so the scope is complete for it.
        self.scope["extensions"][DIRECT] = self  # type: ignore[assignment]

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.on_writable is not None:
            self.on_writable()

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_writable = None
        super().connection_lost(exc)

    @property
    def can_write(self) -> bool:
        return (
            self.writable.is_set()
            and not self.close_sent
            and not self.disconnected
            and not self.transport.is_closing()
        )


class DirectSink:
    """Writes pre-encoded frames to the transport; waits for resume_writing when full."""

    __slots__ = ("_closing", "hub", "protocol", "ws")

    def __init__(self, hub: Hub, protocol: DirectProtocol, ws: WebSocket) -> None:
        self.hub = hub
        self.protocol = protocol
        self.ws = ws
        self._closing: asyncio.Task[None] | None = None

    def attach(self, subscriber: Subscriber) -> None:
        self.protocol.on_writable = lambda: self.flush(subscriber)

    def flush(self, subscriber: Subscriber) -> None:
        if subscriber.close_code is None and self.protocol.can_write:
            messages = self.hub.drain(subscriber)
            if messages:
                self.protocol.transport.write(b"".join([m.wire for m in messages]))

    def close(self, code: int, reason: str) -> None:
        if self._closing is None:
            self._closing = asyncio.ensure_future(_close(self.ws, code, reason))

    async def closed(self) -> None:
        """Wait until a close this sink started has been sent."""
        if self._closing is not None:
            await self._closing


class TaskSink:
    """Sends through ASGI from a writer task of the connection's own."""

    __slots__ = ("close_code", "close_reason", "wake")

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""

    def flush(self, subscriber: Subscriber) -> None:
        self.wake.set()

    def close(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        self.wake.set()

    async def run(self, ws: WebSocket, hub: Hub, subscriber: Subscriber) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self.close_code is not None:
                await _close(ws, self.close_code, self.close_reason)
                return
            for message in hub.drain(subscriber):
                await ws.send_text(message.payload.decode())


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await ws.close(code, reason)


async def serve_websocket(ws: WebSocket, hub: Hub, queue_bytes: int, access: Access) -> None:
    """Run one /ws connection until the client leaves or is closed."""
    token = ws.query_params.get("token") or bearer(ws.headers.get("authorization"))
    await ws.accept()
    # Refused only once accepted, so that the client is told why, with close code 1008.
    if not access.origin_allowed(ws.headers.get("origin")):
        await _close(ws, CLOSE_POLICY, "this origin is not allowed")
        return
    try:
        grant = access.grant(token)
    except AccessDenied as exc:
        await _close(ws, CLOSE_POLICY, str(exc))
        return
    protocol = ws.scope.get("extensions", {}).get(DIRECT)
    writer: asyncio.Task[None] | None = None
    direct: DirectSink | None = None
    if isinstance(protocol, DirectProtocol) and not protocol.conn.extensions:
        direct = DirectSink(hub, protocol, ws)
        subscriber = Subscriber(direct, queue_bytes)
        direct.attach(subscriber)
    else:
        task_sink = TaskSink()
        subscriber = Subscriber(task_sink, queue_bytes)
        writer = asyncio.create_task(task_sink.run(ws, hub, subscriber))
    if grant.channels is not None:
        subscriber.allowed = grant.allows
    subscriber.embargoed = grant.embargoed
    expiry = None
    if grant.expires is not None:
        delay = max(0.0, grant.expires - time.time())
        expiry = asyncio.get_running_loop().call_later(
            delay, subscriber.close, CLOSE_POLICY, "the token has expired"
        )
    hub.connect(subscriber)
    try:
        while subscriber.close_code is None:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                subscriber.push(
                    error_message("binary_not_supported", "send JSON requests as text frames")
                )
                subscriber.sink.flush(subscriber)
            else:
                hub.handle(subscriber, text)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        if expiry is not None:
            expiry.cancel()
        hub.disconnect(subscriber)
        if direct is not None:
            # Returning before the close frame is out would drop the connection (1006).
            await direct.closed()
        if writer is not None:
            if subscriber.close_code is None:
                writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
