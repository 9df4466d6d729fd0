"""One load-generator connection: the chain check per channel, and the ways to move bytes.

Why this module keeps a websocket client of its own (``RawLink``) beside the websockets
library's: the client processes share the machine's cores with the server they measure, so
every µs they spend per message is taken from it. Measured against ``broadcast()`` (which
spends 8 to 10 µs sending a message), the library's asyncio client cost 25 µs of client CPU
per message at 2,000 subscribers and 19 µs at 5,000, where it fell behind and p99 was 6.3 s;
``RawLink`` cost 10.9 and 12.0 µs, and p99 at 5,000 was 1.7 s (PERFORMANCE.md, "The client
matters"). That still justifies it: re-measure with ``--client asyncio`` before removing it.

:class:`Client` checks what arrives against the protocol's promise — each delta's or event's
``prev`` is the ``seq`` of the message before it on that channel — and records latency from
the message's stream entry (its ``seq`` is ``<ms>-<n>``, Redis's clock on this machine).

Two links carry the bytes, chosen with ``--client``:

- ``asyncio``: the websockets library's asyncio client, one task per connection awaiting
  ``recv()``. Simple, but every message costs a future, a task switch, the frame assembler
  and the library's generator-based parser.
- ``raw`` (the default): a minimal RFC 6455 client under ``asyncio.Protocol`` that handles
  each frame inside ``data_received``. What remains is mostly the kernel and the event loop
  (one epoll wake-up and one ``recv`` per message per connection).

A third, ``resp``, is not a websocket at all: it is how subscribers of the ``redis`` reference
(Redis's own pub/sub) connect, SUBSCRIBE over raw TCP and take each pushed message's payload,
which is the same JSON as the others send. It is chosen by the server kind, not ``--client``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import time
from array import array
from collections.abc import Iterable, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import hiredis
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.connection import broadcast
from websockets.exceptions import ConnectionClosed

from service.core.seq import Seq

RECENT_AT_LEAST = 20
"""Entries a log's snapshot (and REST answer) holds at the least, as DESIGN.md says."""
LINKS = ("raw", "asyncio")
"""The websocket links ``--client`` chooses from; ``resp`` is the ``redis`` kind's own."""
MAX_SIZE = 1 << 24
CLOSE_TIMEOUT = 2.0

# A delta or event whose envelope comes first, as seatcast and the references encode it.
# Anchored at the opening brace, these can only be top-level keys; anything else is parsed.
ENVELOPE = re.compile(
    rb'\{"type":"(?:delta|event)","channel":"([^"\\]*)","seq":"(\d+-\d+)","prev":"(\d+-\d+)"'
)


class Totals:
    """What every connection of one client process adds up (see ``subscribers.Report``)."""

    __slots__ = (
        "bytes", "delivered", "errors", "first_receive", "gaps", "hellos", "http",
        "last_receive", "latency", "out_of_order", "resyncs", "unexpected",
    )  # fmt: skip

    def __init__(self) -> None:
        self.latency: array[float] = array("f")
        """Milliseconds from XADD to receipt, one per delivery: see :mod:`.histogram`."""
        self.delivered = 0
        self.bytes = 0
        self.first_receive = 0.0
        self.last_receive = 0.0
        self.gaps = 0
        self.out_of_order = 0
        self.resyncs = 0
        self.hellos = 0
        self.unexpected = 0
        self.errors: dict[str, int] = {}
        self.http: dict[str, int] = {}
        """Pollers: answers by status (and by a cache's X-Cache-Status), reconnections."""


class Chain:
    """What one connection has seen on one channel."""

    __slots__ = ("gapped", "last", "last_text", "received", "subscribed", "unanchored")

    def __init__(self) -> None:
        self.last: Seq | None = None
        self.last_text: str | None = None
        self.received = 0
        self.gapped = False
        self.subscribed = False
        self.unanchored = False
        """Subscribed with no snapshot (Redis pub/sub): the first delta or event starts the
        chain, whatever its ``prev``; from then on it is checked as any other. Nothing can
        supersede a message on such a chain, so whatever is missing from it is lost."""


class Link(Protocol):
    def subscribe(self, channels: Sequence[str]) -> None: ...

    async def close(self) -> None: ...

    def abort(self) -> None: ...


