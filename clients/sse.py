"""The client library over Server-Sent Events (``GET /sse``), for where websockets cannot go.

    async with SeatcastSSEClient("http://127.0.0.1:8000/sse", ["national"]) as client:
        async for item in client:
            ...

The same :class:`Session` and the same items as :class:`clients.client.SeatcastClient`; only
the shell differs. httpx and httpx-sse move the bytes and parse the event stream. An event
stream takes no requests: the channels are named in the URL, and the server answers them
unasked. Its one position for every channel is each event's id, ``<epoch>:<seq>``, so a
reconnect sends the last one as ``Last-Event-ID`` and every channel resumes from it (rule 3
of the protocol). What that changes for an application:

- :meth:`SeatcastSSEClient.subscribe` and ``unsubscribe`` reconnect with the new channel list
  at once; adding a channel has every channel sent afresh (one id cannot say which channels
  are new), so the ``declarations`` log continues from the snapshot's ``recent`` entries.
- A gap reconnects from the last good seq on that channel; the other channels pass over
  what they already hold.
- There is no application ping (``ping()`` returns None).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import orjson
from httpx_sse import EventSource, ServerSentEvent, SSEError, aconnect_sse

from clients.client import SeatcastClient, Shell
from clients.items import ConnectionState, ErrorMessage, Item
from clients.session import LOG_CHANNELS, Session

__all__ = ["SeatcastSSEClient", "Transport", "open_client", "sse_url"]

Transport = Literal["websocket", "sse"]
TRANSPORTS: tuple[Transport, ...] = ("websocket", "sse")
HEARTBEAT = 15.0
"""The server's comment interval on an idle stream (DESIGN.md)."""
ERROR_BODY_BYTES = 4096
"""How much of a refusal's body is read for its reason."""


class Refused(Exception):
    """The server answered the stream's request with something other than an event stream."""

    def __init__(self, reason: str, retry_after: float = 0.0) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        """Seconds the server asked to wait (``Retry-After``), or 0."""


