"""An async client for the seatcast wire protocol: state kept, gaps repaired, drops survived.

    async with SeatcastClient("ws://127.0.0.1:8000/ws", ["national", "declarations"]) as client:
        async for item in client:
            if isinstance(item, Update) and item.channel == "national":
                print(item.state["declared"], "declared")

Two layers, as in python-websockets: :class:`clients.session.Session` is the protocol's
bookkeeping with no I/O (messages in as dicts, items and requests out); this module is the
asyncio shell that moves frames and resumes with ``since`` and ``epoch``. Connecting and
retrying failed attempts is the websockets library's reconnecting ``connect``; this module
gives it the delays (jittered exponential backoff) and waits the same way after a drop, which
the library would follow with an immediate reconnect. It speaks only the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterable, Mapping
from types import TracebackType
from typing import Literal, Self

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
    "Shell",
    "Update",
]


class Shell:
    """What the two asyncio shells around a :class:`Session` share: the items ready for
    iteration, the state as the session holds it, closing, and the backoff between tries."""

    def __init__(self, session: Session, backoff_start: float, backoff_cap: float) -> None:
        self.session = session
        self.backoff_start = backoff_start
        self.backoff_cap = backoff_cap
        self._ready: deque[Item] = deque()
        self._attempt = 0
        self._pause = 0.0
        """Seconds to wait after a drop before connecting again."""
        self._started = False
        self._closed = asyncio.Event()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Item:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

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

    def _received(self, items: list[Item]) -> None:
        for item in items:
            self._ready.append(item)
            if isinstance(item, ConnectionState):
                self._attempt = 0  # whole again: the next drop starts the backoff afresh

    def _schedule(self) -> float:
        """The next delay: ``backoff_start * 2**attempt``, capped, jittered to 50-100%."""
        ceiling = min(self.backoff_cap, self.backoff_start * 2**self._attempt)
        self._attempt += 1
        # Jitter spreads the clients of a restarted server over the interval.
        return random.uniform(ceiling / 2, ceiling)

    async def _wait_pause(self) -> None:
        """Sleep the delay a drop scheduled, or until closed."""
        pause, self._pause = self._pause, 0.0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(pause):
                await self._closed.wait()


class SeatcastClient(Shell):
    """Follow channels over ``/ws``, reconnecting and resuming until :meth:`close`.

    Iterate to receive :class:`Update`, :class:`ConnectionState`, :class:`ErrorMessage` and
    :class:`Pong` items. Frames are read only while iterating, so a consumer that stops
    iterating applies backpressure to the server, whose slow-client policy then applies
    (a merged delta or snapshot, or a 1013 close that this client resumes from).
    Reconnects after any drop or close (1001, 1012, 1013, ...) with a delay of
    ``backoff_start * 2**attempt`` seconds, capped at ``backoff_cap``, jittered to 50-100%.
    :class:`clients.sse.SeatcastSSEClient` is the same over ``/sse``.
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
        super().__init__(Session(channels, since=since, epoch=epoch), backoff_start, backoff_cap)
        self.url = url
        self.open_timeout = open_timeout
        self.max_size = max_size
        self._ws: ClientConnection | None = None
        self._connections: AsyncIterator[ClientConnection] | None = None
        """websockets' reconnecting ``connect``, iterated: each item is a new connection."""
        self._opening: asyncio.Task[ClientConnection] | None = None
        """Waiting for the library's next connection (its backoff included)."""
        self._failure: Exception | None = None
        """Why the last attempt failed, for the item that goes with its delay."""
        self._wake = asyncio.Event()
        """Set when an item arrives while a connection is being opened, and on close."""
        self._pings: dict[int, float] = {}

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
        self._wake.set()
        await self._stop_connecting()
        if self._ws is not None:
            await self._ws.close()

    # --- iteration -------------------------------------------------------------------------

    async def __anext__(self) -> Item:
        while True:
            if self._ready:
                return self._ready.popleft()
            if self._closed.is_set():
                await self._stop_connecting()
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
            self._received([self._timed(item) for item in self.session.receive(message)])
            drop = self.session.take_drop()
            if drop is not None:
                await self._ws.close()
                self._lost(drop)
                continue
            await self._flush()

    async def _connect(self) -> None:
        """Wait for the next connection; return early, without one, when a failed attempt has
        left an item to show (the library's backoff goes on meanwhile) or on close."""
        if not self._started:
            self._started = True
            self._ready.append(ConnectionState("connecting", self.url))
            return
        if self._pause:
            await self._wait_pause()
            return
        if self._connections is None:
            self._connections = aiter(
                connect(
                    self.url,
                    open_timeout=self.open_timeout,
                    max_size=self.max_size,
                    compression=None,
                    process_exception=self._retryable,
                    reconnect_delays=self._delays,
                )
            )
        if self._opening is None:
            self._opening = asyncio.create_task(self._next_connection(self._connections))
        opening = self._opening
        self._wake.clear()
        woken = asyncio.create_task(self._wake.wait())
        try:
            await asyncio.wait((opening, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
        if opening.done() and not self._closed.is_set():
            self._opening = None
            self._ws = opening.result()

    @staticmethod
    async def _next_connection(connections: AsyncIterator[ClientConnection]) -> ClientConnection:
        return await anext(connections)

    def _retryable(self, exc: Exception) -> Exception | None:
        """The library's ``process_exception``: None to retry after a delay, else the error
        to raise. Retried: network errors, timeouts and any refused handshake (the library
        alone would give up on a 4xx)."""
        if not isinstance(exc, OSError | TimeoutError | InvalidHandshake):
            return exc
        self._failure = exc
        return None

    def _delays(self) -> Generator[float]:
        """The library's ``reconnect_delays``: asked for one delay after each failed attempt;
        each comes with an item saying why and how long."""
        while True:
            status: Literal["connecting", "reconnecting"] = (
                "reconnecting" if self.session.epoch is not None else "connecting"
            )
            delay = self._schedule()
            self._ready.append(ConnectionState(status, f"cannot connect: {self._failure}", delay))
            self._wake.set()
            yield delay

    async def _stop_connecting(self) -> None:
        opening, self._opening = self._opening, None
        if opening is not None:
            opening.cancel()
            await asyncio.wait((opening,))
            if not opening.cancelled() and opening.exception() is None:
                await opening.result().close()  # opened just as the client was closed
        connections, self._connections = self._connections, None
        if isinstance(connections, AsyncGenerator):
            await connections.aclose()

    def _lost(self, why: str) -> None:
        self._ws = None
        self._pings.clear()
        self.session.connection_lost()
        if not self._closed.is_set():
            self._pause = self._schedule()
            self._ready.append(ConnectionState("reconnecting", why, self._pause))

    def _timed(self, item: Item) -> Item:
        if isinstance(item, Pong) and isinstance(item.id, int):
            sent = self._pings.pop(item.id, None)
            if sent is not None:
                return Pong(item.id, time.monotonic() - sent, item.message)
        return item

    async def _flush(self) -> None:
        requests = self.session.take_requests()
        ws = self._ws
        if ws is None:
            return
        try:
            for request in requests:
                await ws.send(orjson.dumps(request).decode())
        except ConnectionClosed:
            pass  # the reader sees the close and resubscribes everything on reconnect


def _describe(exc: ConnectionClosed) -> str:
    close = exc.rcvd or exc.sent
    if close is None:
        return "no close frame"
    return f"{close.code} {close.reason}".strip()