class Client:
    """One connection's channels and what arrived on them."""

    __slots__ = (
        "chains",
        "closed_code",
        "closing",
        "link",
        "pending",
        "ready",
        "seen_hello",
        "totals",
    )

    def __init__(self, channels: Iterable[str], totals: Totals) -> None:
        self.chains = {channel: Chain() for channel in channels}
        self.pending = len(self.chains)
        self.ready = asyncio.Event()
        self.totals = totals
        self.closed_code: int | None = None
        self.closing = False
        self.seen_hello = False
        self.link: Link | None = None

    def closed(self, code: int) -> None:
        if not self.closing and self.closed_code is None:
            self.closed_code = code

    def on_message(self, raw: bytes, now: float) -> None:
        """Check and time one text frame received at ``now`` (time.time())."""
        match = ENVELOPE.match(raw)
        if match is None:
            self._parsed(raw, now)
        else:
            self._delta(match[1].decode(), match[2].decode(), match[3].decode(), len(raw), now)

    def _delta(self, channel: str, text: str, prev: str, size: int, now: float) -> None:
        totals = self.totals
        chain = self.chains.get(channel)
        if chain is None:
            totals.unexpected += 1
            return
        seq = Seq.parse(text)
        if chain.last is not None and seq <= chain.last:
            totals.out_of_order += 1
            return
        if prev != chain.last_text and not (chain.unanchored and chain.last is None):
            totals.gaps += 1
            chain.gapped = True
        chain.last, chain.last_text = seq, text
        chain.received += 1
        totals.delivered += 1
        totals.bytes += size
        totals.latency.append(now * 1000.0 - seq.ms)
        if not totals.first_receive:
            totals.first_receive = now
        totals.last_receive = now

    def _parsed(self, raw: bytes, now: float) -> None:
        totals = self.totals
        try:
            message: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            totals.errors["bad_json"] = totals.errors.get("bad_json", 0) + 1
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind in ("delta", "event"):
            channel, seq, prev = (message.get(k) for k in ("channel", "seq", "prev"))
            if isinstance(channel, str) and isinstance(seq, str) and isinstance(prev, str):
                self._delta(channel, seq, prev, len(raw), now)
            else:
                totals.unexpected += 1
        elif kind == "snapshot":
            self._snapshot(message)
        elif kind == "hello":
            totals.hellos += self.seen_hello
            self.seen_hello = True
        elif kind == "error":
            code = str(message.get("code"))
            totals.errors[code] = totals.errors.get(code, 0) + 1

    def confirmed(self, channel: str) -> None:
        """A subscription confirmed without a snapshot (Redis pub/sub's ``subscribe`` reply)."""
        chain = self.chains.get(channel)
        if chain is None or chain.subscribed:
            self.totals.unexpected += 1
            return
        chain.subscribed = chain.unanchored = True
        self._joined()

    def _joined(self) -> None:
        self.pending -= 1
        if not self.pending:
            self.ready.set()

    def _snapshot(self, message: dict[str, Any]) -> None:
        chain = self.chains.get(str(message.get("channel")))
        if chain is None or not isinstance(message.get("seq"), str):
            self.totals.unexpected += 1
            return
        text = message["seq"]
        seq = Seq.parse(text)
        if chain.subscribed:
            self.totals.resyncs += 1
            if chain.last is not None and seq < chain.last:
                self.totals.out_of_order += 1
        else:
            chain.subscribed = True
            self._joined()
        chain.last, chain.last_text = seq, text

    def on_state(self, channel: str, text: str, now: float) -> None:
        """A poll's answer: the channel's state at ``text``, the seq of its last change. The
        first answer starts the chain; a later seq is a delivery (the changes between were
        superseded); an earlier one is out of order."""
        chain, seq = self._polled(channel, text)
        if chain is None or seq is None or (chain.last is not None and seq == chain.last):
            return
        if chain.last is not None and seq < chain.last:
            self.totals.out_of_order += 1
            return
        self._observed(chain, seq, text, now)

    def on_log(self, channel: str, text: str, entries: list[str], now: float) -> None:
        """A poll's answer for a log: its latest entries' seqs, oldest first. Each one after
        the last seen is a delivery; a list that no longer reaches back to the last seen may
        have skipped some (a gap)."""
        chain, seq = self._polled(channel, text)
        if chain is None or seq is None or chain.last is None:
            return
        try:
            seqs = [Seq.parse(entry) for entry in entries]
        except ValueError:
            self.totals.unexpected += 1
            return
        fresh = [(s, t) for s, t in zip(seqs, entries, strict=True) if s > chain.last]
        # A log's answer holds at least its latest RECENT_AT_LEAST entries: a shorter list
        # is the whole log, a full one of fresh entries may have left some out.
        if len(fresh) == len(seqs) >= RECENT_AT_LEAST and chain.last_text not in entries:
            self.totals.gaps += 1
            chain.gapped = True
        for entry_seq, entry_text in fresh:
            self._observed(chain, entry_seq, entry_text, now)

    def _polled(self, channel: str, text: str) -> tuple[Chain | None, Seq | None]:
        """The chain and the answer's seq; the first answer only starts the chain."""
        chain = self.chains.get(channel)
        try:
            seq = Seq.parse(text)
        except ValueError:
            seq = None
        if chain is None or seq is None:
            self.totals.unexpected += 1
            return None, None
        if not chain.subscribed:
            chain.subscribed = True
            chain.last, chain.last_text = seq, text
            self._joined()
            return None, None
        return chain, seq

    def _observed(self, chain: Chain, seq: Seq, text: str, now: float) -> None:
        totals = self.totals
        chain.last, chain.last_text = seq, text
        chain.received += 1
        totals.delivered += 1
        totals.latency.append(now * 1000.0 - seq.ms)
        if not totals.first_receive:
            totals.first_receive = now
        totals.last_receive = now

    def caught_up(self, finals: dict[str, Seq]) -> bool:
        """Whether every channel has reached its final seq (``finals``: parsed seqs)."""
        for channel, chain in self.chains.items():
            final = finals.get(channel)
            if final is not None and (chain.last is None or chain.last < final):
                return False
        return True


