"""An async client for the seatcast wire protocol: state kept, gaps repaired, drops survived.

    async with SeatcastClient("ws://127.0.0.1:8000/ws", ["national", "declarations"]) as client:
        async for item in client:
            if isinstance(item, Update) and item.channel == "national":
                print(item.state["declared"], "declared")

Two layers, as in python-websockets: :class:`clients.session.Session` is the protocol's
bookkeeping with no I/O (messages in as dicts, items and requests out); this module is the
asyncio shell that moves frames, reconnects with jittered exponential backoff and resumes
with ``since`` and ``epoch``. Nothing from ``service/`` is imported: this speaks only the wire.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Literal

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from clients.session import (
    LOG_CHANNELS,
    ConnectionState,
    ErrorMessage,
    Item,
    Pong,
    Session,
    State,
    Update,
)

__all__ = [
    "LOG_CHANNELS",
    "ConnectionState",
    "ErrorMessage",
    "Item",
    "Pong",
    "SeatcastClient",
    "Session",
    "Update",
]


class SeatcastClient:
    """Follow channels over ``/ws``, reconnecting and resuming until :meth:`close`.

    Iterate to receive :class:`Update`, :class:`ConnectionState`, :class:`ErrorMessage` and
    :class:`Pong` items. Frames are read only while iterating, so a consumer that stops
    iterating applies backpressure to the server, whose slow-client policy then applies
    (a merged delta or snapshot, or a 1013 close that this client resumes from).
    Reconnects after any drop or close (1001, 1012, 1013, ...) with a delay of
    ``backoff_start * 2**attempt`` seconds, capped at ``backoff_cap``, jittered to 50-100%.
    """

    def __init__(
        self,
        url: str,
        channels: Iterable[str],
        *,
        since: Mapping[str, str] | None = None,
        epoch: str | None = None,
        backoff_start: float = 0.2,
        backoff_cap: float = 10.0,
        open_timeout: float = 10.0,
        max_size: int = 1 << 24,
    ) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"a seatcast URL starts with ws:// or wss://, not {url!r}")
        self.url = url
        self.session = Session(channels, since=since, epoch=epoch)
        self.backoff_start = backoff_start
        self.backoff_cap = backoff_cap
        self.open_timeout = open_timeout
        self.max_size = max_size
        self._ws: ClientConnection | None = None
        self._ready: deque[Item] = deque()
        self._attempt = 0
        self._delay = 0.0
        self._started = False
        self._closed = asyncio.Event()
        self._pings: dict[int, float] = {}

    async def __aenter__(self) -> SeatcastClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[Item]:
        return self

    # --- state, as the session holds it ---------------------------------------------------

    @property
    def epoch(self) -> str | None:
        return self.session.epoch

    @property
    def channels(self) -> tuple[str, ...]:
        return self.session.channels

    def state(self, channel: str) -> State | None:
        """The channel's current state (read-only), or None before its snapshot."""
        return self.session.state(channel)

    def seq(self, channel: str) -> str | None:
        return self.session.seq(channel)

    # --- requests --------------------------------------------------------------------------

    async def subscribe(self, channels: Iterable[str]) -> None:
        """Add channels; their snapshots arrive through iteration (now, or on reconnect)."""
        self.session.subscribe(channels)
        await self._flush()

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        """Drop channels and their state; late messages for them are ignored."""
        self.session.unsubscribe(channels)
        await self._flush()

    async def ping(self) -> int | None:
        """Send an application ping; its :class:`Pong` arrives through iteration.

        Returns the ping's id, or None when not connected (nothing was sent).
        """
        ping_id = self.session.ping()
        if ping_id is not None:
            self._pings[ping_id] = time.monotonic()
            await self._flush()
        return ping_id

    async def close(self) -> None:
        """Stop: iteration ends once the items already received are taken."""
        self._closed.set()
        if self._ws is not None:
            await self._ws.close()

    # --- iteration -------------------------------------------------------------------------

    async def __anext__(self) -> Item:
        while True:
            if self._ready:
                return self._ready.popleft()
            if self._closed.is_set():
                if self._ws is not None:
                    await self._ws.close()
                    self._ws = None
                raise StopAsyncIteration
            if self._ws is None:
                await self._connect()
                continue
            try:
                frame = await self._ws.recv()
            except ConnectionClosed as exc:
                self._lost(f"connection closed ({_describe(exc)})")
                continue
            try:
                message = orjson.loads(frame)
            except orjson.JSONDecodeError:
                message = None
            if not isinstance(message, dict):
                self._ready.append(ErrorMessage("bad_frame", "the server sent a non-object", {}))
                continue
            for item in self.session.receive(message):
                if isinstance(item, Pong) and isinstance(item.id, int):
                    sent = self._pings.pop(item.id, None)
                    if sent is not None:
                        item = Pong(item.id, time.monotonic() - sent, item.message)
                self._ready.append(item)
                if isinstance(item, ConnectionState):
                    self._attempt = 0  # whole again: the next drop starts the backoff afresh
            drop = self.session.take_drop()
            if drop is not None:
                await self._ws.close()
                self._lost(drop)
                continue
            await self._flush()

    async def _connect(self) -> None:
        if not self._started:
            self._started = True
            self._ready.append(ConnectionState("connecting", self.url))
            return
        if self._delay:
            try:
                async with asyncio.timeout(self._delay):
                    await self._closed.wait()
                return
            except TimeoutError:
                pass
        try:
            self._ws = await connect(
                self.url,
                open_timeout=self.open_timeout,
                max_size=self.max_size,
                compression=None,
            )
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            status: Literal["connecting", "reconnecting"] = (
                "reconnecting" if self.session.epoch is not None else "connecting"
            )
            self._schedule()
            self._ready.append(ConnectionState(status, f"cannot connect: {exc}", self._delay))

    def _lost(self, why: str) -> None:
        self._ws = None
        self._pings.clear()
        self.session.connection_lost()
        if not self._closed.is_set():
            self._schedule()
            self._ready.append(ConnectionState("reconnecting", why, self._delay))

    def _schedule(self) -> None:
        ceiling = min(self.backoff_cap, self.backoff_start * 2**self._attempt)
        self._attempt += 1
        # Jitter spreads the clients of a restarted server over the interval.
        self._delay = random.uniform(ceiling / 2, ceiling)

    async def _flush(self) -> None:
        requests = self.session.take_requests()
        if self._ws is None:
            return
        try:
            for request in requests:
                await self._ws.send(orjson.dumps(request).decode())
        except ConnectionClosed:
            pass  # the reader sees the close and resubscribes everything on reconnect


def _describe(exc: ConnectionClosed) -> str:
    close = exc.rcvd or exc.sent
    if close is None:
        return "no close frame"
    return f"{close.code} {close.reason}".strip()