class SeatcastSSEClient(Shell):
    """Follow channels over ``/sse``, reconnecting and resuming until :meth:`close`.

    Iterate to receive :class:`Update`, :class:`ConnectionState` and :class:`ErrorMessage`
    items, as from :class:`SeatcastClient`. Events are read only while iterating (TCP's
    backpressure reaches the server, whose slow-client policy applies: a merged delta or a
    snapshot, or a closed stream that this client resumes). Reconnects after any drop, a
    refusal or silence longer than ``read_timeout`` (the server sends a comment every 15 s)
    with the same jittered exponential backoff as the websocket client.
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
        read_timeout: float = 3 * HEARTBEAT,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """``url`` is the ``/sse`` endpoint (``http://`` or ``https://``, any ``token`` in its
        query kept); ``since`` resumes log channels as on the websocket, and needs ``epoch``
        and every channel a log: one id resumes all channels or none. ValueError otherwise."""
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"an SSE URL starts with http:// or https://, not {url!r}")
        channels = list(channels)
        if since and (epoch is None or not set(channels) <= LOG_CHANNELS):
            raise ValueError(
                "over SSE, 'since' needs 'epoch', and every channel a log: one id resumes all"
            )
        session = Session(channels, since=since, epoch=epoch, pushed=True)
        super().__init__(session, backoff_start, backoff_cap)
        self.url = url
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(open_timeout, read=read_timeout),
            headers=dict(headers or {}),
        )
        self._stream: contextlib.AsyncExitStack | None = None
        self._events: AsyncIterator[ServerSentEvent] | None = None
        self._reading: asyncio.Future[ServerSentEvent] | None = None
        self._wake = asyncio.Event()
        """Set by close() and by a change of channels, to stop waiting for the next event."""
        self._reopen = False
        """The channels changed: reconnect now, without a delay."""

    # --- requests --------------------------------------------------------------------------

    async def subscribe(self, channels: Iterable[str]) -> None:
        """Add channels: the stream is opened again with them (every channel afresh)."""
        self.session.subscribe(channels)
        self._reconnect_if_dropped()

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        """Drop channels and their state: the stream is opened again without them."""
        self.session.unsubscribe(channels)
        self._reconnect_if_dropped()

    async def ping(self) -> int | None:
        """An event stream takes no requests: always None."""
        return None

    async def close(self) -> None:
        """Stop: iteration ends once the items already received are taken."""
        self._closed.set()
        self._wake.set()
        await self._end_stream()
        await self._http.aclose()

    def _reconnect_if_dropped(self) -> None:
        if self.session.take_drop() is not None:
            self._reopen = True
            self._wake.set()

    # --- iteration -------------------------------------------------------------------------

    async def __anext__(self) -> Item:
        while True:
            if self._ready:
                return self._ready.popleft()
            if self._closed.is_set():
                await self._end_stream()
                raise StopAsyncIteration
            if self._reopen:
                self._reopen = False
                await self._end_stream()
                self.session.connection_lost()
                continue
            if self._events is None:
                await self._connect()
                continue
            try:
                event = await self._next_event(self._events)
            except StopAsyncIteration:
                await self._lost("the server ended the stream")
                continue
            except (httpx.HTTPError, SSEError, OSError) as exc:
                await self._lost(f"connection lost ({_describe(exc)})")
                continue
            if event is None:
                continue  # woken: closed, or the channels changed
            self._take(event)
            drop = self.session.take_drop()
            if drop is not None:
                await self._lost(drop)

    async def _next_event(self, events: AsyncIterator[ServerSentEvent]) -> ServerSentEvent | None:
        """The next event, or None when woken first (the read goes on for the next call)."""
        if self._reading is None:
            self._reading = asyncio.ensure_future(anext(events))
        reading = self._reading
        if not reading.done():
            self._wake.clear()
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait((reading, woken), return_when=asyncio.FIRST_COMPLETED)
            finally:
                woken.cancel()
            if not reading.done():
                return None
        if reading.cancelled():
            return None  # the stream was ended meanwhile (close, or a change of channels)
        self._reading = None
        return reading.result()

    def _take(self, event: ServerSentEvent) -> None:
        if not event.data:
            return  # a comment (heartbeat) after an id: no event, as for a browser
        try:
            message: Any = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            message = None
        if not isinstance(message, dict):
            self._ready.append(ErrorMessage("bad_frame", "the server sent a non-object", {}))
            return
        self._received(self.session.receive(message, event.id or None))

    async def _connect(self) -> None:
        """Open the stream; on failure, queue the item saying why and when the next try is."""
        if not self._started:
            self._started = True
            self._ready.append(ConnectionState("connecting", self.url))
            return
        if self._pause:
            await self._wait_pause()
            return
        last_event_id = self.session.next_connection()
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        stack = contextlib.AsyncExitStack()
        try:
            source: EventSource = await stack.enter_async_context(
                aconnect_sse(
                    self._http, "GET", sse_url(self.url, self.session.channels), headers=headers
                )
            )
            await _check(source.response)
        except (httpx.HTTPError, SSEError, OSError, Refused) as exc:
            await stack.aclose()
            status: Literal["connecting", "reconnecting"] = (
                "reconnecting" if self.session.epoch is not None else "connecting"
            )
            # Not sooner than the server asked (a 429 or 503 says when), however the backoff goes.
            self._pause = max(self._schedule(), getattr(exc, "retry_after", 0.0))
            self._ready.append(
                ConnectionState(status, f"cannot connect: {_describe(exc)}", self._pause)
            )
            return
        self._stream = stack
        self._events = source.aiter_sse()

    async def _lost(self, why: str) -> None:
        await self._end_stream()
        self.session.connection_lost()
        if not self._closed.is_set():
            self._pause = self._schedule()
            self._ready.append(ConnectionState("reconnecting", why, self._pause))

    async def _end_stream(self) -> None:
        reading, self._reading = self._reading, None
        if reading is not None:
            reading.cancel()
            await asyncio.wait((reading,))
            if not reading.cancelled():
                reading.exception()  # retrieved: the stream is being dropped anyway
        events, self._events = self._events, None
        if isinstance(events, AsyncGenerator):
            with contextlib.suppress(Exception):
                await events.aclose()
        stack, self._stream = self._stream, None
        if stack is not None:
            with contextlib.suppress(Exception):
                await stack.aclose()


async def _check(response: httpx.Response) -> None:
    """Raise Refused, with the server's reason, unless the answer is an event stream."""
    content_type = response.headers.get("content-type", "").partition(";")[0].strip()
    if response.status_code == 200 and content_type == "text/event-stream":
        return
    body = b""
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= ERROR_BODY_BYTES:
            break
    reason = ""
    with contextlib.suppress(orjson.JSONDecodeError):
        answer = orjson.loads(body)
        if isinstance(answer, dict) and "message" in answer:
            reason = f": {answer.get('error', '')} {answer['message']}".rstrip()
    retry_after = response.headers.get("retry-after", "")
    raise Refused(
        f"HTTP {response.status_code} {content_type or 'no content type'}{reason}",
        float(retry_after) if retry_after.isdigit() else 0.0,
    )


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def sse_url(url: str, channels: Iterable[str]) -> str:
    """``url`` with ``channels=`` set to these channels (other query parameters kept)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "channels"]
    query.append(("channels", ",".join(channels)))
    return urlunsplit(parts._replace(query=urlencode(query, safe=":,")))


def open_client(
    url: str,
    channels: Iterable[str],
    *,
    transport: Transport = "websocket",
    **options: Any,
) -> SeatcastClient | SeatcastSSEClient:
    """A client over the chosen transport; ``options`` as each class takes them."""
    if transport == "sse":
        return SeatcastSSEClient(url, channels, **options)
    if transport == "websocket":
        return SeatcastClient(url, channels, **options)
    raise ValueError(f"unknown transport {transport!r}: use one of {', '.join(TRANSPORTS)}")
