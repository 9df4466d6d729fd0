"""``python -m clients.ticker`` (``seatcast-ticker``): follow an election night in a terminal.

On a terminal it draws a live board: the national banner, the latest declarations, the live
coverage, one constituency's result or one region's totals, and the connection state. Piped,
it prints plain lines instead: one per declaration and per post, one summary per national
change. ``--json`` prints
the raw protocol messages, one a line, for jq; ``--once`` prints the current state and exits.
``--transport sse`` follows over Server-Sent Events (``/sse``) where websockets are blocked.

Exit codes: 0 done, 1 the service cannot be reached, 2 bad usage (an unknown constituency or
region), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import orjson
from rich.console import Console
from rich.live import Live

from clients.board import Board, describe
from clients.client import ConnectionState, ErrorMessage, Shell, Update
from clients.session import State
from clients.sse import TRANSPORTS, open_client

__all__ = [
    "build_parser",
    "http_base",
    "main",
    "resolve_area",
    "resolve_constituency",
    "stream_url",
]

PROG = "seatcast-ticker"
DEFAULT_URL = "ws://127.0.0.1:8000/ws"
EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
HTTP_TIMEOUT = 10.0


class UsageError(Exception):
    """A choice the service does not know: exit 2 with this message."""


class Unreachable(Exception):
    """The service did not answer: exit 1 with this message."""


# --- options and lookups -----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Follow a seatcast election night in the terminal.",
        epilog=(
            "Without a terminal (piped), prints one line per declaration and per post, and a "
            "summary line per national change. Exit codes: 0 done, 1 service unreachable, "
            "2 usage error (unknown constituency or region), 130 interrupted."
        ),
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("SEATCAST_URL") or DEFAULT_URL,
        help=f"the service's websocket URL (env SEATCAST_URL; default: {DEFAULT_URL}); "
        "with --transport sse, its http(s):// root or /sse URL will do too",
    )
    parser.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="websocket",
        help="websocket (/ws), or sse: Server-Sent Events (/sse), through proxies that "
        "refuse websockets (default: %(default)s)",
    )
    focus = parser.add_mutually_exclusive_group()
    focus.add_argument(
        "--constituency",
        metavar="NAME_OR_ID",
        help="also follow one constituency, by ID or name (any case)",
    )
    focus.add_argument(
        "--region",
        metavar="SLUG_OR_NAME",
        help="also follow one region's totals (or a nation's), by slug or name",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the raw protocol messages, one per line"
    )
    parser.add_argument("--once", action="store_true", help="print the current state and exit")
    return parser


def http_base(url: str) -> str:
    """The HTTP root beside a websocket or SSE URL: ``ws://h:8000/ws`` -> ``http://h:8000``."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path.removesuffix("/")
    path = path.removesuffix("/ws") if path.endswith("/ws") else path.removesuffix("/sse")
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def stream_url(url: str, transport: str) -> str:
    """The URL to follow over ``transport``: the websocket URL as given, or for SSE the
    ``/sse`` beside it (``ws://h/ws``, ``http://h`` and ``http://h/sse`` all give
    ``http://h/sse``), its query (a token) kept."""
    if transport != "sse":
        return url
    query = urlsplit(url).query
    return f"{http_base(url)}/sse" + (f"?{query}" if query else "")


