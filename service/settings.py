"""Configuration: each setting from the environment, overridable on the command line."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from service import data


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str | None = None
    """None: start (or attach to) the embedded redis-server in ``data_dir``."""
    stream: str = "election:events"
    rejected_stream: str | None = None
    """None: ``<stream>:rejected``."""
    election: Path = field(default_factory=lambda: data.election_path("uk-2024"))
    data_dir: Path = Path(".seatcast")
    host: str = "127.0.0.1"
    port: int = 8000
    history: int = 1000
    """Changes kept per channel for clients that resume with ``since``."""
    queue_bytes: int = 1 << 20
    """Per-client outgoing queue bound; past it the slow-client policy applies."""
    max_frame_bytes: int = 64 * 1024
    max_channels: int = 1000
    """Channels one connection may hold."""
    rate_limit: float = 20.0
    """Client messages per second allowed on one connection (burst: twice that)."""
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    compression: bool = False
    read_batch: int = 1000
    log_level: str = "info"
    token_secret: str | None = field(default=None, repr=False)
    """HS256 secret for subscriber tokens; None: no shared-secret tokens."""
    token_public_key: Path | None = None
    """PEM public key file for RS256/ES256 subscriber tokens."""
    require_token: bool = False
    allowed_origins: str = ""
    """Comma-separated browser origins allowed on /ws; empty: any."""
    metrics_token: str | None = field(default=None, repr=False)
    workers: int = 1
    """Independent service processes sharing the port (SO_REUSEPORT)."""
    publish_max_bytes: int = 1 << 20
    """Largest body that ``POST /api/events`` reads; larger: 413."""
    cache_control: str = "public, max-age=1, stale-while-revalidate=5"
    """Cache-Control of every GET /api/... and /graphics/... answer."""
    webhooks: str | None = None
    """Comma-separated URLs, or ``@file`` (one a line): each receives the flat JSON of its
    channel on each change."""
    webhook_interval: float = 1.0
    """Seconds between two requests to one webhook target, at least (changes coalesce)."""
    webhook_timeout: float = 5.0
    sse_heartbeat: float = 15.0
    """Seconds between the comments that keep an idle SSE stream open through proxies."""
    sse_retry: float = 3.0
    """Seconds an EventSource waits before reconnecting: told each as ``retry:`` with
    jitter (half to one and a half times this), so that a restart's clients spread out."""
    sse_open_rate: float = 20.0
    """SSE streams one client (its credential, else its address) may open per second
    (burst twice that); 0: no limit."""
    long_poll_timeout: float = 25.0
    """Seconds a ``?wait=`` request is held before 304 when the channel does not move."""
    long_poll_waiters: int = 1000
    """``?wait=`` requests held at once by one instance; past it, 503 with Retry-After."""

    @property
    def rejected(self) -> str:
        return self.rejected_stream or f"{self.stream}:rejected"


_ENV = {
    "redis_url": "REDIS_URL",
    "stream": "SEATCAST_STREAM",
    "rejected_stream": "SEATCAST_REJECTED_STREAM",
    "election": "SEATCAST_ELECTION",
    "data_dir": "SEATCAST_DATA_DIR",
    "host": "HOST",
    "port": "PORT",
    "history": "SEATCAST_HISTORY",
    "queue_bytes": "SEATCAST_QUEUE_BYTES",
    "max_frame_bytes": "SEATCAST_MAX_FRAME_BYTES",
    "max_channels": "SEATCAST_MAX_CHANNELS",
    "rate_limit": "SEATCAST_RATE_LIMIT",
    "ping_interval": "SEATCAST_PING_INTERVAL",
    "ping_timeout": "SEATCAST_PING_TIMEOUT",
    "compression": "SEATCAST_COMPRESSION",
    "read_batch": "SEATCAST_READ_BATCH",
    "log_level": "SEATCAST_LOG_LEVEL",
    "token_secret": "SEATCAST_TOKEN_SECRET",
    "token_public_key": "SEATCAST_TOKEN_PUBLIC_KEY",
    "require_token": "SEATCAST_REQUIRE_TOKEN",
    "allowed_origins": "SEATCAST_ALLOWED_ORIGINS",
    "metrics_token": "SEATCAST_METRICS_TOKEN",
    "workers": "SEATCAST_WORKERS",
    "publish_max_bytes": "SEATCAST_PUBLISH_MAX_BYTES",
    "cache_control": "SEATCAST_CACHE_CONTROL",
    "webhooks": "SEATCAST_WEBHOOKS",
    "webhook_interval": "SEATCAST_WEBHOOK_INTERVAL",
    "webhook_timeout": "SEATCAST_WEBHOOK_TIMEOUT",
    "sse_heartbeat": "SEATCAST_SSE_HEARTBEAT",
    "sse_retry": "SEATCAST_SSE_RETRY",
    "sse_open_rate": "SEATCAST_SSE_OPEN_RATE",
    "long_poll_timeout": "SEATCAST_LONG_POLL_TIMEOUT",
    "long_poll_waiters": "SEATCAST_LONG_POLL_WAITERS",
}

