"""``python -m service``: run seatcast under uvicorn, with the embedded Redis if needed."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from urllib.parse import urlsplit, urlunsplit

import uvicorn

from service.app import create_app
from service.connection import DirectProtocol
from service.core.election import ElectionError, load_election
from service.embedded import EmbeddedRedis, EmbeddedRedisError
from service.settings import Settings, load_settings

log = logging.getLogger("seatcast")


def redacted(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    user = f"{parts.username}:***@" if parts.username else ":***@"
    netloc = user + host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def uvicorn_config(settings: Settings, app: object) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        ws=DirectProtocol,
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.ping_interval,
        ws_ping_timeout=settings.ping_timeout,
        ws_per_message_deflate=settings.compression,
        timeout_graceful_shutdown=2,
        log_level=settings.log_level,
        access_log=False,
        lifespan="on",
    )


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings(argv)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        election = load_election(settings.election)
    except ElectionError as exc:
        print(f"seatcast: {exc}", file=sys.stderr)
        return 2
    embedded: EmbeddedRedis | None = None
    if settings.redis_url is None:
        embedded = EmbeddedRedis(settings.data_dir)
        try:
            settings = replace(settings, redis_url=embedded.start())
        except EmbeddedRedisError as exc:
            print(f"seatcast: cannot start the embedded Redis: {exc}", file=sys.stderr)
            return 1
        log.info("using the embedded Redis at %s", settings.redis_url)
    else:
        log.info("using Redis at %s", redacted(settings.redis_url))
    log.info(
        "election %s (%d seats); stream %s; listening on http://%s:%d/",
        election.id,
        election.total_seats,
        settings.stream,
        settings.host,
        settings.port,
    )
    # uvicorn re-raises the signal that stopped it once it has shut down; with these
    # handlers in place that re-raise returns here, so the embedded Redis is stopped too.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda number, frame: None)
    try:
        uvicorn.Server(uvicorn_config(settings, create_app(settings, election))).run()
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
