"""Replay an election night onto the seatcast event stream.

``python -m clients.feeder`` (or ``seatcast-feeder``) reads a night - a bundled one such as
``uk-2024`` or a JSONL file of events - plans it (see :mod:`clients.night`) and writes each event
to the Redis stream as one entry with one field, ``event``, holding compact JSON. The night's
own clock sets the pace, sped up ``--speed`` times, with no single wait over ``--max-gap``.

``--redis-url`` takes the service's URL forms, a Sentinel's included (see
:mod:`service.protocol.stream`): through a failover, each write is retried on the new primary for up
to ``--wait`` seconds. ``--wait-replicas N`` makes each write wait (Redis ``WAIT``) until N
replicas have it, so that a failover cannot lose it.

Exit codes: 0 done, 1 Redis unreachable or failing (or replicas not acknowledging a write in
time), 2 bad usage or a stream that already has entries (without ``--append`` or ``--reset``),
130 interrupted (Ctrl-C), 143 terminated.
"""

from __future__ import annotations

import argparse
import math
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TextIO

import orjson
import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from clients.night import (
    BUNDLED_NIGHTS,
    NightError,
    Planned,
    declared_seats,
    first_seats,
    load_night,
    plan_night,
)
from clients.numbers import non_negative
from clients.redis_target import add_target_options, default_redis_url
from service.protocol.stream import follow_primary, redact, sync_client

__all__ = ["build_parser", "main", "redact"]

PROG = "seatcast-feeder"
PLAIN_PROGRESS_EVERY = 50
XADD_BACKOFF = 0.1  # seconds after the first failed attempt, doubled after each next one
XADD_BACKOFF_CAP = 1.0
PRIMARY_CHECK_EVERY = 1.0  # seconds, on a Sentinel URL
PING_INTERVAL = 0.2
SOCKET_TIMEOUT = 5.0

EXIT_OK = 0
EXIT_REDIS = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Replay an election night onto the seatcast Redis stream, one event per entry "
            "(field 'event', JSON), paced by the night's own clock."
        ),
        epilog=(
            "Exit codes: 0 done, 1 Redis error, 2 usage error or stream not empty, 130 interrupted."
        ),
    )
    night = parser.add_argument_group("the night")
    night.add_argument(
        "--night",
        metavar="NAME|PATH",
        default="uk-2024",
        help=(
            f"a bundled night ({', '.join(BUNDLED_NIGHTS)}) or a JSONL file of events "
            "(default: %(default)s)"
        ),
    )
    night.add_argument(
        "--speed",
        metavar="N",
        type=non_negative(float),
        default=240.0,
        help="play at N times the night's real pace; 0 = as fast as possible (default: 240)",
    )
    night.add_argument(
        "--max-gap",
        metavar="SECONDS",
        type=non_negative(float),
        default=3.0,
        help="longest single wait between events, after scaling; 0 = no cap (default: 3)",
    )
    night.add_argument(
        "--flashes",
        action="store_true",
        help="send a flash (the winner, before the figures) 5 minutes before each declaration",
    )
    night.add_argument(
        "--recounts",
        action="store_true",
        help=(
            "announce a recount 45 minutes before the declarations of very close seats "
            "(and the seats recounted in 2024)"
        ),
    )
    night.add_argument(
        "--corrections",
        metavar="N",
        type=non_negative(int),
        default=0,
        help="correct N randomly chosen declared seats 30 minutes later (default: 0)",
    )
    night.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed for choosing and making corrections (default: %(default)s)",
    )
    night.add_argument(
        "--limit",
        metavar="N",
        type=non_negative(int),
        default=None,
        help="stop after the first N declared seats (later seats' events are not sent)",
    )

    target = add_target_options(
        parser,
        wait_help=(
            "how long to wait for Redis to answer, at the start and for each write (through "
            "an outage or a failover), before giving up"
        ),
    )
    target.add_argument(
        "--wait-replicas",
        metavar="N",
        type=non_negative(int),
        default=0,
        help=(
            "after each write, wait until N replicas have it (Redis WAIT), so that a failover "
            "cannot lose it; an error if they do not acknowledge in time (default: 0)"
        ),
    )
    target.add_argument(
        "--replica-timeout",
        metavar="SECONDS",
        type=non_negative(float),
        default=5.0,
        help="how long each write waits for --wait-replicas (default: 5)",
    )
    existing = target.add_mutually_exclusive_group()
    existing.add_argument(
        "--append",
        action="store_true",
        help="add to a stream that already has entries",
    )
    existing.add_argument(
        "--reset",
        action="store_true",
        help="delete the stream first, then replay (clients see a new epoch)",
    )
    target.add_argument(
        "--print",
        dest="print_only",
        action="store_true",
        help="write the planned events as JSONL to stdout instead of Redis (no Redis needed)",
    )
    target.add_argument(
        "--format",
        choices=("events", "pa"),
        default="events",
        help=(
            "events: stream entries (default); pa: PA Media XML files written into --out at "
            "the night's pace, for rehearsing the PA adapter (python -m clients.pa); no Redis"
        ),
    )
    target.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        help="with --format pa: the folder to write the PA files into",
    )
    target.add_argument(
        "--linger",
        action="store_true",
        help="after the replay, keep running until Ctrl-C (for the Procfile)",
    )
    return parser


