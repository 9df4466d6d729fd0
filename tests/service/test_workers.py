"""``--workers N``: independent service processes sharing one port (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys

import orjson
import psutil
import pytest
import redis.asyncio as aioredis

from tests.conftest import TIMEOUT
from tests.service.conftest import NIGHT_2024, xadd
from tests.service.test_process import (
    closed_code,
    listening,
    service_process,
    subscribed,
    wait_ready,
)

pytestmark = pytest.mark.slow


def workers_of(pid: int, port: int) -> set[int]:
    """The service's workers, known by what they do: its child processes that listen on
    the port. Not "any child": multiprocessing's resource tracker is a child too, and it
    exits only just after the parent."""
    return listening(pid, port) - {pid}


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie awaiting its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_workers_share_the_port_serve_everyone_and_stop_together(
    redis_url: str, stream_key: str, redis: aioredis.Redis
) -> None:
    env = {"REDIS_URL": redis_url, "SEATCAST_STREAM": stream_key, "SEATCAST_WORKERS": "2"}
    with service_process(env) as (process, port):
        async with asyncio.timeout(TIMEOUT):
            while len(workers := workers_of(process.pid, port)) < 2:
                assert process.poll() is None, "the service exited"
                await asyncio.sleep(0.05)
        assert len(workers) == 2
        await wait_ready(port)
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(subscribed(port)) for _ in range(40)]
            [entry] = await xadd(redis, stream_key, NIGHT_2024[1])
            async with asyncio.timeout(TIMEOUT):
                for ws in clients:  # whichever worker holds it, every client gets the change
                    assert orjson.loads(await ws.recv())["seq"] == entry
            process.send_signal(signal.SIGTERM)
            codes = await asyncio.gather(*(closed_code(ws) for ws in clients))
            assert set(codes) <= {1001, 1012}
            await asyncio.to_thread(process.wait, TIMEOUT)
        assert process.returncode == 0
        # The parent returns only once it has joined (and so reaped) every worker.
        assert not [pid for pid in workers if alive(pid)]


async def test_workers_that_cannot_take_the_port_end_the_service_with_an_error(
    redis_url: str, stream_key: str
) -> None:
    with socket.socket() as taken:  # a listener without SO_REUSEPORT: nobody may share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "SEATCAST_STREAM": stream_key,
            "SEATCAST_WORKERS": "2",
            "HOST": "127.0.0.1",
            "PORT": str(port),
        }
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "service"],
            env=env,
            capture_output=True,
            timeout=TIMEOUT * 2,
        )
    assert result.returncode == 1
    said = result.stderr.decode(errors="replace")
    assert f"cannot listen on 127.0.0.1:{port}" in said
    assert "ended by itself" in said
