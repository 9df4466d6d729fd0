"""Where a client writes its events: the options the feeder and the PA adapter share.

Both take ``--redis-url``, ``--stream`` and ``--wait`` from the same environment variables
and the same defaults as the service (an empty variable counts as unset), so a feeder and an
adapter started beside a service write to the stream it reads.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from clients.numbers import non_negative
from service.protocol.stream import embedded_url

__all__ = ["DEFAULT_STREAM", "add_target_options", "default_redis_url", "env"]

DEFAULT_STREAM = "election:events"
DEFAULT_DATA_DIR = "./.seatcast"
DEFAULT_WAIT = 30.0


def env(name: str) -> str | None:
    """The environment variable ``name``; None if unset or empty."""
    return os.environ.get(name) or None


def default_redis_url() -> str:
    """The embedded Redis's socket: ``unix://<SEATCAST_DATA_DIR or ./.seatcast>/redis.sock``."""
    data_dir = Path(env("SEATCAST_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()
    return embedded_url(data_dir)


def add_target_options(
    parser: argparse.ArgumentParser,
    *,
    wait_help: str = "how long to wait for Redis to answer before giving up",
) -> argparse._ArgumentGroup:
    """Add the group "where to write" with ``--redis-url``, ``--stream`` and ``--wait``;
    returns it for the caller's own options.

    ``--wait 0`` is allowed in both: try once and give up at once, for a script that would
    rather fail than wait.
    """
    target = parser.add_argument_group("where to write")
    target.add_argument(
        "--redis-url",
        metavar="URL",
        default=env("REDIS_URL"),
        help=(
            "Redis to write to (env REDIS_URL; default: the embedded Redis that the service "
            "starts, unix://<SEATCAST_DATA_DIR or ./.seatcast>/redis.sock)"
        ),
    )
    target.add_argument(
        "--stream",
        metavar="KEY",
        default=env("SEATCAST_STREAM") or DEFAULT_STREAM,
        help="the event stream key (env SEATCAST_STREAM; default: %(default)s)",
    )
    target.add_argument(
        "--wait",
        metavar="SECONDS",
        type=non_negative(float),
        default=DEFAULT_WAIT,
        help=f"{wait_help} (default: %(default)g)",
    )
    return target
