"""``python -m clients.pa`` (``seatcast-pa``): take PA Media's election files onto the stream.

Reads every PA file in ``--dir`` (in an order that respects revisions), then follows the folder
for new and replaced files; ``--ftp URL`` mirrors an FTP drop into the folder first, polling it
every ``--interval`` seconds; ``--once`` reads what is there and exits.

Exit codes: 0 done (or stopped), 1 Redis or FTP failing, 2 bad usage (a bad definition, map or
URL), 130 interrupted (Ctrl-C), 143 terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import aioftp
import redis.asyncio as aioredis
import redis.exceptions
from watchfiles import awatch

from clients.numbers import positive
from clients.pa.ftp import FtpDrop, FtpMirror, FtpUrlError
from clients.pa.ingest import Counts, Ingest
from clients.pa.mapping import MapFileError, Mapper, read_seat_map
from clients.redis_target import add_target_options, default_redis_url, env
from service import data
from service.core.election import ElectionError, load_election
from service.protocol.stream import redact

PROG = "seatcast-pa"
EXIT_OK, EXIT_FAILING, EXIT_USAGE = 0, 1, 2
PLAIN_PROGRESS_EVERY = 50
#: With --once, how often a file that changes while read is tried again, and how far apart.
ONCE_ATTEMPTS, RETRY_DELAY = 20, 0.25
#: Following a folder: a full rescan this often even when the watcher says nothing.
RESCAN_EVERY = 5.0
FAILURE_PAUSE = 1.0
WATCH_DEBOUNCE_MS, WATCH_STEP_MS = 50, 10

log = logging.getLogger(PROG)
RedisErrors = (redis.exceptions.RedisError, OSError)
FtpErrors = (aioftp.StatusCodeError, OSError, TimeoutError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Turn PA Media election XML files into seatcast stream events.",
        epilog="Exit codes: 0 done, 1 Redis or FTP error, 2 usage error, 130 interrupted.",
    )
    source = parser.add_argument_group("where the files are")
    source.add_argument(
        "--dir",
        metavar="DIR",
        type=Path,
        help="the folder of PA files (with --ftp: the local mirror, default ./pa-drop)",
    )
    source.add_argument("--ftp", metavar="URL", help="an FTP drop: ftp://user:password@host/folder")
    source.add_argument(
        "--interval",
        metavar="SECONDS",
        type=positive(float),
        default=20.0,
        help="how often to poll the FTP drop (default: %(default)g)",
    )
    source.add_argument("--once", action="store_true", help="read what is there now, then exit")
    source.add_argument(
        "--quarantine",
        metavar="DIR",
        type=Path,
        help="where unusable files go, each with a .reason beside it (default: DIR/quarantine)",
    )
    mapping = parser.add_argument_group("mapping")
    mapping.add_argument(
        "--election",
        metavar="PATH",
        type=Path,
        default=env("SEATCAST_ELECTION") or data.election_path("uk-2024"),
        help="election definition (env SEATCAST_ELECTION; default: the bundled UK 2024 one)",
    )
    mapping.add_argument(
        "--map",
        metavar="CSV",
        type=Path,
        help="PA constituency numbers -> definition ids, header 'number,id' (default: by name)",
    )
    add_target_options(
        parser,
        wait_help=(
            "how long to wait for Redis to answer at the start before giving up; later, "
            "following keeps trying every second through an outage (files are written once, "
            "so nothing is lost or doubled), and --once exits 1 on a Redis failure"
        ),
    )
    return parser


class Progress:
    """A rich progress bar on a terminal; otherwise a line every 50 files of a pass."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._bar: object | None = None
        if out.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            bar = Progress(
                TextColumn("[bold]PA files"),
                BarColumn(),
                MofNCompleteColumn(),
                console=Console(file=out),
                transient=True,
            )
            self._task = bar.add_task("files", total=0)
            bar.start()
            self._bar = bar

    def __call__(self, done: int, total: int) -> None:
        from rich.progress import Progress

        if isinstance(self._bar, Progress):
            self._bar.update(self._task, completed=done, total=total)
        elif done % PLAIN_PROGRESS_EVERY == 0 and total >= PLAIN_PROGRESS_EVERY:
            print(f"{PROG}: {done}/{total} files", file=self._out, flush=True)

    def close(self) -> None:
        from rich.progress import Progress

        if isinstance(self._bar, Progress):
            self._bar.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the adapter; returns the exit code (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dir is None and args.ftp is None:
        parser.error("give --dir DIR (a folder of PA files) or --ftp URL")
    logging.basicConfig(format=f"{PROG}: %(message)s", level=logging.INFO, stream=sys.stderr)
    try:
        election = load_election(args.election)
        numbers = read_seat_map(args.map, election) if args.map else None
        drop = FtpDrop.from_url(args.ftp) if args.ftp else None
    except (ElectionError, MapFileError, FtpUrlError) as exc:
        log.error("error: %s", exc)
        return EXIT_USAGE
    folder: Path = args.dir or Path("pa-drop")
    if drop is None and not folder.is_dir():
        log.error("error: --dir %s is not a folder", folder)
        return EXIT_USAGE
    folder.mkdir(parents=True, exist_ok=True)
    mapper = Mapper(election, numbers)
    mirror = FtpMirror(drop, folder) if drop is not None else None
    try:
        return asyncio.run(_run(args, mapper, folder, mirror))
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


async def _run(
    args: argparse.Namespace, mapper: Mapper, folder: Path, mirror: FtpMirror | None
) -> int:
    url: str = args.redis_url or default_redis_url()
    client = aioredis.Redis.from_url(url)
    stop = asyncio.Event()
    stopped_by: list[int] = []
    loop = asyncio.get_running_loop()

    def stop_on(signum: int) -> None:
        stopped_by.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_on, signum)
    progress = Progress(sys.stderr)
    ingest = Ingest(
        client,
        args.stream,
        mapper,
        folder,
        args.quarantine or folder / "quarantine",
        progress,
    )
    try:
        if not await _wait_for_redis(client, url, args.wait, stop):
            return _finish(ingest.counts, stopped_by, EXIT_FAILING)
        if args.once:
            code = await _once(ingest, mirror, stop)
        else:
            code = await _follow(ingest, mirror, args.interval, stop)
    finally:
        progress.close()
        await client.aclose()
    return _finish(ingest.counts, stopped_by, code)


