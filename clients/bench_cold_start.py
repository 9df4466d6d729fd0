"""Time to ready: how long a fresh ``python -m service`` takes to apply a long stream.

Fills a stream of its own with the 2024 night followed by corrections (the runner-up's votes
moved, the winner kept) up to N entries, starts the service as a process on it, and times
``GET /readyz`` turning 200. A measurement, not a test:

    python -m clients.bench_cold_start [--events N] [--redis-url URL] [--runs R]
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

from clients.bench_slow_client import corrections
from clients.night import load_night


async def fill(redis: aioredis.Redis, stream: str, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), 10_000):
        pipe = redis.pipeline(transaction=False)
        for event in events[start : start + 10_000]:
            pipe.xadd(stream, {"event": orjson.dumps(event)})
        await pipe.execute()


async def time_to_ready(redis_url: str, stream: str) -> float:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "REDIS_URL": redis_url, "SEATCAST_STREAM": stream, "PORT": str(port)}
    started = time.monotonic()
    server = subprocess.Popen(  # noqa: ASYNC220 - the thing being timed
        [sys.executable, "-m", "service", "--log-level", "warning"], env=env
    )
    try:
        async with httpx.AsyncClient() as http, asyncio.timeout(300):
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        return time.monotonic() - started
                await asyncio.sleep(0.02)
    finally:
        server.terminate()
        server.wait(10)


async def run(redis_url: str, count: int, runs: int) -> list[float]:
    declarations = [e for e in load_night("uk-2024") if e["type"] == "declaration"]
    night = load_night("uk-2024")
    events = (night + corrections(declarations, max(0, count - len(night))))[:count]
    stream = f"bench:{uuid.uuid4().hex[:8]}:events"
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await fill(redis, stream, events)
        return [await time_to_ready(redis_url, stream) for _ in range(runs)]
    finally:
        await redis.delete(stream, f"{stream}:rejected")
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description="Time a fresh service to ready on a long stream.")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--events", type=int, default=100_000, help="entries (default 100,000)")
    parser.add_argument("--runs", type=int, default=3, help="starts to time (default 3)")
    args = parser.parse_args()
    times = asyncio.run(run(args.redis_url, args.events, args.runs))
    shown = ", ".join(f"{t:.2f}" for t in times)
    print(f"{args.events:,} entries: ready in {min(times):.2f} s (best of {len(times)}: {shown})")


if __name__ == "__main__":
    main()
