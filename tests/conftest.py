"""Shared fixtures: a real Redis for every test that needs one.

The Redis at ``REDIS_URL`` when it is set; otherwise the embedded redis-server that the
service itself would start, so the suite runs on a machine with nothing installed.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings

from service.embedded import EmbeddedRedis

# One bound for every wait in the suite: long enough for a loaded CI machine, short enough
# that a hang fails quickly.
TIMEOUT = 15.0

# Properties are checked by what they find, never by how fast: on a loaded machine an
# example may take longer than hypothesis's default deadline (200 ms), and drawing one
# longer than its "too slow" health check allows.
settings.register_profile("seatcast", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("seatcast")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    # Unix socket paths are limited to ~107 bytes: keep the directory short.
    data_dir = Path(tempfile.mkdtemp(prefix="sc-redis-", dir="/tmp"))
    with EmbeddedRedis(data_dir) as embedded:
        yield embedded.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def stream_key(redis: aioredis.Redis) -> AsyncIterator[str]:
    """A stream key of this test's own, deleted (with its rejected stream) afterwards."""
    key = f"test:{uuid.uuid4().hex[:12]}:events"
    yield key
    await redis.delete(key, f"{key}:rejected")