def fetch(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:
            return orjson.loads(response.read())
    except (urllib.error.URLError, OSError, orjson.JSONDecodeError) as exc:
        raise Unreachable(f"cannot read {url}: {exc}") from None


def _suggest(query: str, names: Iterable[str]) -> str:
    by_folded = {name.casefold(): name for name in names}
    folded = query.casefold()
    close = [n for n in by_folded if folded in n]
    close += difflib.get_close_matches(folded, list(by_folded), n=5, cutoff=0.6)
    shown = [by_folded[n] for n in dict.fromkeys(close)][:5]
    return f"; did you mean: {', '.join(shown)}?" if shown else ""


def resolve_constituency(query: str, seats: dict[str, State]) -> str:
    """The ID of the seat named or numbered ``query`` (any case); UsageError if none."""
    folded = query.strip().casefold()
    for seat_id, seat in seats.items():
        if folded in (seat_id.casefold(), str(seat.get("name", "")).casefold()):
            return seat_id
    names = [str(seat.get("name", "")) for seat in seats.values()]
    raise UsageError(f"no constituency {query!r}{_suggest(query, names)}")


def resolve_area(query: str, regions: dict[str, State], nations: dict[str, State]) -> str:
    """The channel (``region:<slug>``, else ``nation:<slug>``) for a slug or name."""
    folded = query.strip().casefold()
    for kind, areas in (("region", regions), ("nation", nations)):
        for slug, area in areas.items():
            if folded in (slug.casefold(), str(area.get("name", "")).casefold()):
                return f"{kind}:{slug}"
    names = [str(a.get("name", "")) for a in (*regions.values(), *nations.values())]
    raise UsageError(f"no region or nation {query!r}{_suggest(query, names)}")


def focus_channel(args: argparse.Namespace) -> str | None:
    base = http_base(args.url)
    if args.constituency:
        seats = fetch(f"{base}/api/constituencies")["data"]
        return f"constituency:{resolve_constituency(args.constituency, seats)}"
    if args.region:
        regions = fetch(f"{base}/api/regions")["data"]
        nations = fetch(f"{base}/api/nations")["data"]
        return resolve_area(args.region, regions, nations)
    return None


# --- running -------------------------------------------------------------------------------


def _say(text: str) -> None:
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def _emit(out: TextIO, lines: Iterable[str]) -> None:
    for line in lines:
        out.write(line + "\n")
    out.flush()


async def run(args: argparse.Namespace, focus: str | None, stop: asyncio.Event) -> int:
    channels = ["national", "declarations", "posts", *([focus] if focus else [])]
    board = Board(focus)
    tty = sys.stdout.isatty() and not args.json
    console = Console() if tty else None
    url = stream_url(args.url, args.transport)
    async with open_client(url, channels, transport=args.transport) as client:
        stopper = asyncio.create_task(_close_on(stop, client))
        live: Live | None = None
        try:
            if console is not None and not args.once:
                live = Live(
                    get_renderable=lambda: board.render(console),
                    console=console,
                    refresh_per_second=4,
                    redirect_stdout=False,
                    redirect_stderr=False,
                )
                live.start()
            async for item in client:
                lines = board.apply(item)
                if isinstance(item, ConnectionState):
                    if args.once and item.retry_in is not None:
                        _say(f"giving up on {url}: {item.detail}")
                        return EXIT_UNREACHABLE
                    if live is None and not args.once and item.status != "connecting":
                        _say(f"{item.status}: {describe(item)}")
                    if args.once and item.status == "live":
                        break
                elif isinstance(item, ErrorMessage):
                    _say(f"the service refused a request: {item.code}: {item.text}")
                if args.json:
                    if isinstance(item, Update | ErrorMessage):
                        _emit(sys.stdout, [orjson.dumps(item.message).decode()])
                elif live is None and not args.once:
                    _emit(sys.stdout, lines)
        finally:
            stopper.cancel()
            if live is not None:
                live.stop()
    if args.once and not args.json:
        if console is not None:
            console.print(board.render(console))
        else:
            _emit(sys.stdout, board.summary())
    return EXIT_OK


async def _close_on(stop: asyncio.Event, client: Shell) -> None:
    await stop.wait()
    await client.close()


async def _main(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    focus = await asyncio.to_thread(focus_channel, args)
    return await run(args, focus, stop)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ticker; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    schemes = ("ws://", "wss://", "http://", "https://") if args.transport == "sse" else ()
    if not args.url.startswith(("ws://", "wss://", *schemes)):
        allowed = "ws://, wss://, http:// or https://" if schemes else "ws:// or wss://"
        build_parser().error(f"--url must start with {allowed}, not {args.url!r}")
    try:
        return asyncio.run(_main(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except UsageError as exc:
        _say(str(exc))
        return EXIT_USAGE
    except Unreachable as exc:
        _say(str(exc))
        return EXIT_UNREACHABLE
    except BrokenPipeError:
        # The reader went away (| head): stop quietly, and keep Python's final flush quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
