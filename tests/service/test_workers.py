"""``--workers N``: independent service processes sharing one port (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from tests.service.conftest import NIGHT_2024, xadd
from tests.service.test_process import closed_code, service_process, subscribed, wait_ready

pytestmark = pytest.mark.slow


def alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


async def test_workers_share_the_port_serve_everyone_and_stop_together(
    redis_url: str, stream_key: str, redis: aioredis.Redis
) -> None:
    env = {"REDIS_URL": redis_url, "SEATCAST_STREAM": stream_key, "SEATCAST_WORKERS": "2"}
    with service_process(env) as (process, port):
        await wait_ready(port)
        async with asyncio.timeout(10):
            while len(children(process.pid)) < 2:  # the spawn helper may show first
                await asyncio.sleep(0.05)
        workers = children(process.pid)
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(subscribed(port)) for _ in range(40)]
            [entry] = await xadd(redis, stream_key, NIGHT_2024[1])
            for ws in clients:  # whichever worker holds it, every client gets the change
                assert orjson.loads(await ws.recv())["seq"] == entry
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            codes = await asyncio.gather(*(closed_code(ws) for ws in clients))
            assert set(codes) <= {1001, 1012}
            await asyncio.to_thread(process.wait, 5)
            assert time.monotonic() - started < 5
        assert process.returncode == 0
        assert all(not alive(pid) for pid in workers)
