"""How many events a second the tally core takes: decode, validate and apply, patches computed.

``python -m clients.bench_core`` replays (a) a bundled election night and (b) a seeded stream of
random events on the same definition - corrections, flashes, retractions, status changes,
repeats and stale revisions among the declarations - through ``decode_event`` and
``Tally.apply``, takes the best of ``--runs`` runs of each, and prints a table. It asserts nothing
about time: it is for comparing one change of the core with the next on one machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from service.core.decoding import decode_event
from service.core.election import Election, load_election
from service.core.events import Event, InvalidEvent
from service.core.seq import Seq
from service.core.tally import Tally
from service.data import available, election_path, night_path

__all__ = ["build_parser", "main", "random_events"]

T = TypeVar("T")

FIRST_MS = 1_720_130_400_000  # 2024-07-04T22:00:00Z; any start will do
STATUSES = ("counting", "recount", "awaiting")
MAX_CHANGE = 50  # the most a correction moves one candidate's votes, either way


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    lines: Sequence[bytes]
    """Each entry's ``event`` field, as it comes off the stream."""


@dataclass(frozen=True, slots=True)
class Measured:
    workload: Workload
    decode: float
    """Best seconds to decode every entry."""
    apply: float
    """Best seconds to apply every decoded entry."""
    both: float
    """Best seconds to decode and apply every entry, as the service does."""
    changes: int
    rejected: int
    stale: int


