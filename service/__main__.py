"""``python -m service``: run seatcast under uvicorn, with the embedded Redis if needed."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from service.core.election import ElectionError, load_election
from service.embedded import EmbeddedRedis, EmbeddedRedisError
from service.protocol.stream import check_url, redact
from service.server import ignore_stop_signals, serve
from service.settings import load_settings
from service.webhooks import WebhookError, parse_targets
from service.workers import run_workers

log = logging.getLogger("seatcast")


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings(argv)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        election = load_election(settings.election)
        parse_targets(settings.webhooks, election)
    except (ElectionError, WebhookError) as exc:
        print(f"seatcast: {exc}", file=sys.stderr)
        return 2
    embedded: EmbeddedRedis | None = None
    if settings.redis_url is None:
        embedded = EmbeddedRedis(settings.data_dir)
        try:
            settings = settings.model_copy(update={"redis_url": embedded.start()})
        except EmbeddedRedisError as exc:
            print(f"seatcast: cannot start the embedded Redis: {exc}", file=sys.stderr)
            return 1
        log.info("using the embedded Redis at %s", settings.redis_url)
    else:
        try:
            check_url(settings.redis_url)
        except ValueError as exc:
            print(f"seatcast: REDIS_URL / --redis-url: {exc}", file=sys.stderr)
            return 2
        log.info("using Redis at %s", redact(settings.redis_url))
    log.info(
        "election %s (%d seats); stream %s; listening on http://%s:%d/",
        election.id,
        election.total_seats,
        settings.stream,
        settings.host,
        settings.port,
    )
    if settings.workers < 1 or (settings.workers > 1 and settings.port == 0):
        print("seatcast: --workers needs a number from 1, and a fixed --port", file=sys.stderr)
        return 2
    ignore_stop_signals()
    try:
        if settings.workers == 1:
            serve(settings, election)
        else:
            return run_workers(settings)
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