# --------------------------------------------------------------------------- signals


class Stopper:
    """Turns SIGINT and SIGTERM into a flag that the replay checks between events.

    A write in progress completes, so the count of events written is exact. Waits are
    ``select`` on a wakeup socket, so a signal ends them at once. A second Ctrl-C interrupts
    whatever is running.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._previous: list[tuple[int, Any]] = []
        self._previous_fd = -1

    @property
    def stopped(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; False at once if a stop was asked for (before or during)."""
        deadline = time.monotonic() + seconds
        while not self.stopped:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            readable, _, _ = select.select([self._read], [], [], remaining)
            if readable:
                try:
                    while self._read.recv(64):
                        pass
                except BlockingIOError:
                    pass
        return False

    @contextmanager
    def installed(self) -> Iterator[Stopper]:
        self._previous_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        for wanted in (signal.SIGINT, signal.SIGTERM):
            self._previous.append((wanted, signal.signal(wanted, self._handle)))
        try:
            yield self
        finally:
            for restored, handler in self._previous:
                signal.signal(restored, handler)
            signal.set_wakeup_fd(self._previous_fd)
            self._read.close()
            self._write.close()

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)


# --------------------------------------------------------------------------- progress


class Reporter(Protocol):
    def update(self, declared: int, events: int) -> None: ...

    def close(self) -> None: ...


class PlainReporter:
    """A line every :data:`PLAIN_PROGRESS_EVERY` seats, for logs and pipes."""

    def __init__(self, total: int, out: TextIO) -> None:
        self._total = total
        self._out = out
        self._start = time.monotonic()
        self._last = 0

    def update(self, declared: int, events: int) -> None:
        if declared != self._last and declared % PLAIN_PROGRESS_EVERY == 0:
            self._line(declared, events)
        self._last = declared

    def _line(self, declared: int, events: int) -> None:
        elapsed = time.monotonic() - self._start
        print(
            f"{PROG}: {declared}/{self._total} seats declared, {events} events, {elapsed:.1f}s",
            file=self._out,
            flush=True,
        )

    def close(self) -> None:
        pass

    def finish(self, declared: int, events: int) -> None:
        if declared % PLAIN_PROGRESS_EVERY != 0 or declared == 0:
            self._line(declared, events)


class RichReporter:
    """A progress bar on the terminal: seats declared of total, elapsed, ETA."""

    def __init__(self, total: int, out: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]seats declared"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[events]} events"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=out),
        )
        self._task = self._progress.add_task("replay", total=total, events=0)
        self._progress.start()

    def update(self, declared: int, events: int) -> None:
        self._progress.update(self._task, completed=declared, events=events)

    def close(self) -> None:
        self._progress.stop()