_HELP = {
    "redis_url": (
        "Redis to read (redis://, rediss://, unix://, redis+sentinel://HOST[:PORT],.../SERVICE"
        "[/DB]); unset: the embedded redis-server"
    ),
    "stream": "the event stream key",
    "rejected_stream": "where rejected events are copied (default: <stream>:rejected)",
    "election": "election definition file (default: the bundled UK 2024 definition)",
    "data_dir": "where the embedded Redis keeps its socket and append-only file",
    "host": "address to listen on",
    "port": "port to listen on",
    "history": "changes kept per channel for clients resuming with 'since'",
    "queue_bytes": "per-client outgoing queue bound in bytes (slow-client policy past it)",
    "max_frame_bytes": "largest client frame accepted; larger closes with 1009",
    "max_channels": "channels one connection may subscribe to",
    "rate_limit": "client messages per second per connection (burst twice that)",
    "ping_interval": "seconds between server pings",
    "ping_timeout": "seconds to wait for a pong before closing",
    "compression": "enable permessage-deflate (costs ~300 KiB per connection)",
    "read_batch": "stream entries read per XREAD",
    "log_level": "debug, info, warning or error",
    "token_secret": "secret for HS256 subscriber tokens (better set in the environment)",
    "token_public_key": "PEM public key file for RS256/ES256 subscriber tokens",
    "require_token": "refuse clients (websocket 1008, HTTP 401) that bring no valid token",
    "allowed_origins": "comma-separated browser origins allowed to open /ws (default: any)",
    "metrics_token": "bearer token that /metrics requires (default: none)",
    "workers": "independent service processes on one port (SO_REUSEPORT), each a core",
    "publish_max_bytes": "largest request body POST /api/events reads (larger: 413)",
    "cache_control": "Cache-Control of GET /api/... and /graphics/... answers",
    "webhooks": "URLs that receive each change's flat JSON: comma-separated, or @FILE",
    "webhook_interval": "least seconds between two requests to one webhook (changes coalesce)",
    "webhook_timeout": "seconds a webhook request may take before it counts as failed",
    "sse_heartbeat": "seconds between keep-alive comments on an idle /sse stream",
    "sse_retry": "seconds an EventSource waits to reconnect (sent with jitter as retry:)",
    "sse_open_rate": "/sse streams one client (credential, else address) may open a second",
    "long_poll_timeout": "seconds a ?wait= request is held before 304",
    "long_poll_waiters": "?wait= requests held at once (more: 503 with Retry-After)",
}


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="python -m service",
        description="seatcast: election results from a Redis stream, pushed over websockets.",
        epilog="Each option can also be set by the environment variable shown.",
    )
    for item in fields(Settings):
        flag = "--" + item.name.replace("_", "-")
        env = _ENV[item.name]
        if item.type in ("bool", bool):
            parse.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{_HELP[item.name]} [{env}]",
            )
        else:
            parse.add_argument(flag, default=None, help=f"{_HELP[item.name]} [{env}]")
    return parse


def load_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from ``environ`` (default os.environ), then ``argv`` on top.

    Raises SystemExit with a usage message for a value of the wrong kind.
    """
    environ = os.environ if environ is None else environ
    arguments = vars(parser().parse_args(argv))
    values: dict[str, object] = {}
    for item in fields(Settings):
        raw = arguments.get(item.name)
        if raw is None:
            raw = environ.get(_ENV[item.name]) or None
        if raw is None:
            continue
        try:
            values[item.name] = _convert(item.type, raw)
        except ValueError:
            parser().error(
                f"{_ENV[item.name]} / --{item.name.replace('_', '-')}: bad value {raw!r}"
            )
    return Settings(**values)  # type: ignore[arg-type]


def _convert(kind: object, raw: object) -> object:
    if isinstance(raw, bool):
        return raw
    text = str(raw)
    if kind in ("int", int):
        return int(text)
    if kind in ("float", float):
        return float(text)
    if kind in ("bool", bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(text)
    if kind in ("Path", Path, "Path | None"):
        return Path(text)
    return text
