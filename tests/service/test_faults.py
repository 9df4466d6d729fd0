"""Faults on election night, with real processes: Redis stops, instances die and restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import json_merge_patch
import orjson
import pytest
import redis.asyncio as aioredis
import websockets
from redis.exceptions import RedisError
from websockets.exceptions import ConnectionClosed

from service.core.events import Event
from service.core.seq import Seq
from service.embedded import EmbeddedRedis
from service.feed import Feed, Rejection
from service.runtime import stop_feed
from service.settings import Settings
from tests.conftest import TIMEOUT
from tests.core.builders import bundled_election
from tests.service.conftest import NIGHT_2024, connect, run_service, xadd
from tests.service.redis_processes import RedisProcess, running
from tests.service.test_process import service_process, wait_ready

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def private_redis() -> AsyncIterator[EmbeddedRedis]:
    """A Redis of this test's own, to stop and start (append-only file on)."""
    embedded = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="sc-f-", dir="/tmp")))
    await asyncio.to_thread(embedded.start)
    try:
        yield embedded
    finally:
        await asyncio.to_thread(embedded.stop)


async def test_redis_stopping_mid_night_keeps_clients_and_state_and_loses_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    async with private_redis() as embedded:
        settings = make_settings(redis_url=embedded.url)
        redis = aioredis.Redis.from_url(embedded.url)
        try:
            async with run_service(settings) as service, connect(service) as client:
                await client.receive()
                await client.subscribe("national", "declarations")
                national = (await client.receive())["data"]
                await client.receive()
                first = await xadd(redis, settings.stream, *NIGHT_2024[:101])
                events = 0
                while events < 100:
                    message = await client.receive()
                    if message["type"] == "delta":
                        national = json_merge_patch.merge(national, message["patch"])
                    elif message["type"] == "event":
                        events += 1
                await redis.aclose()
                await asyncio.to_thread(embedded.stop)

                # Redis is gone: alive, not ready, the last state still served, clients kept.
                assert (await service.get("/healthz")).status_code == 200
                async with asyncio.timeout(TIMEOUT):
                    while (await service.get("/readyz")).status_code != 503:
                        await asyncio.sleep(0.05)
                rest = (await service.get("/api/national")).json()
                assert rest["seq"] == first[-1]
                assert rest["data"] == national
                await client.send({"op": "ping", "id": "still there?"})
                assert (await client.receive_until(lambda m: m["type"] == "pong"))["id"]

                # Redis is back (its append-only file kept the stream): catch up, go on.
                await asyncio.to_thread(embedded.start)
                redis = aioredis.Redis.from_url(embedded.url)
                second = await xadd(redis, settings.stream, *NIGHT_2024[101:201])
                while events < 200:
                    message = await client.receive()
                    if message["type"] == "delta":
                        national = json_merge_patch.merge(national, message["patch"])
                    elif message["type"] == "event":
                        events += 1
                async with asyncio.timeout(TIMEOUT):
                    while (await service.get("/readyz")).status_code != 200:
                        await asyncio.sleep(0.05)
                rest = (await service.get("/api/national")).json()
                assert rest["seq"] == second[-1]
                assert rest["data"] == national
                metrics = (await service.get("/metrics")).text
                assert "seatcast_events_applied_total 201.0" in metrics  # none twice
            # A fresh instance reading the same stream agrees exactly.
            async with run_service(settings) as fresh:
                assert (await fresh.get("/api/national")).json() == rest
        finally:
            await redis.aclose()


