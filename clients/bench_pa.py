"""The PA adapter, measured: a whole night read with ``--once``, and file-to-websocket latency.

``once``: the 2024 night as PA files (650 results, 650 rushes, 14 state-of-parties files) in a
folder, read by ``python -m clients.pa --once`` onto a fresh stream; the process's wall time.

``follow``: the service and ``python -m clients.pa --dir`` (following) run as processes; the
night's files land in the folder one by one, ``--gap`` seconds apart (renamed into place, as an
FTP upload lands), and a websocket client on ``declarations`` notes when each rush and result
arrives; latency is arrival minus landing. A measurement, not a test:

    python -m clients.bench_pa once [--runs R] [--redis-url URL]
    python -m clients.bench_pa follow [--gap SECONDS] [--seats N] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson
import redis.asyncio as aioredis
import websockets

from clients.night import limit_plan, load_night, plan_night
from clients.pa.files import PaResult, parse_pa
from clients.pa.mapping import Mapper
from clients.pa.writer import PaOutput, PaWriter
from service import data
from service.core.election import load_election

DEADLINE = 600.0  # seconds: every wait here ends by then


def night_files(seats: int | None = None) -> tuple[list[PaOutput], Mapper]:
    election = load_election(data.election_path("uk-2024"))
    plan = plan_night(load_night("uk-2024"), flashes=True)
    if seats is not None:
        plan = limit_plan(plan, seats)
    return PaWriter(election).files(plan), Mapper(election)


def env_for(redis_url: str, stream: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": redis_url, "SEATCAST_STREAM": stream, **extra}


async def cleanup(redis_url: str, stream: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.delete(stream, f"{stream}:rejected", f"{stream}:pa:written")
    finally:
        await client.aclose()


async def once(redis_url: str, runs: int) -> None:
    outputs, _ = night_files()
    kinds = {k: sum(f"_{k}_" in o.name for o in outputs) for k in ("result", "rush")}
    print(
        f"{len(outputs)} files: {kinds['result']} results, {kinds['rush']} rushes, "
        f"{len(outputs) - sum(kinds.values())} state-of-parties"
    )
    with tempfile.TemporaryDirectory(prefix="bench-pa-") as folder:
        for output in outputs:
            (Path(folder) / output.name).write_bytes(output.content)
        times = []
        for _ in range(runs):
            stream = f"bench:{uuid.uuid4().hex[:8]}:events"
            started = time.monotonic()
            done = subprocess.run(  # noqa: ASYNC221 - the thing being timed
                [sys.executable, "-m", "clients.pa", "--dir", folder, "--once"],
                env=env_for(redis_url, stream),
                capture_output=True,
                text=True,
                timeout=DEADLINE,
            )
            times.append(time.monotonic() - started)
            await cleanup(redis_url, stream)
            if done.returncode != 0:
                raise SystemExit(done.stderr)
            print(done.stderr.strip().splitlines()[-1])
    shown = ", ".join(f"{t:.2f}" for t in times)
    print(f"--once over the whole night: {min(times):.2f} s (best of {runs}: {shown})")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def follow(redis_url: str, gap: float, seats: int | None) -> None:
    outputs, mapper = night_files(seats)
    stream = f"bench:{uuid.uuid4().hex[:8]}:events"
    port = free_port()
    env = env_for(redis_url, stream, PORT=str(port))
    service = subprocess.Popen(  # noqa: ASYNC220 - a process to measure, started once
        [sys.executable, "-m", "service", "--log-level", "warning"], env=env
    )
    with tempfile.TemporaryDirectory(prefix="bench-pa-") as folder:
        adapter = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "clients.pa", "--dir", folder],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(DEADLINE):
                await ready(port)
                latencies = await measure(port, Path(folder), outputs, mapper, gap)
        finally:
            for process in (adapter, service):
                process.terminate()
                process.wait(30)
            await cleanup(redis_url, stream)
    latencies.sort()

    def pick(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    print(
        f"{len(latencies)} rushes and results, one every {gap * 1000:.0f} ms: file landed -> "
        f"websocket p50 {pick(0.5) * 1000:.1f} ms, p99 {pick(0.99) * 1000:.1f} ms, "
        f"max {latencies[-1] * 1000:.1f} ms"
    )


async def ready(port: int) -> None:
    async with httpx.AsyncClient() as http:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)


def arrival_key(output: PaOutput, mapper: Mapper) -> tuple[str, str] | None:
    """(seat, kind) of the declarations event a file makes; None for state-of-parties files."""
    parsed = parse_pa(output.content)
    event = mapper.to_event(parsed).event
    if event["type"] not in ("declaration", "flash"):
        return None
    corrected = isinstance(parsed, PaResult) and parsed.revision > 1
    return event["constituency"], "correction" if corrected else event["type"]


async def measure(
    port: int, folder: Path, outputs: list[PaOutput], mapper: Mapper, gap: float
) -> list[float]:
    keys = [arrival_key(output, mapper) for output in outputs]
    expected = sum(key is not None for key in keys)
    landed: dict[tuple[str, str], float] = {}
    latencies: list[float] = []
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
        await ws.send(orjson.dumps({"op": "subscribe", "channels": ["declarations"]}).decode())

        async def receive() -> None:
            while len(latencies) < expected:
                message = orjson.loads(await ws.recv())
                if message.get("type") != "event":
                    continue
                arrived = time.monotonic()
                data = message["data"]
                key = (data["constituency"]["id"], data["kind"])
                if key in landed:
                    latencies.append(arrived - landed.pop(key))

        receiver = asyncio.create_task(receive())
        for output, key in zip(outputs, keys, strict=True):
            partial = folder / f".{output.name}.part"
            partial.write_bytes(output.content)
            os.replace(partial, folder / output.name)
            if key is not None:
                landed[key] = time.monotonic()
            await asyncio.sleep(gap)
        await receiver
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description="Measure the PA adapter.")
    parser.add_argument("what", choices=("once", "follow"))
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--runs", type=int, default=3, help="once: runs to time (default 3)")
    parser.add_argument(
        "--gap", type=float, default=0.02, help="follow: seconds between files (default 0.02)"
    )
    parser.add_argument("--seats", type=int, default=None, help="follow: the first N seats only")
    args = parser.parse_args()
    if args.what == "once":
        asyncio.run(once(args.redis_url, args.runs))
    else:
        asyncio.run(follow(args.redis_url, args.gap, args.seats))


if __name__ == "__main__":
    main()