def subscribe_request(channels: Sequence[str]) -> str:
    return orjson.dumps({"op": "subscribe", "channels": list(channels)}).decode()


# --- the websockets asyncio client ---------------------------------------------------------


class AsyncioLink:
    def __init__(self, ws: ClientConnection, client: Client) -> None:
        self.ws = ws
        self.client = client
        self.task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        try:
            while True:
                raw = await self.ws.recv(decode=False)
                self.client.on_message(raw, time.time())
        except ConnectionClosed as exc:
            self.client.closed(exc.rcvd.code if exc.rcvd is not None else 1006)

    def send_text(self, text: str) -> None:
        # broadcast() writes at once without awaiting, which is all a subscribe needs.
        broadcast([self.ws], text)

    def subscribe(self, channels: Sequence[str]) -> None:
        self.send_text(subscribe_request(channels))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    def abort(self) -> None:
        self.task.cancel()
        self.ws.transport.abort()


async def open_asyncio(url: str, client: Client) -> AsyncioLink:
    ws = await connect(
        url,
        compression=None,
        open_timeout=None,
        ping_interval=None,
        close_timeout=CLOSE_TIMEOUT,
        max_size=MAX_SIZE,
    )
    return AsyncioLink(ws, client)


# --- a minimal RFC 6455 client under asyncio.Protocol --------------------------------------


GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 16 * 1024
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


class HandshakeFailed(ConnectionError):
    pass


