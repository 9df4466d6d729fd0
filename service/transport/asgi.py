"""/ws through ASGI (uvicorn's websocket protocol and Starlette), used when compression is on.

Uncompressed connections (the default) are served below ASGI by ``transport.direct``: there
the hub's pre-encoded frames go straight to the socket. A compressed connection needs its
own deflate state per message, so it gains nothing from shared frames: it is served here,
with a writer task per connection.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.websockets import WebSocket, WebSocketDisconnect

from service.access import AccessDenied
from service.fanout.subscriber import Subscriber
from service.protocol import messages
from service.protocol.messages import CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_TRY_LATER, Outgoing
from service.transport.admission import CATCHING_UP, Admission, token_from


class TaskSink:
    """Sends through ASGI from a writer task of the connection's own."""

    __slots__ = ("close_code", "close_reason", "subscriber", "wakeup")

    def __init__(self) -> None:
        self.wakeup = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self.subscriber: Subscriber | None = None

    def wake(self) -> None:
        self.wakeup.set()

    def close(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        self.wakeup.set()

    def send_now(self, message: Outgoing) -> bool:
        return False  # the writer task sends everything, in order

    async def run(self, ws: WebSocket) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            if self.close_code is not None:
                await _close(ws, self.close_code, self.close_reason)
                return
            if self.subscriber is not None:
                for message in self.subscriber.take():
                    await ws.send_text(message.payload.decode())


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await ws.close(code, reason)


async def serve_websocket(ws: WebSocket, admission: Admission) -> None:
    """Run one /ws connection through ASGI until the client leaves or is closed."""
    if not await admission.wait_until_ready():
        await ws.accept()
        await _close(ws, CLOSE_TRY_LATER, CATCHING_UP)
        return
    token = token_from(ws.headers.get("authorization"), ws.query_params.get("token"))
    await ws.accept()
    # Refused only once accepted, so that the client is told why, with close code 1008.
    try:
        grant = admission.admit(ws.headers.get("origin"), token)
    except AccessDenied as exc:
        await _close(ws, CLOSE_POLICY, str(exc))
        return
    sink = TaskSink()
    writer = asyncio.create_task(sink.run(ws))
    subscriber, expiry = admission.join(sink, grant)
    sink.subscriber = subscriber
    sink.wake()
    hub = admission.hub
    try:
        while subscriber.close_code is None:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                subscriber.push(
                    messages.error("binary_not_supported", "send JSON requests as text frames")
                )
            else:
                hub.handle(subscriber, text)
            sink.wake()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        if expiry is not None:
            expiry.cancel()
        closing = subscriber.close_code is not None
        subscriber.closed(CLOSE_GOING_AWAY)
        hub.disconnect(subscriber)
        if not closing:
            writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer
