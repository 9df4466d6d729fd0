"""Webhook targets that misbehave at the HTTP level: one that answers but never ends its
body (it could send without end, into the service's memory), and one that trickles its
answer's headers so that no single read ever times out. Real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from service.settings import Settings
from tests.conftest import TIMEOUT
from tests.service.conftest import run_service
from tests.service.test_webhooks import metric_reaches

# Every trickle is bounded: at most this many bytes, one every TRICKLE seconds.
TRICKLE = 0.2
TRICKLED_BYTES = int(2 * TIMEOUT / TRICKLE)


@contextlib.asynccontextmanager
async def trickling(headers_first: bool) -> AsyncIterator[str]:
    """A target that sends its answer one byte at a time: the whole header at once and then
    a body that does not end (``headers_first``), or the header itself a byte at a time."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n"

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read(65536)
            if headers_first:
                writer.write(head)
                pieces = [b"x" * 4096] * TRICKLED_BYTES
            else:
                # Longer in coming than a test waits: only the service's own bound ends it.
                slow = b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * TRICKLED_BYTES + b"\r\n\r\n"
                pieces = [slow[i : i + 1] for i in range(len(slow))]
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(TRICKLE)
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/national"
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 1)


async def test_a_target_that_answers_200_and_never_ends_its_body_is_counted_as_sent(
    make_settings: Callable[..., Settings],
) -> None:
    async with trickling(headers_first=True) as url:
        settings = make_settings(webhooks=url, webhook_timeout=1.0)
        async with run_service(settings) as service:
            # Counted once the head is in: the endless body is never read.
            sent = await metric_reaches(service, "seatcast_webhook_sent", url, lambda n: n >= 1)
            assert sent >= 1


async def test_a_target_that_trickles_its_headers_fails_after_the_timeout(
    make_settings: Callable[..., Settings],
) -> None:
    async with trickling(headers_first=False) as url:
        settings = make_settings(webhooks=url, webhook_timeout=1.0)
        async with run_service(settings) as service:
            failed = await metric_reaches(service, "seatcast_webhook_failed", url, lambda n: n >= 1)
            assert failed >= 1
