"""Running the PA adapter (and the feeder writing PA files) as real processes, for the tests."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from clients.night import load_night
from clients.pa.writer import PaWriter
from service import data
from service.core.election import Election, load_election
from service.settings import Settings
from tests.clients.commands import Run, run_module
from tests.conftest import TIMEOUT

PETERBOROUGH = "E14001425"
AT = datetime(2024, 7, 5, 3, 0, tzinfo=UTC)
_SUMMARY = re.compile(
    r"(\d+) files read, (\d+) events written, (\d+) quarantined, (\d+) skipped as already written"
)


@dataclass(frozen=True)
class Summary:
    read: int
    written: int
    quarantined: int
    skipped: int


def summary(run_stderr: str) -> Summary:
    found = _SUMMARY.findall(run_stderr)
    assert found, run_stderr
    return Summary(*(int(n) for n in found[-1]))


def pa_env(redis_url: str, stream: str, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "SEATCAST_STREAM", "SEATCAST_DATA_DIR", "SEATCAST_ELECTION")
    }
    env.update(REDIS_URL=redis_url, SEATCAST_STREAM=stream, **extra)
    return env


async def run_pa(*args: str, env: dict[str, str]) -> Run:
    """``python -m clients.pa args``, bounded by a generous multiple of TIMEOUT."""
    return await run_module("clients.pa", *args, env=env, seconds=4 * TIMEOUT)


async def write_night(out: Path, *args: str) -> Run:
    """The bundled 2024 night as PA files in ``out``, as fast as possible."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "SEATCAST_STREAM")}
    run = await run_module(
        "clients.feeder",
        "--format",
        "pa",
        "--out",
        str(out),
        "--speed",
        "0",
        *args,
        env=env,
        seconds=4 * TIMEOUT,
    )
    assert run.code == 0, run.stderr
    return run


def bundled() -> Election:
    return load_election(data.election_path("uk-2024"))


def declaration(seat: str) -> dict[str, Any]:
    return next(
        e for e in load_night("uk-2024") if e["type"] == "declaration" and e["constituency"] == seat
    )


def result_file(election: Election, seat: str, revision: int = 1) -> tuple[str, bytes]:
    """The name and content of the seat's PA result file, made from the bundled night."""
    writer = PaWriter(election)
    name = f"{writer.prefix}_result_{seat}_{revision}.xml"
    return name, writer.result(declaration(seat), revision, AT)


def service_settings(redis_url: str, stream: str, **overrides: Any) -> Settings:
    return Settings(redis_url=redis_url, stream=stream, host="127.0.0.1", port=0, **overrides)


@pytest.fixture
async def pa_stream(redis: aioredis.Redis, stream_key: str) -> AsyncIterator[str]:
    """A stream of the test's own; its record of written PA files goes with it."""
    yield stream_key
    await redis.delete(f"{stream_key}:pa:written")
