"""Writing pre-encoded bytes straight to a connection's socket, below asyncio's buffer:
``write_through``, and ``DirectSink``, the base of the two transports below ASGI."""

from __future__ import annotations

import asyncio
import os
from typing import Any


def write_through(fd: int, transport: asyncio.Transport | None, data: bytes) -> None:
    """Write ``data`` with one ``os.write`` on ``fd`` (when the socket is plain, ``fd >= 0``)
    and hand what it did not take to ``transport``, whose buffer limit is zero: "writable"
    then means "the transport holds nothing", so direct writes never overtake its bytes."""
    if fd >= 0:
        try:
            sent = os.write(fd, data)
        except OSError:
            sent = 0  # full (the transport waits for it) or failing (it reports that)
        if sent == len(data):
            return
        data = data[sent:]
    assert transport is not None
    transport.write(data)


class DirectSink(asyncio.Protocol):
    """What the transports below ASGI (``/ws``, ``/sse``) share: a connection that writes
    pre-encoded bytes with ``write_through``, writable only while its transport holds
    nothing, and woken to write what is queued when it drains."""

    __slots__ = ("_fd", "_writable", "connections", "transport")

    def __init__(self, connections: set[Any]) -> None:
        self.connections = connections
        """The server's connections (uvicorn's), which it closes on shutdown."""
        self.transport: asyncio.Transport | None = None
        self._fd = -1
        self._writable = False

    def _attach(self, transport: asyncio.BaseTransport) -> asyncio.Transport:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.connections.add(self)
        transport.set_write_buffer_limits(high=0)  # paused whenever it holds anything
        sock = transport.get_extra_info("socket")
        if sock is not None and transport.get_extra_info("sslcontext") is None:
            self._fd = sock.fileno()
        return transport

    def _detach(self) -> None:
        self.connections.discard(self)
        self._writable = False

    def pause_writing(self) -> None:
        self._writable = False

    def resume_writing(self) -> None:
        self._writable = True
        self.wake()

    def wake(self) -> None:
        """Write what is queued for the client, if the socket can take it."""
        raise NotImplementedError

    def _write(self, data: bytes) -> None:
        write_through(self._fd, self.transport, data)
