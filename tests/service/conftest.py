"""A running seatcast (real uvicorn, real sockets on 127.0.0.1:0) on a stream of its own."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection

from service import data
from service.app import create_app
from service.server import uvicorn_config
from service.settings import Settings
from tests.conftest import TIMEOUT
from tests.nginx import Nginx, require_nginx, run_nginx

NIGHT_2024 = [line for line in data.night_path("uk-2024").read_text().splitlines() if line]


@dataclasses.dataclass
class RunningService:
    settings: Settings
    server: uvicorn.Server
    task: asyncio.Task[None]

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            return await client.get(self.http + path)

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, TIMEOUT)


@contextlib.asynccontextmanager
async def run_service(
    settings: Settings, *, wait_ready: bool = True
) -> AsyncIterator[RunningService]:
    """Start the service in this event loop; yield once it is ready; stop it after."""
    config = uvicorn_config(settings, create_app(settings))
    config.log_level = "warning"
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    running = RunningService(settings, server, task)
    try:
        async with asyncio.timeout(TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
            while wait_ready and (await running.get("/readyz")).status_code != 200:
                await asyncio.sleep(0.02)
        yield running
    finally:
        if not task.done():
            await running.stop()


@pytest.fixture
def make_settings(redis_url: str, stream_key: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        base = Settings(redis_url=redis_url, stream=stream_key, host="127.0.0.1", port=0)
        return dataclasses.replace(base, **overrides)

    return make


@pytest.fixture
async def service(make_settings: Callable[..., Settings]) -> AsyncIterator[RunningService]:
    async with run_service(make_settings()) as running:
        yield running


async def xadd(redis: aioredis.Redis, stream: str, *events: str | dict[str, Any]) -> list[str]:
    """Add events (JSON text or objects) as entries with one field, ``event``."""
    ids = []
    for event in events:
        value = event if isinstance(event, str) else orjson.dumps(event)
        ids.append((await redis.xadd(stream, {"event": value})).decode())
    return ids


class Client:
    """A bare protocol client for tests: send requests, receive decoded messages."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    async def send(self, request: dict[str, Any]) -> None:
        await self.connection.send(orjson.dumps(request).decode())

    async def receive(self) -> dict[str, Any]:
        async with asyncio.timeout(TIMEOUT):
            message: dict[str, Any] = orjson.loads(await self.connection.recv())
            return message

    async def receive_until(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        while True:
            message = await self.receive()
            if predicate(message):
                return message

    async def subscribe(self, *channels: str, **extra: Any) -> None:
        await self.send({"op": "subscribe", "channels": list(channels), **extra})


@contextlib.asynccontextmanager
async def connect(service: RunningService, **options: Any) -> AsyncIterator[Client]:
    async with websockets.connect(service.ws, open_timeout=TIMEOUT, **options) as connection:
        yield Client(connection)


@pytest.fixture
async def nginx(service: RunningService) -> AsyncIterator[Nginx]:
    """nginx in front of the ``service`` fixture's service, as deploy/nginx.conf sets it up
    (``url``), and behind a proxy that blocks websockets (``blocking_url``)."""
    require_nginx()
    async with run_nginx(service.port) as running:
        yield running