# --------------------------------------------------------------------------- replay


class FeederError(Exception):
    """A failure to report in one line and exit with :attr:`code`."""

    def __init__(self, message: str, code: int = EXIT_REDIS) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Result:
    written: int = 0
    first_id: str | None = None
    last_id: str | None = None
    declared: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def _connect(url: str, replica_timeout: float = 0.0) -> redis.Redis:
    """A client that never retries by itself. Its read timeout outlasts a WAIT for replicas:
    a read that timed out after the XADD took effect would be retried, and written twice."""
    try:
        return sync_client(
            url,
            socket_timeout=SOCKET_TIMEOUT + replica_timeout,
            socket_connect_timeout=SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as exc:
        raise FeederError(f"bad --redis-url: {exc}", EXIT_USAGE) from exc


def _wait_for_redis(
    client: redis.Redis, url: str, embedded: bool, wait: float, stopper: Stopper
) -> None:
    url = redact(url)
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            client.ping()
            return
        except (redis.AuthenticationError, redis.exceptions.AuthorizationError) as exc:
            raise FeederError(f"Redis at {url} refused us: {exc}") from exc  # waiting won't help
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            error: Exception = exc
        except redis.RedisError as exc:
            raise FeederError(f"Redis at {url} refused us: {exc}") from exc
        if time.monotonic() >= deadline:
            break
        if not told:
            _say(f"waiting up to {wait:g}s for Redis at {url} ...")
            told = True
        if not stopper.sleep(min(PING_INTERVAL, max(0.0, deadline - time.monotonic()))):
            raise _Interrupted
    if embedded:
        raise FeederError(
            f"no Redis answering at {url} after {wait:g}s: {error}\n"
            "The feeder does not start a Redis itself: start the service first "
            "(python -m service, which runs its embedded Redis there), "
            "or set REDIS_URL (or --redis-url) to your Redis."
        )
    raise FeederError(f"no Redis answering at {url} after {wait:g}s: {error}")


class _Interrupted(Exception):
    pass


@dataclass
class Writer:
    """Adds events to the stream, one entry each.

    Each write is retried for ``patience`` seconds through an outage or a failover; with
    ``replicas``, it must be acknowledged by that many replicas within ``replica_timeout``.
    On a Sentinel URL the writer asks where the primary is every ``PRIMARY_CHECK_EVERY``
    seconds: an old primary still takes writes for seconds after a failover, and loses them.
    """

    client: redis.Redis
    stream: str
    stopper: Stopper
    patience: float = 30.0
    replicas: int = 0
    replica_timeout: float = 5.0
    _primary: object = None
    _primary_checked: float = -PRIMARY_CHECK_EVERY

    def add(self, payload: bytes) -> str:
        deadline = time.monotonic() + self.patience
        # redis-py's Retry sleeps with time.sleep, which a SIGTERM or a first Ctrl-C does not
        # cut short, and bounds attempts, not seconds. So it gets no backoff of its own:
        # `failed` waits the backoff's delay on the Stopper and gives up at the deadline.
        retry = Retry(NoBackoff(), -1, (redis.ConnectionError, redis.TimeoutError))
        # (base * 2**failures: XADD_BACKOFF after the first failure)
        backoff = ExponentialBackoff(cap=XADD_BACKOFF_CAP, base=XADD_BACKOFF / 2)

        def attempt() -> tuple[str, int]:
            self._follow_primary()
            entry_id, acknowledged = self._write(payload)
            entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            if acknowledged < self.replicas and self._follow_primary(at_once=True):
                # Written to a primary that a failover has just replaced: lost with it.
                raise redis.ConnectionError(f"entry {entry} went to the old primary")
            return entry, acknowledged

        def failed(error: Exception, failures: int) -> None:
            # A retried write may land twice; the per-seat revision makes the copy stale.
            delay = backoff.compute(failures)
            if time.monotonic() + delay > deadline:
                raise FeederError(
                    f"XADD to {self.stream} failed {failures} times in {self.patience:g}s "
                    f"(--wait), giving up: {error}"
                ) from error
            _say(f"XADD failed ({error}); retrying in {delay:g}s")
            if not self.stopper.sleep(delay):
                raise _Interrupted from error
            self._primary_checked = -math.inf  # the next attempt asks where the primary is

        try:
            entry, acknowledged = retry.call_with_retry(
                attempt, failed, is_retryable=_worth_retrying, with_failure_count=True
            )
        except redis.RedisError as exc:
            raise FeederError(f"XADD to {self.stream} failed: {exc}") from exc
        if acknowledged < self.replicas:
            raise FeederError(
                f"entry {entry} was written to {self.stream}, but only {acknowledged} "
                f"of {self.replicas} replicas (--wait-replicas) had it after "
                f"{self.replica_timeout:g}s: a failover now could lose it"
            )
        return entry

    def _write(self, payload: bytes) -> tuple[Any, int]:
        """XADD, and with ``replicas`` WAIT in the same round trip: the ID and how many
        replicas acknowledged it."""
        if not self.replicas:
            return self.client.xadd(self.stream, {"event": payload}), 0
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(self.stream, {"event": payload})
        pipe.wait(self.replicas, max(1, int(self.replica_timeout * 1000)))
        entry_id, acknowledged = pipe.execute()
        return entry_id, int(acknowledged)

    def _follow_primary(self, *, at_once: bool = False) -> bool:
        """Ask (if due) where the primary is; True if it moved since last asked."""
        now = time.monotonic()
        if not at_once and now - self._primary_checked < PRIMARY_CHECK_EVERY:
            return False
        self._primary_checked = now
        primary, self._primary = self._primary, follow_primary(self.client)
        return primary is not None and primary != self._primary


def _worth_retrying(error: Exception) -> bool:
    """Not a refusal (redis-py makes those connection errors): retrying would not help."""
    return not isinstance(error, (redis.AuthenticationError, redis.exceptions.AuthorizationError))


def _prepare_stream(client: redis.Redis, stream: str, append: bool, reset: bool) -> None:
    try:
        if reset:
            client.delete(stream)
            return
        length = int(client.xlen(stream))
    except redis.ResponseError as exc:
        raise FeederError(f"cannot use {stream!r} as the event stream: {exc}") from exc
    except redis.RedisError as exc:
        raise FeederError(f"Redis error on {stream!r}: {exc}") from exc
    if length and not append:
        raise FeederError(
            f"stream {stream!r} already has {length} entries; pass --append to add to it or "
            "--reset to delete it and start again (or use another --stream)",
            EXIT_USAGE,
        )


def _replay(
    writer: Writer,
    plan: Sequence[Planned],
    *,
    speed: float,
    max_gap: float,
    stopper: Stopper,
    reporter: Reporter,
    result: Result,
) -> None:
    seen: set[str] = set()
    start = time.monotonic()
    due = 0.0
    previous = plan[0].at if plan else None
    for item in plan:
        if previous is not None and speed > 0:
            wait = max(0.0, (item.at - previous).total_seconds()) / speed
            due += min(wait, max_gap) if max_gap > 0 else wait
        previous = item.at
        if not stopper.sleep(start + due - time.monotonic()):
            return
        entry_id = writer.add(orjson.dumps(item.event))
        result.written += 1
        result.first_id = result.first_id or entry_id
        result.last_id = entry_id
        seat = item.event.get("constituency")
        if item.event.get("type") == "declaration" and isinstance(seat, str) and seat not in seen:
            seen.add(seat)
            result.declared = len(seen)
        reporter.update(result.declared, result.written)


def _summary(result: Result, stream: str) -> str:
    ids = (
        f" (first {result.first_id}, last {result.last_id})" if result.first_id is not None else ""
    )
    events = "event" if result.written == 1 else "events"
    seats = "seat" if result.declared == 1 else "seats"
    return (
        f"wrote {result.written} {events} to {stream}{ids}, "
        f"{result.declared} {seats} declared, in {result.elapsed:.1f}s"
    )


def _print_plan(plan: Sequence[Planned]) -> int:
    out = sys.stdout.buffer
    try:
        for item in plan:
            out.write(orjson.dumps(item.event) + b"\n")
        out.flush()
    except BrokenPipeError:
        # The reader went away (| head): not an error. Stop Python flushing stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


def _write_pa(night: str, plan: Sequence[Planned], out: Path, speed: float, max_gap: float) -> int:
    from clients.pa.writer import PaWriter, write_night_files
    from service.core.election import ElectionError, load_election
    from service.data import election_path

    try:
        election = load_election(election_path(night))
    except (ValueError, ElectionError) as exc:
        raise SystemExit(
            f"{PROG}: error: --format pa needs a bundled night's definition: {exc}"
        ) from None
    outputs = PaWriter(election).files(plan)
    stopper = Stopper()
    with stopper.installed():
        written = write_night_files(outputs, out, speed=speed, max_gap=max_gap, sleep=stopper.sleep)
    _say(f"wrote {written} PA files to {out}")
    return stopper.exit_code if stopper.stopped else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the feeder; returns the exit code (see the module docstring)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before the signal handlers are in place, or a second Ctrl-C
        _say("interrupted")
        return 128 + signal.SIGINT


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        events = load_night(args.night)
        if args.limit is not None:
            events = first_seats(events, args.limit)
        plan = plan_night(
            events,
            flashes=args.flashes,
            recounts=args.recounts,
            corrections=args.corrections,
            seed=args.seed,
        )
    except NightError as exc:
        parser.exit(EXIT_USAGE, f"{PROG}: error: {exc}\n")
    if (args.format == "pa") != (args.out is not None):
        parser.error("--format pa and --out DIR go together")
    if args.print_only:
        return _print_plan(plan)
    if args.format == "pa":
        return _write_pa(args.night, plan, args.out, args.speed, args.max_gap)

    embedded = args.redis_url is None
    url: str = default_redis_url() if embedded else args.redis_url
    total = len(declared_seats(plan))
    stopper = Stopper()
    result = Result()
    with stopper.installed():
        try:
            client = _connect(url, args.replica_timeout if args.wait_replicas else 0.0)
            try:
                _wait_for_redis(client, url, embedded, args.wait, stopper)
                _prepare_stream(client, args.stream, args.append, args.reset)
                reporter: PlainReporter | RichReporter = (
                    RichReporter(total, sys.stderr)
                    if sys.stderr.isatty()
                    else PlainReporter(total, sys.stderr)
                )
                result.started = time.monotonic()
                try:
                    writer = Writer(
                        client,
                        args.stream,
                        stopper,
                        patience=args.wait,
                        replicas=args.wait_replicas,
                        replica_timeout=args.replica_timeout,
                    )
                    _replay(
                        writer,
                        plan,
                        speed=args.speed,
                        max_gap=args.max_gap,
                        stopper=stopper,
                        reporter=reporter,
                        result=result,
                    )
                finally:
                    reporter.close()
                if isinstance(reporter, PlainReporter) and not stopper.stopped:
                    reporter.finish(result.declared, result.written)
            finally:
                client.close()
        except FeederError as exc:
            _say(f"error: {exc}")
            if result.written:
                _say(_summary(result, args.stream))
            return exc.code
        except (_Interrupted, KeyboardInterrupt):
            pass
        if stopper.stopped or result.written < len(plan):
            _say(f"stopped: {_summary(result, args.stream)}")
            return stopper.exit_code
        _say(_summary(result, args.stream))
        if args.linger:
            _say("replay finished; lingering until Ctrl-C")
            while stopper.sleep(3600):
                pass
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