def random_events(
    election: Election, declarations: Sequence[dict[str, Any]], count: int, seed: int
) -> list[bytes]:
    """``count`` encoded events on ``election``, the same for the same ``seed``.

    ``declarations`` are real ones to start from; corrections move their votes a little.
    Each per-seat event carries a revision, raised per seat as a live feed does, except the
    stale resends, which repeat an old one. Status changes go only to seats that the events so
    far leave without a result, so nothing is rejected.
    """
    rng = random.Random(seed)
    by_seat = {d["constituency"]: d for d in declarations}
    seats = sorted(by_seat)
    revision = dict.fromkeys(seats, 0)
    has_result = dict.fromkeys(seats, False)
    last: dict[str, dict[str, Any]] = {}
    parties = sorted(election.parties)
    kinds = ("declaration", "correction", "flash", "retraction", "status", "repeat", "stale")
    weights = (30, 25, 10, 8, 12, 8, 6)
    out: list[bytes] = []
    while len(out) < count:
        if rng.random() < 0.002:
            seats_poll = {p: rng.randrange(0, election.total_seats // 2) for p in parties}
            out.append(orjson.dumps({"type": "exit_poll", "seats": seats_poll}))
            continue
        seat = rng.choice(seats)
        kind = rng.choices(kinds, weights)[0]
        event: dict[str, Any]
        if kind in ("repeat", "stale"):
            if seat not in last:
                continue
            event = dict(last[seat])
            if kind == "repeat":
                revision[seat] += 1
                event["revision"] = revision[seat]
            else:
                event["revision"] = rng.randint(1, revision[seat])
            out.append(orjson.dumps(event))
            continue
        if kind in ("declaration", "correction"):
            event = _declaration(rng, by_seat[seat], moved=kind == "correction")
            has_result[seat] = True
        elif kind == "flash":
            winner = by_seat[seat]["candidates"][0]
            event = {"type": "flash", "constituency": seat, "winner": _who(winner)}
            has_result[seat] = True
        elif kind == "retraction":
            event = {"type": "retraction", "constituency": seat, "reason": "entered in error"}
            has_result[seat] = False
        elif has_result[seat]:
            continue
        else:
            event = {"type": "status", "constituency": seat, "status": rng.choice(STATUSES)}
        revision[seat] += 1
        event["revision"] = revision[seat]
        last[seat] = event
        out.append(orjson.dumps(event))
    return out


def _declaration(rng: random.Random, real: dict[str, Any], moved: bool) -> dict[str, Any]:
    candidates = [dict(c) for c in real["candidates"]]
    if moved:
        for candidate in rng.sample(candidates, k=min(2, len(candidates))):
            change = rng.randint(-MAX_CHANGE, MAX_CHANGE)
            candidate["votes"] = max(0, candidate["votes"] + change)
    event = {k: v for k, v in real.items() if k != "winner"}
    event["candidates"] = candidates
    best = max(c["votes"] for c in candidates)
    top = [c for c in candidates if c["votes"] == best]
    if len(top) > 1:
        event["winner"] = _who(rng.choice(top))
    return event


def _who(candidate: dict[str, Any]) -> dict[str, str]:
    return {"name": candidate["name"], "party": candidate["party"]}


def measure(election: Election, workload: Workload, runs: int) -> Measured:
    """The best of ``runs`` timings of decoding, applying, and both.

    Each run of applying starts from a new tally, built before the clock starts: building it
    is start-up work, not work per event.
    """
    lines = workload.lines
    seqs = [Seq(FIRST_MS + number, 0) for number in range(1, len(lines) + 1)]
    entries = [str(seq) for seq in seqs]

    def decode_all() -> list[Event | None]:
        decoded: list[Event | None] = []
        for raw, entry in zip(lines, entries, strict=True):
            try:
                decoded.append(decode_event(raw, election, entry))
            except InvalidEvent:
                decoded.append(None)
        return decoded

    events = decode_all()
    counts = [0, 0, 0]  # changes, rejected, stale

    def apply_all(tally: Tally) -> None:
        changes = rejected = stale = 0
        for seq, event in zip(seqs, events, strict=True):
            if event is None:
                rejected += 1
                continue
            try:
                applied = tally.apply(seq, event)
            except InvalidEvent:
                rejected += 1
                continue
            changes += len(applied.changes)
            stale += applied.stale
        counts[:] = [changes, rejected, stale]

    def both(tally: Tally) -> None:
        for raw, seq, entry in zip(lines, seqs, entries, strict=True):
            try:
                tally.apply(seq, decode_event(raw, election, entry))
            except InvalidEvent:
                pass

    def fresh_tally() -> Tally:
        return Tally(election)

    return Measured(
        workload,
        decode=_best(lambda _: decode_all(), lambda: None, runs),
        apply=_best(apply_all, fresh_tally, runs),
        both=_best(both, fresh_tally, runs),
        changes=counts[0],
        rejected=counts[1],
        stale=counts[2],
    )


def _best(run: Callable[[T], object], setup: Callable[[], T], runs: int) -> float:
    """The fastest of ``runs`` timings of ``run(setup())``; the setup is not timed."""
    best = float("inf")
    for _ in range(runs):
        prepared = setup()
        started = time.perf_counter()
        run(prepared)
        best = min(best, time.perf_counter() - started)
    return best


def _table(rows: Sequence[Measured]) -> str:
    header = (
        "workload",
        "events",
        "decode µs/ev",
        "apply µs/ev",
        "events/s",
        "changes/ev",
        "rejected",
        "stale",
    )
    body = []
    for row in rows:
        n = len(row.workload.lines)
        body.append(
            (
                row.workload.name,
                f"{n:,}",
                f"{row.decode / n * 1e6:.1f}",
                f"{row.apply / n * 1e6:.1f}",
                f"{n / row.both:,.0f}",
                f"{row.changes / n:.2f}",
                f"{row.rejected:,}",
                f"{row.stale:,}",
            )
        )
    widths = [max(len(r[i]) for r in (header, *body)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join((first, *rest))

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in body)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clients.bench_core",
        description="Events per second through the tally core (decode + apply, patches "
        "computed), for a bundled night and for seeded random events. Prints a table; "
        "asserts nothing about time.",
    )
    parser.add_argument(
        "--election",
        default="uk-2024",
        choices=available(),
        help="bundled election whose definition and night to use (default: %(default)s)",
    )
    parser.add_argument(
        "--runs", type=int, default=5, help="runs of each workload; the best counts (default: 5)"
    )
    parser.add_argument(
        "--random-events",
        type=int,
        default=100_000,
        help="how many random events; 0 skips that workload (default: 100,000)",
    )
    parser.add_argument(
        "--seed", type=int, default=2024, help="seed of the random events (default: %(default)s)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.runs < 1:
        build_parser().error("--runs must be 1 or more")
    election = load_election(election_path(args.election))
    night = [line for line in night_path(args.election).read_bytes().splitlines() if line.strip()]
    workloads = [Workload(f"{args.election} night", night)]
    if args.random_events > 0:
        real = [orjson.loads(line) for line in night]
        declarations = [d for d in real if d["type"] == "declaration"]
        lines = random_events(election, declarations, args.random_events, args.seed)
        workloads.append(Workload(f"random (seed {args.seed})", lines))

    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    print(f"Python {platform.python_version()} ({platform.python_implementation()})")
    print(f"{platform.machine()}, {cores} cores ({usable} usable); best of {args.runs} runs")
    print()
    rows = [measure(election, workload, args.runs) for workload in workloads]
    print(_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
