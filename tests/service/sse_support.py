"""An EventSource-like test client for /sse: httpx with httpx-sse, one stream at a time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
from httpx_sse import EventSource, aconnect_sse

from tests.conftest import TIMEOUT


class SseClient:
    """Reads one /sse response: each event decoded, with the last event id as a browser
    keeps it (an event without ``id:`` leaves it as it was)."""

    def __init__(self, source: EventSource) -> None:
        self.source = source
        self.response = source.response
        self._events = source.aiter_sse()
        self.last_id = ""
        self.retry: int | None = None

    async def receive(self) -> dict[str, Any]:
        async with asyncio.timeout(TIMEOUT):
            event = await anext(self._events)
            while not event.data:  # a comment after an id: no event, for a browser
                event = await anext(self._events)
        message: dict[str, Any] = orjson.loads(event.data)
        assert message["type"] == event.event, (event.event, event.data)
        self.last_id = event.id
        if event.retry is not None:
            self.retry = event.retry
        return message

    async def receive_until(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        while True:
            message = await self.receive()
            if predicate(message):
                return message

    async def ended(self) -> bool:
        """Whether the server ends the response (rather than sending another event)."""
        try:
            async with asyncio.timeout(TIMEOUT):
                while not (await anext(self._events)).data:
                    pass
        except StopAsyncIteration:
            return True
        return False


@contextlib.asynccontextmanager
async def sse(
    base: str,
    channels: str | None,
    *,
    headers: dict[str, str] | None = None,
    **params: str,
) -> AsyncIterator[SseClient]:
    """Open ``base/sse?channels=...`` (``channels`` None: no such parameter)."""
    query = {**params} if channels is None else {"channels": channels, **params}
    async with (
        httpx.AsyncClient(timeout=TIMEOUT) as client,
        aconnect_sse(
            client, "GET", base + "/sse", params=query, headers=dict(headers or {})
        ) as source,
    ):
        yield SseClient(source)


async def refused(base: str, query: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """The answer to an /sse request that is expected not to stream."""
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.get(base + "/sse" + query, headers=headers)
        assert response.headers["content-type"].startswith("application/json"), response.text
        return response