class StreamLink(asyncio.Protocol):
    """What the two links over raw TCP share: the transport, the client whose accounting
    they feed, and a close that is bounded in time."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.closed(1006)
        if not self.lost.done():
            self.lost.set_result(None)

    def start_close(self) -> None:
        """Begin the protocol's own orderly close."""
        if self.transport is not None:
            self.transport.close()

    async def close(self) -> None:
        self.start_close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.shield(self.lost)
        self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class RawLink(StreamLink):
    """Just what a subscriber needs of RFC 6455: the opening handshake, unmasked frames from
    the server (text, continuation, ping, close), and masked frames to it (text, pong, close).
    Frames are handled inside ``data_received``: no task, future or queue per message."""

    def __init__(self, host: str, port: int, path: str, client: Client) -> None:
        super().__init__(client)
        key = base64.b64encode(os.urandom(16)).decode()
        self.accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.is_open = False
        self.close_sent = False
        self.buffer = b""
        self.fragments: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if self.buffer:
            data = self.buffer + data
            self.buffer = b""
        if not self.is_open:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = data
                if len(data) > MAX_HEAD:
                    self._fail_handshake("no end to the response headers")
                return
            status, *headers = data[:end].split(b"\r\n")
            data = data[end + 4 :]
            accepted = any(
                name.strip().lower() == b"sec-websocket-accept" and value.strip() == self.accept
                for name, _, value in (line.partition(b":") for line in headers)
            )
            if not status.startswith(b"HTTP/1.1 101") or not accepted:
                self._fail_handshake(status.decode(errors="replace"))
                return
            self.is_open = True
            self.opened.set_result(None)
        self._frames(data, now)

    def _frames(self, data: bytes, now: float) -> None:
        pos, size = 0, len(data)
        while size - pos >= 2:
            first, second = data[pos], data[pos + 1]
            length, head = second & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
            if second & 0x80 or length > MAX_SIZE:
                self._send(OP_CLOSE, (1002).to_bytes(2, "big"))  # servers never mask
                self.abort()
                return
            end = pos + head + length
            if end > size:
                break
            payload = data[pos + head : end]
            pos = end
            opcode, fin = first & 0x0F, first & 0x80
            if opcode == OP_TEXT or opcode == OP_BINARY or opcode == OP_CONT:
                if fin and not self.fragments:
                    self.client.on_message(payload, now)
                else:
                    self.fragments.append(payload)
                    if fin:
                        self.client.on_message(b"".join(self.fragments), now)
                        self.fragments.clear()
            elif opcode == OP_PING:
                self._send(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                self.client.closed(
                    int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                )
                if not self.close_sent:
                    self._send(OP_CLOSE, payload[:2])
                if self.transport is not None:
                    self.transport.close()
                return
        if pos < size:
            self.buffer = data[pos:]

    def _fail_handshake(self, why: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(HandshakeFailed(f"handshake refused: {why}"))
        self.abort()

    def _send(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if opcode == OP_CLOSE:
            self.close_sent = True
        length = len(payload)
        if length < 126:
            head = bytes((0x80 | opcode, 0x80 | length))
        elif length < 1 << 16:
            head = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.transport.write(head + mask + masked)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        super().connection_lost(exc)

    def send_text(self, text: str) -> None:
        self._send(OP_TEXT, text.encode())

    def subscribe(self, channels: Sequence[str]) -> None:
        self.send_text(subscribe_request(channels))

    def start_close(self) -> None:
        if self.is_open and not self.close_sent:
            self._send(OP_CLOSE, (1000).to_bytes(2, "big"))


async def open_raw(url: str, client: Client) -> RawLink:
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname is None:
        raise ValueError(f"the raw client speaks ws:// only, not {url!r}")
    host, port = parts.hostname, parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    loop = asyncio.get_running_loop()
    _, link = await loop.create_connection(lambda: RawLink(host, port, path, client), host, port)
    try:
        await link.opened
    except BaseException:
        link.abort()
        raise
    return link


# --- a Redis pub/sub subscriber over raw TCP ------------------------------------------------


class RespLink(StreamLink):
    """A Redis pub/sub subscriber: SUBSCRIBE, then each pushed ``message`` reply's payload to
    the client, inside ``data_received`` as RawLink does. hiredis's C reader parses the RESP;
    this only sorts the replies it returns (RESP2: a push is a 3-element array)."""

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.reader = hiredis.Reader()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        reader = self.reader
        reader.feed(data)
        try:
            reply = reader.gets()
            while reply is not False:
                if type(reply) is list and len(reply) == 3 and reply[0] == b"message":
                    self.client.on_message(reply[2], now)
                else:
                    self._other(reply)
                reply = reader.gets()
        except hiredis.ProtocolError:
            self._error("resp_protocol")
            self.abort()

    def _other(self, reply: Any) -> None:
        if type(reply) is list and len(reply) == 3 and reply[0] == b"subscribe":
            self.client.confirmed(reply[1].decode())
        elif isinstance(reply, hiredis.ReplyError):
            # e.g. "ERR max number of clients reached", just before Redis closes the connection.
            self._error(f"redis {str(reply).partition(' ')[0]}")
        else:
            self.client.totals.unexpected += 1

    def _error(self, code: str) -> None:
        errors = self.client.totals.errors
        errors[code] = errors.get(code, 0) + 1

    def subscribe(self, channels: Sequence[str]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(resp_command("SUBSCRIBE", *channels))


def resp_command(*args: str) -> bytes:
    """A command as a RESP array of bulk strings (channel names may hold spaces)."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


async def open_resp(url: str, client: Client) -> RespLink:
    parts = urlsplit(url)
    if parts.scheme != "redis" or parts.hostname is None:
        raise ValueError(f"the resp client speaks redis:// only, not {url!r}")
    loop = asyncio.get_running_loop()
    host, port = parts.hostname, parts.port or 6379
    _, link = await loop.create_connection(lambda: RespLink(client), host, port)
    return link
