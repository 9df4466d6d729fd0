"""Writing pre-encoded bytes straight to a connection's socket, below asyncio's buffer."""

from __future__ import annotations

import asyncio
import os


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