def _finish(counts: Counts, stopped_by: list[int], code: int) -> int:
    print(f"{PROG}: {counts.summary()}", file=sys.stderr, flush=True)
    return 128 + stopped_by[0] if stopped_by else code


async def _wait_for_redis(
    client: aioredis.Redis, url: str, wait: float, stop: asyncio.Event
) -> bool:
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        try:
            await client.ping()
            return True
        except RedisErrors as exc:
            if asyncio.get_running_loop().time() >= deadline:
                log.error("error: no Redis answering at %s after %gs: %s", redact(url), wait, exc)
                return False
        if await _stopped(stop, 0.2):
            return False


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``; True as soon as a stop is asked for."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def _once(ingest: Ingest, mirror: FtpMirror | None, stop: asyncio.Event) -> int:
    try:
        if mirror is not None:
            await mirror.poll()
        for _ in range(ONCE_ATTEMPTS):
            deferred = await ingest.run_pass()
            if not deferred or await _stopped(stop, RETRY_DELAY):
                break
        else:
            log.warning("%d files kept changing while read: left for the next run", deferred)
    except RedisErrors as exc:
        log.error("error: Redis failed: %s", exc)
        return EXIT_FAILING
    except FtpErrors as exc:
        log.error("error: FTP drop %s failed: %s", mirror.drop if mirror else "", exc)
        return EXIT_FAILING
    return EXIT_OK


async def _follow(
    ingest: Ingest, mirror: FtpMirror | None, interval: float, stop: asyncio.Event
) -> int:
    changed = asyncio.Event()
    watcher = None if mirror is not None else asyncio.create_task(_watch(ingest.folder, changed))
    try:
        while not stop.is_set():
            changed.clear()
            pause = interval if mirror is not None else RESCAN_EVERY
            try:
                if mirror is not None:
                    await mirror.poll()
                before = ingest.counts.files_read
                if await ingest.run_pass():
                    pause = RETRY_DELAY  # a file changed while read: look again soon
                if ingest.counts.files_read != before:
                    log.info("%s", ingest.counts.summary())
            except RedisErrors as exc:
                log.warning("Redis failed (%s); trying again in %gs", exc, FAILURE_PAUSE)
                pause = FAILURE_PAUSE
            except FtpErrors as exc:
                log.warning("FTP drop failed (%s); trying again in %gs", exc, interval)
            await _changed_or_stopped(changed, stop, pause)
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    return EXIT_OK


async def _changed_or_stopped(changed: asyncio.Event, stop: asyncio.Event, seconds: float) -> None:
    waits = [asyncio.create_task(changed.wait()), asyncio.create_task(stop.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()


async def _watch(folder: Path, changed: asyncio.Event) -> None:
    async for _ in awatch(folder, recursive=False, debounce=WATCH_DEBOUNCE_MS, step=WATCH_STEP_MS):
        changed.set()
