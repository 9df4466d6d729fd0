"""``python -m service`` as a real process: embedded Redis, SIGTERM, readiness."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import redis.asyncio as aioredis
import websockets
from websockets.exceptions import ConnectionClosed

from tests.conftest import TIMEOUT
from tests.service.conftest import NIGHT_2024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(pid: int, port: int) -> set[int]:
    """``pid`` and the processes under it that listen on ``port``."""
    found = set()
    parent = psutil.Process(pid)
    for process in [parent, *parent.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):  # gone meanwhile
            for connection in process.net_connections(kind="tcp"):
                if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
                    found.add(process.pid)
    return found


@contextlib.contextmanager
def service_process(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``python -m service``, yielded once it listens on a port of its own; killed after.

    A port found free may be taken before the service binds it (by any process on the
    machine, an outgoing connection's ephemeral port included): the service then exits
    saying so, and is started again on another port."""
    for _ in range(3):
        port = free_port()
        full_env = {**os.environ, **env, "PORT": str(port), "HOST": "127.0.0.1"}
        # Its output goes to a file: a pipe that nobody reads could fill and stall it.
        with tempfile.TemporaryFile() as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "service", "--log-level", "warning"],
                env=full_env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            try:
                deadline = time.monotonic() + TIMEOUT
                while process.poll() is None and not listening(process.pid, port):
                    assert time.monotonic() < deadline, f"the service never listened on {port}"
                    time.sleep(0.05)
                if process.poll() is None:
                    try:
                        yield process, port
                    except BaseException:
                        output.seek(0)  # shown with the failure (pytest prints what was captured)
                        print("the service's output:", output.read().decode(errors="replace"))
                        raise
                    return
                output.seek(0)
                said = output.read().decode(errors="replace")
                assert "address already in use" in said.lower(), f"the service exited: {said}"
            finally:
                if process.poll() is None:
                    process.kill()
                process.wait(TIMEOUT)
    raise AssertionError("three ports found free were taken before the service bound them")


async def wait_ready(port: int) -> None:
    async with asyncio.timeout(TIMEOUT), httpx.AsyncClient() as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def subscribed(port: int) -> AsyncIterator[websockets.ClientConnection]:
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=TIMEOUT) as ws:
        await ws.recv()
        await ws.send('{"op": "subscribe", "channels": ["national"]}')
        await ws.recv()
        yield ws


async def closed_code(ws: websockets.ClientConnection) -> int | None:
    async with asyncio.timeout(TIMEOUT):
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.recv()
    assert ws.close_code is not None
    return ws.close_code


@pytest.mark.slow
async def test_with_no_redis_url_it_runs_its_own_redis_and_stops_it_on_sigterm() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="sc-", dir="/tmp"))
    env = {"SEATCAST_DATA_DIR": str(data_dir), "SEATCAST_STREAM": "election:events"}
    with service_process({**env, "REDIS_URL": ""}) as (process, port):
        await wait_ready(port)
        assert (data_dir / "redis.sock").exists()
        assert "appendonly yes" in (data_dir / "redis.conf").read_text()
        async with subscribed(port) as ws:
            process.send_signal(signal.SIGTERM)
            assert await closed_code(ws) in (1001, 1012)
            await asyncio.to_thread(process.wait, TIMEOUT)
        assert process.returncode == 0
        assert not (data_dir / "redis.sock").exists()


@pytest.mark.slow
async def test_sigterm_closes_every_client_with_1012_and_exits_with_0_while_events_flow(
    redis_url: str, stream_key: str, redis: aioredis.Redis
) -> None:
    with service_process({"REDIS_URL": redis_url, "SEATCAST_STREAM": stream_key}) as (
        process,
        port,
    ):
        await wait_ready(port)
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(subscribed(port)) for _ in range(50)]

            async def load() -> None:  # the night goes on while the service stops
                for line in NIGHT_2024:
                    await redis.xadd(stream_key, {"event": line})
                    await asyncio.sleep(0.002)

            feeding = asyncio.create_task(load())
            await asyncio.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            codes = await asyncio.gather(*(closed_code(ws) for ws in clients))
            assert set(codes) <= {1001, 1012}
            await asyncio.to_thread(process.wait, TIMEOUT)
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding
        assert process.returncode == 0


async def test_a_bad_election_file_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"id": "x", "name": "X", "parties": {}}')
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "service", "--election", str(broken), "--redis-url", "redis://x"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 2
    assert str(broken) in result.stderr
    assert "parties" in result.stderr
