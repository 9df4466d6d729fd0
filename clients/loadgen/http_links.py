"""The load generator's HTTP links: an SSE subscriber and a REST poller, both minimal.

``SseLink`` reads ``GET /sse`` as :class:`connections.RawLink` reads a websocket, and for the
same reason (the client processes share the cores with the server they measure): under
``asyncio.Protocol``, each chunk handled inside ``data_received`` with no task, future or
queue per message. Of HTTP/1.1 it takes what the server and nginx send a subscriber (a
response head, then a chunked or an unframed body); of the event stream, ``data:`` and
``id:`` lines, ``retry:`` and comments passed over. Each event's data goes to
:class:`connections.Client`, which checks the seq/prev chain; the ids must not go back.

``Poller`` is what a system that can only poll does: ``GET`` each channel's REST URL once
an interval on a keep-alive connection (asyncio streams, one task per poller: a poll is
rare beside a push), with ``If-None-Match`` so that an unchanged answer is a bodiless 304,
reconnecting when the server or a proxy closes the connection between polls; or a long
poll (``?wait=``) per channel, asked again as soon as it is answered. A state
channel's answer is its state at the seq of its last change: a new seq is a delivery, and
the changes it skipped are superseded, as a slow websocket client's merged deltas are. The
``declarations`` answer lists the latest entries: each entry not seen before is a delivery,
and a list that no longer reaches back to the last entry seen is a gap.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from clients.loadgen.connections import MAX_HEAD, Client, HandshakeFailed, StreamLink

LOG = "declarations"
POLL_TIMEOUT = 10.0
"""Seconds one poll (connect, request, answer) may take before the poller reconnects."""
LONG_POLL_TIMEOUT = 90.0
"""The same for a long poll, which the server holds (25 s by default) before a 304."""
MAX_BODY = 1 << 24


def _target(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ValueError(f"the load generator's HTTP clients speak http:// only, not {url!r}")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


def _count(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


# --- Server-Sent Events ----------------------------------------------------------------------


class SseLink(StreamLink):
    """One ``GET /sse?channels=...``: every event's data to the client as it arrives."""

    def __init__(self, host: str, port: int, path: str, client: Client) -> None:
        super().__init__(client)
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
            "Cache-Control: no-cache\r\n\r\n"
        ).encode()
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.head = b""
        self.chunked = False
        self.raw = b""
        """Body bytes not yet de-chunked (a chunk's size line cut in two)."""
        self.need = 0
        """Bytes left of the current chunk's data."""
        self.skip = 0
        """Bytes left of the CRLF after a chunk's data."""
        self.text = b""
        """Event-stream text not yet ending in a blank line."""
        self.last_id: tuple[int, int] | None = None
        """The last event id's seq, as (ms, n)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.opened.done():
            data = self._head(self.head + data)
            if not data:
                return
        self._events(self._dechunk(data) if self.chunked else data, now)

    def _head(self, data: bytes) -> bytes:
        """Take the response head; return the body bytes after it (empty: not there yet)."""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            self.head = data
            if len(data) > MAX_HEAD:
                self._refused("no end to the response headers")
            return b""
        status, *lines = data[:end].split(b"\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in lines)
        }
        if status.split(b" ")[1:2] != [b"200"]:
            self._refused(status.decode(errors="replace"))
            return b""
        if not headers.get(b"content-type", b"").startswith(b"text/event-stream"):
            self._refused(f"not an event stream: {headers.get(b'content-type', b'')!r}")
            return b""
        self.chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        self.head = b""
        self.opened.set_result(None)
        return data[end + 4 :]

    def _dechunk(self, data: bytes) -> bytes:
        buffer = self.raw + data if self.raw else data
        self.raw = b""
        out: list[bytes] = []
        pos, size = 0, len(buffer)
        while pos < size:
            if self.skip:
                taken = min(self.skip, size - pos)
                pos += taken
                self.skip -= taken
            elif self.need:
                taken = min(self.need, size - pos)
                out.append(buffer[pos : pos + taken])
                pos += taken
                self.need -= taken
                if not self.need:
                    self.skip = 2
            else:
                end = buffer.find(b"\r\n", pos)
                if end < 0:
                    self.raw = buffer[pos:]
                    break
                try:
                    length = int(buffer[pos:end].partition(b";")[0], 16)
                except ValueError:
                    self._error("bad_chunk")
                    self.abort()
                    break
                pos = end + 2
                if length == 0:
                    self.start_close()  # the server ended the stream
                    break
                if pos + length + 2 <= size:  # the whole chunk is here: no state to keep
                    out.append(buffer[pos : pos + length])
                    pos += length + 2
                else:
                    self.need = length
        return out[0] if len(out) == 1 else b"".join(out)

    def _events(self, data: bytes, now: float) -> None:
        text = self.text + data if self.text else data
        if b"\r" in text:
            text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = text.rfind(b"\n\n")
        if end < 0:
            self.text = text
            return
        self.text = text[end + 2 :]
        for block in text[:end].split(b"\n\n"):
            start = block.find(b"data:")
            if start >= 0 and block.find(b"data:", start + 5) < 0:
                # One data line, as the server writes every event: sliced, not split.
                stop = block.find(b"\n", start)
                if stop < 0:
                    stop = len(block)
                skip = 6 if block[start + 5 : start + 6] == b" " else 5
                self.client.on_message(block[start + skip : stop], now)
                found = block.find(b"\nid:")  # a line's start: data holds no newline
                if found >= 0 or block.startswith(b"id:"):
                    begin = found + 1 if found >= 0 else 0
                    line_end = block.find(b"\n", begin)
                    self._check_id(block[begin + 3 : line_end if line_end >= 0 else None])
            elif start >= 0 or b"id:" in block:
                self._event(block, now)

    def _event(self, block: bytes, now: float) -> None:
        """An event as the event-stream format allows it: data over several lines."""
        payload: list[bytes] = []
        event_id = None
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                payload.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line.startswith(b"id:"):
                event_id = line[3:]
        if payload:
            self.client.on_message(b"\n".join(payload), now)
        if event_id:
            self._check_id(event_id)

    def _check_id(self, event_id: bytes) -> None:
        """``<epoch>:<seq>``: its seq must never go back."""
        ms, _, n = event_id[event_id.rfind(b":") + 1 :].partition(b"-")
        try:
            position = (int(ms), int(n))
        except ValueError:
            self._error("bad_id")
            return
        if self.last_id is not None and position < self.last_id:
            self._error("id_backwards")
        self.last_id = position

    def _error(self, code: str) -> None:
        _count(self.client.totals.errors, code)

    def _refused(self, why: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(HandshakeFailed(f"stream refused: {why}"))
        self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed before the response"))
        super().connection_lost(exc)

    def subscribe(self, channels: Sequence[str]) -> None:
        """Nothing to send: the channels are in the request, and their answers are coming."""


async def open_sse(url: str, client: Client) -> SseLink:
    host, port, prefix = _target(url)
    path = f"{prefix}/sse?channels={quote(','.join(client.chains), safe=':,')}"
    loop = asyncio.get_running_loop()
    _, link = await loop.create_connection(lambda: SseLink(host, port, path, client), host, port)
    try:
        await link.opened
    except BaseException:
        link.abort()
        raise
    return link


# --- polling the REST API ------------------------------------------------------------------


def rest_path(channel: str) -> str:
    """The REST URL path of a channel's state (``/api/...``)."""
    kind, _, name = channel.partition(":")
    if not name:
        return f"/api/{kind}"
    plural = {"constituency": "constituencies", "region": "regions", "nation": "nations"}[kind]
    return f"/api/{plural}/{quote(name)}"


