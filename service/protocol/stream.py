"""How to reach the stream: Redis clients from a URL (``redis://``, ``rediss://``, ``unix://``
or a Sentinel's), and where a local service's embedded Redis listens.

A Sentinel URL names the Sentinels and the primary they watch; its clients ask the Sentinels
where the primary is whenever they (re)connect, and so follow a failover::

    redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/SERVICE[/DB][?OPTIONS]
    rediss+sentinel://...    TLS to the Sentinels and to Redis

The user and password are Redis's, as in ``redis://``. Sentinels that need credentials of their
own take them as the options ``sentinel_username`` and ``sentinel_password``. Every other
option is one of redis-py's URL options (``socket_timeout``, ``ssl_ca_certs``, ...) and applies
to Redis and to the Sentinels. The service and every publisher (the feeder, the PA adapter)
share this module: one URL form for all commands.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.connection as aioconnection
import redis.asyncio.sentinel as aiosentinel
import redis.connection
import redis.sentinel

EMBEDDED_SOCKET = "redis.sock"
"""The unix socket, in the service's data dir, of the Redis it starts when given no URL: a
publisher given no URL writes there, to the service running in the same directory."""


def embedded_url(data_dir: Path) -> str:
    """The URL of the embedded Redis of a service whose data dir is ``data_dir``."""
    return "unix://" + quote(os.path.abspath(data_dir / EMBEDDED_SOCKET))


SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
"""Scheme → whether it is TLS."""
SCHEMES = ("redis", "rediss", "unix", *SENTINEL_SCHEMES)
SENTINEL_PORT = 26379
SENTINEL_ONLY = ("sentinel_username", "sentinel_password")
FORCED: Mapping[str, Any] = {"decode_responses": False, "protocol": 2}
"""What seatcast's code reads, whatever the URL says: bytes, and RESP2's shapes of replies."""


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    redis_url: str = field(repr=False)
    """The URL's credentials, database and options as a ``redis://`` (or ``rediss://``) URL
    to a stand-in host: what redis-py's own parser takes."""
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls: bool = False


def parse_sentinel_url(url: str) -> SentinelUrl | None:
    """The parts of a Sentinel URL; None for any other URL.

    Raises ValueError, with what is wrong, for a Sentinel URL without a Sentinel or a service.
    """
    parts = urlsplit(url)
    if parts.scheme not in SENTINEL_SCHEMES:
        return None
    userinfo, at, hosts = parts.netloc.rpartition("@")
    sentinels = tuple(_address(host) for host in hosts.split(",") if host)
    if not sentinels:
        raise ValueError(f"{redact(url)}: no Sentinel address (HOST[:PORT][,HOST[:PORT]...])")
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError(f"{redact(url)}: the path must be /SERVICE or /SERVICE/DB")
    service, db = path[0], (path[1] if len(path) == 2 else "")
    if db and not db.isdigit():
        raise ValueError(f"{redact(url)}: the database must be a number, got {db!r}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {k: v for k, v in query if k in SENTINEL_ONLY}
    rest = urlencode([(k, v) for k, v in query if k not in SENTINEL_ONLY])
    tls = SENTINEL_SCHEMES[parts.scheme]
    netloc = f"{userinfo}{at}sentinel-managed"
    redis_url = urlunsplit(("rediss" if tls else "redis", netloc, f"/{db or 0}", rest, ""))
    return SentinelUrl(
        sentinels,
        service,
        redis_url,
        own.get("sentinel_username") or None,
        own.get("sentinel_password") or None,
        tls,
    )


def _address(text: str) -> tuple[str, int]:
    host, port = text, str(SENTINEL_PORT)
    if text.startswith("["):  # [::1]:26379
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or port
    elif ":" in text:
        host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"bad Sentinel address {text!r} (HOST[:PORT])")
    return unquote(host), int(port)


def redact(url: str) -> str:
    """The URL with its password (and any ``sentinel_password``) as ``***``, for messages;
    anything that is not a URL, as it is."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None and "sentinel_password" not in parts.query:
        return url
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if ":" in userinfo:
        userinfo = userinfo.partition(":")[0] + ":***"
    query = "&".join(
        f"{k}=***" if k == "sentinel_password" else f"{k}={v}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{hosts}", query=query))


def _redis_options(parsed: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    # The URL's options over our defaults, as redis-py's from_url does, then FORCED.
    return {**defaults, **parsed, **FORCED}


def _sentinel_options(target: SentinelUrl, options: Mapping[str, Any]) -> dict[str, Any]:
    """For the connections to the Sentinels: the sockets' and TLS options, their credentials."""
    kept = {k: v for k, v in options.items() if k.startswith(("socket_", "ssl_"))}
    if target.tls:
        kept["ssl"] = True
    if target.sentinel_username:
        kept["username"] = target.sentinel_username
    if target.sentinel_password:
        kept["password"] = target.sentinel_password
    return kept


