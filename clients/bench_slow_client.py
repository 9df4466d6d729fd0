"""Does a client that never reads delay the others? A measurement, not a test.

Starts ``python -m service`` on a stream of its own, connects one fast client (and, in the
second run, a stalled one that subscribes to every state channel and the declarations log
and then never reads), XADDs the 2024 night followed by corrections at a steady rate, and
prints the fast client's XADD-to-receipt latency for both runs.

    python -m clients.bench_slow_client [--redis-url URL] [--events N] [--rate R]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import orjson
import redis.asyncio as aioredis
import websockets

from clients.loadgen import histogram
from clients.night import load_night


def corrections(declarations: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """``count`` corrections: the runner-up's votes moved, the winner unchanged."""
    events = []
    for number in range(count):
        event = declarations[number % len(declarations)]
        runner_up = dict(event["candidates"][1])
        runner_up["votes"] -= (
            1 + number // len(declarations) + (number % 2) * runner_up["votes"] // 3
        )
        events.append(
            {**event, "candidates": [event["candidates"][0], runner_up, *event["candidates"][2:]]}
        )
    return events


async def run(
    redis_url: str, events: list[dict[str, Any]], rate: float, stalled: bool
) -> list[float]:
    stream = f"bench:{uuid.uuid4().hex[:8]}:events"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "REDIS_URL": redis_url, "SEATCAST_STREAM": stream, "PORT": str(port)}
    # Started once, before anything is measured.
    server = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "service", "--log-level", "warning"], env=env
    )
    redis = aioredis.Redis.from_url(redis_url)
    latencies: list[float] = []
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(200):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            seats = list(
                (await http.get(f"http://127.0.0.1:{port}/api/constituencies")).json()["data"]
            )
        url = f"ws://127.0.0.1:{port}/ws"
        async with contextlib.AsyncExitStack() as stack:
            if stalled:
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", port))
                slow = await stack.enter_async_context(
                    websockets.connect(url, sock=sock, max_queue=1, compression=None)
                )
                channels = ["national", "declarations", *(f"constituency:{s}" for s in seats)]
                await slow.send(orjson.dumps({"op": "subscribe", "channels": channels}).decode())
            fast = await stack.enter_async_context(websockets.connect(url, compression=None))
            await fast.recv()
            await fast.send('{"op": "subscribe", "channels": ["national"]}')
            await fast.recv()
            sent: dict[str, float] = {}

            async def publish() -> None:
                for event in events:
                    entry = await redis.xadd(stream, {"event": orjson.dumps(event)})
                    sent[entry.decode() if isinstance(entry, bytes) else entry] = time.time()
                    await asyncio.sleep(1 / rate)

            publisher = asyncio.create_task(publish())
            async with asyncio.timeout(len(events) / rate + 60):
                while True:
                    try:
                        async with asyncio.timeout(1.0):
                            frame = await fast.recv()
                    except TimeoutError:
                        if publisher.done():
                            break  # everything sent, and a second of quiet: all arrived
                        continue
                    received = time.time()
                    seq = orjson.loads(frame)["seq"]
                    if seq in sent:
                        latencies.append(received - sent[seq])
            await publisher
    finally:
        server.terminate()
        server.wait(10)
        await redis.delete(stream, f"{stream}:rejected")
        await redis.aclose()
    return latencies


def summary(name: str, latencies: list[float]) -> str:
    """One row: the quantiles by the load generator's rule (:mod:`clients.loadgen.histogram`)."""
    recorded = histogram.of(seconds * 1000 for seconds in latencies)
    figures = [histogram.quantile(recorded, q) for q in (0.5, 0.95, 0.99)]
    figures.append(histogram.maximum(recorded))
    cells = " ".join("       -" if ms is None else f"{ms:>8.2f}" for ms in figures)
    return f"{name:<28} {len(latencies):>7} {cells}"


def main() -> None:
    parser = argparse.ArgumentParser(description="Does a client that never reads delay the others?")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--events", type=int, default=3000, help="events to send (default 3000)")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second (default 200)")
    args = parser.parse_args()
    night = [e for e in load_night("uk-2024") if e["type"] == "declaration"]
    events = (night + corrections(night, max(0, args.events - len(night))))[: args.events]
    print(f"{'run':<28} {'msgs':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for stalled in (False, True):
        latencies = asyncio.run(run(args.redis_url, events, args.rate, stalled))
        print(summary("with a stalled client" if stalled else "fast client alone", latencies))


if __name__ == "__main__":
    main()