class Answer:
    __slots__ = ("body", "code", "headers")

    def __init__(self, code: str, headers: dict[bytes, bytes], body: bytes) -> None:
        self.code, self.headers, self.body = code, headers, body


class KeepAlive:
    """One keep-alive HTTP/1.1 connection, opened again when the server or a proxy closed it."""

    def __init__(self, host: str, port: int, counts: dict[str, int]) -> None:
        self.host, self.port = host, port
        self.counts = counts
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def get(self, path: str, tag: bytes | None) -> Answer:
        if self.writer is None or self.writer.is_closing():
            await self.open()
            _count(self.counts, "connections")
        assert self.reader is not None and self.writer is not None
        self.writer.write(
            b"GET %b HTTP/1.1\r\nHost: %b:%d\r\n%bAccept: application/json\r\n\r\n"
            % (
                path.encode(),
                self.host.encode(),
                self.port,
                b"If-None-Match: %b\r\n" % tag if tag else b"",
            )
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, *lines = head[:-4].split(b"\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in lines)
        }
        code = status.split(b" ")[1].decode(errors="replace") if b" " in status else "?"
        body = await self._body(headers)
        if headers.get(b"connection", b"").lower() == b"close":
            self.drop()
        return Answer(code, headers, body)

    async def _body(self, headers: dict[bytes, bytes]) -> bytes:
        assert self.reader is not None
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            parts: list[bytes] = []
            while True:
                line = await self.reader.readuntil(b"\r\n")
                length = int(line.partition(b";")[0].strip(), 16)
                if length == 0:
                    await self.reader.readuntil(b"\r\n")
                    return b"".join(parts)
                parts.append((await self.reader.readexactly(length + 2))[:-2])
        length = int(headers.get(b"content-length", b"0"))
        if length > MAX_BODY:
            raise EOFError(f"a {length}-byte answer")
        return await self.reader.readexactly(length) if length else b""

    def drop(self) -> None:
        writer, self.writer, self.reader = self.writer, None, None
        if writer is not None:
            writer.transport.abort()


class Poller:
    """Polls each of a client's channels: once per ``interval`` on one connection (the first
    round at a random point of the first interval, so that pollers spread over it), or with
    ``wait``, a long poll per channel on a connection of its own, asked again as soon as it
    is answered (``?wait=`` the tag held: the server answers when the channel moves past it,
    or 304 after its long-poll timeout)."""

    def __init__(
        self, host: str, port: int, prefix: str, client: Client, interval: float, wait: bool
    ) -> None:
        self.host, self.port, self.prefix = host, port, prefix
        self.client = client
        self.interval = interval
        self.wait = wait
        self.http = client.totals.http
        self.shared = KeepAlive(host, port, self.http)
        self.tags: dict[str, bytes] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.connections: list[KeepAlive] = [self.shared]

    def subscribe(self, channels: Sequence[str]) -> None:
        if self.wait:
            for channel in channels:
                connection = self.shared if channel == channels[0] else self._another()
                self.tasks.append(asyncio.create_task(self._hold(channel, connection)))
        else:
            self.tasks.append(asyncio.create_task(self._rounds(list(channels))))

    def _another(self) -> KeepAlive:
        connection = KeepAlive(self.host, self.port, self.http)
        self.connections.append(connection)
        return connection

    async def _rounds(self, channels: list[str]) -> None:
        loop = asyncio.get_running_loop()
        tick = loop.time() + random.uniform(0, self.interval)
        while True:
            await asyncio.sleep(max(0.0, tick - loop.time()))
            tick += self.interval
            for channel in channels:
                await self._poll(channel, self.shared, POLL_TIMEOUT)
            if loop.time() > tick:
                tick = loop.time()  # fell behind: the next round now, no burst to catch up

    async def _hold(self, channel: str, connection: KeepAlive) -> None:
        while True:
            if not await self._poll(channel, connection, LONG_POLL_TIMEOUT):
                await asyncio.sleep(self.interval)  # refused or failed: not at once again

    async def _poll(self, channel: str, connection: KeepAlive, bound: float) -> bool:
        """One request; False when it failed or was refused."""
        path = self.prefix + rest_path(channel)
        tag = self.tags.get(channel)
        if self.wait and tag:
            path += "?wait=" + quote(tag.strip(b'"').decode(), safe=":")
        try:
            async with asyncio.timeout(bound):
                answer = await connection.get(path, tag)
        except (OSError, EOFError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
            _count(self.http, f"failed: {type(exc).__name__}")
            connection.drop()
            return False
        _count(self.http, answer.code)
        cache = answer.headers.get(b"x-cache-status")
        if cache:
            _count(self.http, f"cache {cache.decode(errors='replace')}")
        if answer.code == "304":
            return True
        if answer.code != "200":
            _count(self.client.totals.errors, f"http {answer.code}")
            return False
        if b"etag" in answer.headers:
            self.tags[channel] = answer.headers[b"etag"]
        self._answer(channel, answer.body, time.time())
        return True

    def _answer(self, channel: str, body: bytes, now: float) -> None:
        try:
            answer: Any = orjson.loads(body)
            seq = answer["seq"]
            data = answer["data"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            _count(self.client.totals.errors, "bad_answer")
            return
        if channel == LOG and isinstance(data, dict):
            recent = data.get("recent")
            entries = [e.get("seq") for e in recent if isinstance(e, dict)] if recent else []
            self.client.on_log(channel, seq, [e for e in entries if isinstance(e, str)], now)
        else:
            self.client.on_state(channel, seq, now)

    async def close(self) -> None:
        self.client.closing = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.abort()

    def abort(self) -> None:
        for task in self.tasks:
            task.cancel()
        for connection in self.connections:
            connection.drop()


async def open_poller(url: str, client: Client, interval: float, wait: bool = False) -> Poller:
    host, port, prefix = _target(url)
    poller = Poller(host, port, prefix, client, interval, wait)
    await poller.shared.open()
    return poller