def _managed(options: dict[str, Any]) -> dict[str, Any]:
    """Options for a Sentinel-managed pool: its own connection class, chosen by ``ssl``."""
    options = dict(options)
    connection_class = options.pop("connection_class", None)
    options.pop("host", None)
    options.pop("port", None)
    if connection_class is not None and issubclass(
        connection_class, (aioconnection.SSLConnection, redis.connection.SSLConnection)
    ):
        options["ssl"] = True
    return options


def check_url(url: str) -> None:
    """Raises ValueError, saying what is wrong, for a URL no client can be made from.

    Opens nothing: a client is made, not connected.
    """
    sync_client(url).close()


def _parsed(url: str, parse: Any) -> tuple[SentinelUrl | None, dict[str, Any]]:
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ValueError(f"{redact(url)}: the scheme must be one of {', '.join(SCHEMES)}")
    target = parse_sentinel_url(url)
    try:
        options: dict[str, Any] = parse(target.redis_url if target else url)
    except ValueError as exc:
        raise ValueError(f"{redact(url)}: {exc}") from exc
    return target, options


class AsyncRedis:
    """The service's clients of one Redis, or of the primary that a Sentinel URL names.

    ``client()`` may be called more than once: each client has a pool of its own, so that a
    blocking read never waits for, nor takes, another's connection.
    """

    def __init__(self, url: str, **defaults: Any) -> None:
        self.url = url
        self.target, parsed = _parsed(url, aioconnection.parse_url)
        self.options = _redis_options(parsed, defaults)
        self.sentinel: aiosentinel.Sentinel | None = None
        if self.target is not None:
            self.options = _managed(self.options)
            self.sentinel = aiosentinel.Sentinel(  # type: ignore[no-untyped-call]
                self.target.sentinels,
                sentinel_kwargs=_sentinel_options(self.target, self.options),
            )
        self._clients: list[aioredis.Redis] = []

    @property
    def socket_timeout(self) -> float | None:
        """How long a reply may take before the read fails (None: for ever)."""
        timeout = self.options.get("socket_timeout")
        return None if timeout is None else float(timeout)

    def client(self, **overrides: Any) -> aioredis.Redis:
        """A new client; ``overrides`` replace the URL's options for it alone."""
        options = {**self.options, **overrides}
        if self.sentinel is not None and self.target is not None:
            made: aioredis.Redis = self.sentinel.master_for(self.target.service, **options)
        else:
            made = aioredis.Redis.from_pool(aioconnection.ConnectionPool(**options))
        self._clients.append(made)
        _check(made.connection_pool, self.url)
        return made

    def primary_check(self, client: aioredis.Redis) -> Callable[[], Awaitable[object]] | None:
        """For a Sentinel URL: asks the Sentinels where the primary is and, if it moved,
        drops ``client``'s idle connections so that the next command goes there. An old
        primary that is still up keeps taking commands until Sentinel demotes it, seconds
        later: call this every second or so to follow a failover at once."""
        if self.sentinel is None:
            return None
        pool: aiosentinel.SentinelConnectionPool = client.connection_pool  # type: ignore[assignment]
        return pool.get_master_address

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
        if self.sentinel is not None:
            await self.sentinel.aclose()


def sync_client(url: str, **defaults: Any) -> redis.Redis:
    """A blocking client (the feeder's) of the Redis, or the Sentinel-named primary, at ``url``.

    Raises ValueError for a URL that redis-py or this module cannot use.
    """
    target, parsed = _parsed(url, redis.connection.parse_url)
    options = _redis_options(parsed, defaults)
    if target is None:
        client = redis.Redis(connection_pool=redis.ConnectionPool(**options))
    else:
        options = _managed(options)
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            target.sentinels, sentinel_kwargs=_sentinel_options(target, options)
        )
        client = sentinel.master_for(target.service, **options)  # type: ignore[no-untyped-call]
    _check(client.connection_pool, url)
    return client


def follow_primary(client: redis.Redis) -> object:
    """For a client of a Sentinel URL, as :meth:`AsyncRedis.primary_check`: the primary's
    address. None for any other client."""
    pool = client.connection_pool
    if isinstance(pool, redis.sentinel.SentinelConnectionPool):
        address: object = pool.get_master_address()  # type: ignore[no-untyped-call]
        return address
    return None


def _check(pool: aioconnection.ConnectionPool | redis.ConnectionPool, url: str) -> None:
    """Make (not open) one connection, so that an option redis-py does not know fails now,
    with the URL named, rather than at the first command."""
    try:
        pool.connection_class(**pool.connection_kwargs)
    except TypeError as exc:
        raise ValueError(f"{redact(url)}: an option redis-py does not take ({exc})") from exc