async def test_after_an_outage_readyz_is_503_until_the_reader_has_caught_up_again(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Ready means caught up: Redis answering a ping is not enough while the reader is away.

    Redis comes back from its outage with the service's user unable to XREAD (an ACL), so
    that the reader stays away, for certain, while pings answer and entries are added.
    """
    admin = ("--user", "admin", "on", ">admin-password", "~*", "&*", "+@all")
    no_xread = ("--user", "default", "on", "nopass", "~*", "&*", "+@all", "-xread")
    primary = RedisProcess(tmp_path / "redis", extra=admin)
    async with running(primary):
        writer = primary.client(username="admin", password="admin-password")
        settings = make_settings(redis_url=primary.url, read_batch=20)
        try:
            async with run_service(settings) as service:
                await xadd(writer, settings.stream, *NIGHT_2024[:50])
                await primary.stop()
                async with asyncio.timeout(TIMEOUT):
                    while (await service.get("/readyz")).status_code != 503:
                        await asyncio.sleep(0.05)

                await primary.start(*no_xread)
                await writer.aclose()
                writer = primary.client(username="admin", password="admin-password")
                ids = await xadd(writer, settings.stream, *NIGHT_2024[50:350])
                ready = await service.get("/readyz")
                assert ready.status_code == 503
                assert ready.json()["redis"] == "reachable"  # and yet not ready
                assert ready.json()["reader"] == "disconnected"

                await writer.acl_setuser("default", enabled=True, commands=["+xread"])
                answers: list[httpx.Response] = []
                async with asyncio.timeout(TIMEOUT):
                    while not answers or answers[-1].status_code != 200:
                        answers.append(await service.get("/readyz"))
                        await asyncio.sleep(0.01)
                assert all(a.json()["seq"] == ids[-1] for a in answers if a.status_code == 200)
                assert answers[-1].json()["caught_up"] is True
                rest = (await service.get("/api/national")).json()
                metrics = (await service.get("/metrics")).text
                assert "seatcast_ready 1.0" in metrics
                assert "seatcast_redis_connected 1.0" in metrics
            async with run_service(settings) as fresh:
                assert (await fresh.get("/api/national")).json() == rest
        finally:
            await writer.aclose()


async def test_a_restarted_instance_rebuilds_the_identical_state(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    settings = make_settings()
    paths = ["/api/national", "/api/declarations", "/api/regions/london", "/api/nations/wales"]
    async with run_service(settings) as service:
        ids = await xadd(redis, settings.stream, *NIGHT_2024[:300], "junk")
        async with asyncio.timeout(TIMEOUT):
            while (await service.get("/readyz")).json()["seq"] != ids[-1]:
                await asyncio.sleep(0.02)
        before = [(await service.get(path)).json() for path in paths]
        before.append((await service.get("/api/constituencies")).json())
    async with run_service(settings) as again:
        after = [(await again.get(path)).json() for path in paths]
        after.append((await again.get("/api/constituencies")).json())
    assert after == before


async def test_a_client_moves_to_the_other_instance_after_kill_9_and_misses_nothing(
    redis_url: str, stream_key: str, redis: aioredis.Redis
) -> None:
    env = {"REDIS_URL": redis_url, "SEATCAST_STREAM": stream_key}
    with service_process(env) as (one, port_one), service_process(env) as (_two, port_two):
        await asyncio.gather(wait_ready(port_one), wait_ready(port_two))
        received: list[dict[str, Any]] = []
        epoch = ""
        seq = "0-0"
        subscribed = asyncio.Event()

        async def follow(port: int, stop_after: int | None) -> None:
            nonlocal epoch, seq
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=TIMEOUT) as ws:
                hello = orjson.loads(await ws.recv())
                request: dict[str, Any] = {"op": "subscribe", "channels": ["declarations"]}
                if epoch:
                    request |= {"since": {"declarations": seq}, "epoch": epoch}
                epoch = hello["epoch"]
                await ws.send(orjson.dumps(request).decode())
                first = orjson.loads(await ws.recv())
                assert first["type"] == ("resumed" if received else "snapshot")
                subscribed.set()  # the night begins once the client is listening
                with contextlib.suppress(ConnectionClosed):
                    while stop_after is None or len(received) < stop_after:
                        message = orjson.loads(await ws.recv())
                        assert message["prev"] == seq, "a gap"
                        received.append(message)
                        seq = message["seq"]
                        if len(received) == 650:
                            return

        async def feed() -> None:
            await subscribed.wait()
            await _feed_slowly(redis, stream_key)

        feeding = asyncio.create_task(feed())
        async with asyncio.timeout(TIMEOUT * 4):  # the night, across the move
            with contextlib.suppress(ConnectionClosed, OSError):
                await follow(port_one, stop_after=200)
            os.kill(one.pid, signal.SIGKILL)
            await follow(port_two, stop_after=None)
            await feeding
        assert len(received) == 650
        assert len({m["seq"] for m in received}) == 650


async def _feed_slowly(redis: aioredis.Redis, stream: str) -> None:
    for start in range(0, len(NIGHT_2024), 25):
        await xadd(redis, stream, *NIGHT_2024[start : start + 25])
        await asyncio.sleep(0.05)


async def test_a_service_without_redis_at_start_is_alive_but_not_ready() -> None:
    # Bound but not listening: connections to it are refused for as long as it is held, and
    # no other process can take the port meanwhile (as one could a port merely found free).
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        env = {"REDIS_URL": f"redis://127.0.0.1:{refusing.getsockname()[1]}/0"}
        with service_process(env) as (process, port):
            async with asyncio.timeout(TIMEOUT), httpx.AsyncClient() as client:
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        health = await client.get(f"http://127.0.0.1:{port}/healthz")
                        break
                    await asyncio.sleep(0.05)
                assert health.status_code == 200
                ready = await client.get(f"http://127.0.0.1:{port}/readyz")
                assert ready.status_code == 503
                assert ready.json()["redis"] == "unreachable"
            assert process.poll() is None


async def test_a_reader_that_swallows_its_cancellation_is_still_stopped(redis_url: str) -> None:
    """redis-py can swallow a cancellation that lands mid-command and read on; the service
    must stop anyway, so that a SIGTERM ends the process."""
    client = aioredis.Redis.from_url(redis_url)
    reading = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(TIMEOUT)
        except asyncio.CancelledError:
            pass  # swallowed, as the library can
        reading.set()
        try:
            await client.xread({f"test:{os.getpid()}:nothing": "$"}, block=0)
        except (RedisError, OSError) as exc:
            raise asyncio.CancelledError from exc  # what Feed.run does while cancelling

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0.05)
    # stop_feed gives the reader STOP_GRACE, drops its connections, then STOP_GRACE again;
    # the bound here only catches a hang (no timed assertion).
    async with asyncio.timeout(TIMEOUT):
        await stop_feed(task, client)
    assert reading.is_set()
    assert task.done()
    await client.aclose()


class Listener:
    """A reader's listener that only tells when it has caught up."""

    def __init__(self, caught_up: asyncio.Event) -> None:
        self._caught_up = caught_up

    def entry(self, seq: Seq, event: Event, *, quiet: bool) -> None: ...

    def rejected(self, rejection: Rejection) -> None: ...

    def begin(self, epoch: Seq, *, rebuild: bool) -> None: ...

    def rebuilt(self, epoch: Seq) -> None: ...

    def epoch_adopted(self, epoch: Seq) -> None: ...

    def settled(self) -> None: ...

    def caught_up(self) -> None:
        self._caught_up.set()

    def batch_done(self) -> None: ...

    def reader_connected(self, connected: bool) -> None: ...

    def lag(self, seconds: float) -> None: ...


async def test_a_reader_whose_cancellation_the_library_swallows_stops_at_its_next_read(
    redis_url: str, stream_key: str
) -> None:
    """Python 3.11's asyncio.wait_for, which redis-py wraps its writes in, loses a
    cancellation that lands as the write completes, and the command goes on: a reader that
    relied on the cancellation arriving read on for ever, and SIGTERM never ended the
    process (1 in ~10 with events flowing)."""
    client = aioredis.Redis.from_url(redis_url)
    caught_up = asyncio.Event()

    feed = Feed(
        client, stream_key, f"{stream_key}:rejected", bundled_election(), Listener(caught_up)
    )
    task = asyncio.create_task(feed.run())
    try:
        async with asyncio.timeout(TIMEOUT):
            await caught_up.wait()
        # The reader is now writing its blocking read: on 3.11 this is where it was lost.
        task.cancel()
        await asyncio.wait({task}, timeout=TIMEOUT)
        assert task.done(), "the reader read on after its cancellation"
        assert task.cancelled()
    finally:
        task.cancel()
        await client.aclose()
