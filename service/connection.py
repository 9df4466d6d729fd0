"""What every /ws connection goes through, however it is served: the credential check,
joining the hub — and the ASGI way of serving it, used when compression is on.

Uncompressed connections (the default) are served below ASGI by ``service.direct``: there
the hub's pre-encoded frames go straight to the socket. A compressed connection needs its
own deflate state per message, so it gains nothing from shared frames; it is served by
uvicorn's websocket protocol and Starlette, with a writer task per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from starlette.websockets import WebSocket, WebSocketDisconnect

from service.access import Access, AccessDenied, Grant, bearer
from service.hub import CLOSE_POLICY, Hub, Outgoing, Subscriber, error_message

NOT_READY_WAIT = 10.0
"""Seconds a websocket waits for a starting instance to catch up before 1013."""
CATCHING_UP = "catching up with the stream; try again shortly"


def admit(access: Access, origin: str | None, token: str | None) -> Grant:
    """The grant for a new connection; AccessDenied (close 1008) says why there is none."""
    if not access.origin_allowed(origin):
        raise AccessDenied("this origin is not allowed")
    return access.grant(token)


def join(hub: Hub, subscriber: Subscriber, grant: Grant) -> asyncio.TimerHandle | None:
    """Put the subscriber on the hub with what its grant allows; the hello goes out now.

    Returns the timer that closes it when its token expires, if the token does.
    """
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
    return expiry


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

    def send_now(self, message: Outgoing) -> bool:
        return False  # the writer task sends everything, in order

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
    """Run one /ws connection through ASGI until the client leaves or is closed."""
    token = ws.query_params.get("token") or bearer(ws.headers.get("authorization"))
    await ws.accept()
    # Refused only once accepted, so that the client is told why, with close code 1008.
    try:
        grant = admit(access, ws.headers.get("origin"), token)
    except AccessDenied as exc:
        await _close(ws, CLOSE_POLICY, str(exc))
        return
    sink = TaskSink()
    subscriber = Subscriber(sink, queue_bytes)
    writer = asyncio.create_task(sink.run(ws, hub, subscriber))
    expiry = join(hub, subscriber, grant)
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
                sink.flush(subscriber)
            else:
                hub.handle(subscriber, text)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        if expiry is not None:
            expiry.cancel()
        hub.disconnect(subscriber)
        if subscriber.close_code is None:
            writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer
