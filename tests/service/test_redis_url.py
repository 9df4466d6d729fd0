"""The URL forms REDIS_URL and the feeder's --redis-url take, Sentinel's included."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from service.protocol.stream import AsyncRedis, check_url, parse_sentinel_url, redact, sync_client
from tests.clients.commands import ROOT
from tests.conftest import TIMEOUT


@pytest.mark.parametrize(
    ("url", "sentinels", "service", "db"),
    [
        ("redis+sentinel://127.0.0.1:26379/mymaster/0", [("127.0.0.1", 26379)], "mymaster", 0),
        ("redis+sentinel://sentinel-a/results", [("sentinel-a", 26379)], "results", 0),
        (
            "redis+sentinel://:pw@a:26379,b:26380,[::1]:26381/mymaster/3",
            [("a", 26379), ("b", 26380), ("::1", 26381)],
            "mymaster",
            3,
        ),
    ],
)
def test_a_sentinel_url_names_its_sentinels_service_and_database(
    url: str, sentinels: list[tuple[str, int]], service: str, db: int
) -> None:
    target = parse_sentinel_url(url)
    assert target is not None
    assert list(target.sentinels) == sentinels
    assert target.service == service
    redis = AsyncRedis(url)
    assert redis.options["db"] == db


def test_credentials_go_to_redis_and_sentinel_credentials_to_the_sentinels() -> None:
    url = (
        "redis+sentinel://seatcast:redis-pw@s1,s2/mymaster/0"
        "?sentinel_username=watcher&sentinel_password=sentinel-pw&socket_timeout=3"
    )
    redis = AsyncRedis(url)
    assert (redis.options["username"], redis.options["password"]) == ("seatcast", "redis-pw")
    assert redis.options["socket_timeout"] == 3.0
    assert "sentinel_password" not in redis.options
    assert redis.sentinel is not None
    sentinel_options = redis.sentinel.sentinel_kwargs
    assert sentinel_options["username"] == "watcher"
    assert sentinel_options["password"] == "sentinel-pw"
    assert sentinel_options["socket_timeout"] == 3.0


def test_rediss_sentinel_speaks_tls_to_redis_and_to_the_sentinels() -> None:
    redis = AsyncRedis("rediss+sentinel://:pw@s1/mymaster/0?ssl_ca_certs=/etc/ca.crt")
    assert redis.options["ssl"] is True
    assert redis.options["ssl_ca_certs"] == "/etc/ca.crt"
    assert redis.sentinel is not None
    assert redis.sentinel.sentinel_kwargs["ssl"] is True
    assert redis.sentinel.sentinel_kwargs["ssl_ca_certs"] == "/etc/ca.crt"
    client = redis.client()
    assert "SSL" in client.connection_pool.connection_class.__name__


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis+sentinel:///mymaster/0", "no Sentinel address"),
        ("redis+sentinel://s1:26379", "the path must be /SERVICE or /SERVICE/DB"),
        ("redis+sentinel://s1/mymaster/zero", "the database must be a number"),
        ("redis+sentinel://s1:port/mymaster", "bad Sentinel address 's1:port'"),
        ("http://s1/mymaster", "the scheme must be one of redis, rediss, unix, redis+sentinel"),
        ("redis://127.0.0.1:6379/0?colour=blue", "an option redis-py does not take"),
        ("redis://127.0.0.1:6379/0?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
    ],
)
def test_a_bad_url_is_a_clear_error_naming_it(url: str, complaint: str) -> None:
    with pytest.raises(ValueError) as raised:
        check_url(url)
    assert complaint in str(raised.value)
    with pytest.raises(ValueError):
        sync_client(url)


def test_url_options_cannot_change_what_the_service_reads() -> None:
    redis = AsyncRedis("redis://127.0.0.1:6379/0?decode_responses=true&protocol=3")
    assert (redis.options["decode_responses"], redis.options["protocol"]) == (False, 2)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis+sentinel://:pw@a:26379,b/m/0", "redis+sentinel://:***@a:26379,b/m/0"),
        (
            "redis+sentinel://u:pw@a/m?sentinel_password=spw&socket_timeout=1",
            "redis+sentinel://u:***@a/m?sentinel_password=***&socket_timeout=1",
        ),
        ("unix:///tmp/sc/redis.sock", "unix:///tmp/sc/redis.sock"),
    ],
)
def test_passwords_are_never_shown(url: str, shown: str) -> None:
    assert redact(url) == shown


async def test_the_service_refuses_a_bad_redis_url_at_start_with_the_reason() -> None:
    url = "redis+sentinel://:hunter2@s1/mymaster/zero"
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "service", "--redis-url", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 2
    assert "the database must be a number" in result.stderr
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr
