"""Election nights as data: load a night's events and plan their replay.

A *night* is a list of stream events (see "Events on the stream" in DESIGN.md) in the order they
happened: usually an exit poll, then one declaration per seat. The bundled nights (``uk-2024``,
``uk-2019``, ``uk-2017``) are built from the House of Commons Library results; any JSONL file of
events, one JSON object per line, can be replayed too.

Planning turns a night into a timed script for the feeder: it orders the events by their time
on the night, adds the colour that the Library data does not record (flashes, recounts,
corrections) on request, and numbers every per-seat event with a ``revision``, as a live feed
would. Everything here is pure: no asyncio, no Redis, no clock.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from service.data import election_path, night_path

__all__ = [
    "BUNDLED_NIGHTS",
    "NightError",
    "Planned",
    "declared_seats",
    "first_seats",
    "limit_plan",
    "load_night",
    "notable_recount_seats",
    "plan_night",
]

BUNDLED_NIGHTS = ("uk-2024", "uk-2019", "uk-2017")

#: Event types that concern one constituency (and so carry a ``revision``).
PER_SEAT_TYPES = frozenset({"declaration", "flash", "status", "retraction"})

FLASH_LEAD = timedelta(minutes=5)
RECOUNT_LEAD = timedelta(minutes=45)
CORRECTION_DELAY = timedelta(minutes=30)
#: A seat whose majority is under this fraction of its valid votes "has a recount".
CLOSE_RESULT = 0.005
RECOUNT_NOTE = "Recount under way"
#: The most a correction moves the runner-up's votes, either way.
CORRECTION_MAX_CHANGE = 50

#: Seats known to have been recounted on the 2024 night, found by name in its definition.
NOTABLE_RECOUNT_ELECTION = "uk-2024"
NOTABLE_RECOUNT_NAMES = (
    "Peterborough",
    "North West Cambridgeshire",
    "Inverness, Skye and West Ross-shire",
)
PETERBOROUGH_2024 = "E14001425"

# Used only when no event of a night carries a time at all.
_NO_TIME = datetime(1970, 1, 1, tzinfo=UTC)


class NightError(ValueError):
    """A night that cannot be loaded or planned; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Planned:
    """One event of a replay and the moment of the night at which it is sent."""

    at: datetime
    event: dict[str, Any]


# --------------------------------------------------------------------------- loading


def resolve_night(source: str) -> Path:
    """The file behind ``source``: an existing path, or else the name of a bundled night."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    looks_like_path = "/" in source or "\\" in source or path.suffix != ""
    if not looks_like_path:
        try:
            bundled = night_path(source)
        except (KeyError, ValueError, OSError) as exc:
            raise NightError(_unknown_night(source)) from exc
        if bundled.is_file():
            return bundled
        raise NightError(_unknown_night(source))
    raise NightError(f"{source}: no such file")


def _unknown_night(source: str) -> str:
    names = ", ".join(BUNDLED_NIGHTS)
    return f"{source!r} is neither a file nor a bundled night (bundled: {names})"


def load_night(source: str) -> list[dict[str, Any]]:
    """Read a night: a bundled name (``uk-2024``, ``uk-2019``, ``uk-2017``) or a JSONL path.

    Every non-blank line must be a JSON object with a string ``type``, and any
    ``published_at`` or ``declared_at`` must be an ISO 8601 time. Other checks are left to the
    service, so that a file of deliberately bad events can still be replayed at it.
    Raises :class:`NightError` naming the file and line of the first problem.
    """
    path = resolve_night(source)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise NightError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    events: list[dict[str, Any]] = []
    for lineno, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise NightError(f"{where}: not valid JSON ({exc})") from exc
        if not isinstance(event, dict):
            raise NightError(f"{where}: expected a JSON object, got {type(event).__name__}")
        if "type" not in event:
            raise NightError(f'{where}: event has no "type"')
        if not isinstance(event["type"], str) or not event["type"]:
            raise NightError(f'{where}: "type" must be a non-empty string')
        try:
            _event_time(event)
        except ValueError as exc:
            raise NightError(f"{where}: {exc}") from exc
        events.append(event)
    if not events:
        raise NightError(f"{path}: no events")
    return events


# --------------------------------------------------------------------------- planning


def plan_night(
    events: Sequence[Mapping[str, Any]],
    *,
    flashes: bool = False,
    recounts: bool = False,
    corrections: int = 0,
    seed: int = 0,
    recount_seats: Iterable[str] | None = None,
) -> list[Planned]:
    """Turn a night's events into a replay script, sorted by time on the night.

    Times come from each event's ``published_at`` or ``declared_at``; an event without one
    follows the event before it. The input is not modified. On request the plan also has:

    - ``flashes``: a ``flash`` naming the winner (the declaration's ``winner``, or else the
      top-voted candidate) five minutes before each seat's first declaration, never before the
      exit poll.
    - ``recounts``: a ``status`` ``recount`` 45 minutes before the first declaration of each
      seat in ``recount_seats`` (by default :func:`notable_recount_seats`: Peterborough, North
      West Cambridgeshire and Inverness, Skye and West Ross-shire in 2024) and of every seat
      whose majority is under 0.5% of its valid votes. The results data has no record of
      which seats were really recounted: the close-result rule is only a proxy for one.
    - ``corrections``: that many declared seats, drawn at random with ``seed``, get a
      correction 30 minutes after their (last) declaration: the same declaration with the
      runner-up's votes moved by a few votes, never enough to change the winner or tie with
      them. Seats that cannot be corrected that way (a single candidate) are never drawn.

    Within a seat the order is always recount status, flash, declaration, correction. Every
    per-seat event gets a ``revision``: 1, 2, 3… per seat in the order the plan plays them
    (any revision in the input is replaced).
    """
    if corrections < 0:
        raise ValueError("corrections must be >= 0")
    times = _event_times(events)
    poll_at = next(
        (times[i] for i, event in enumerate(events) if event.get("type") == "exit_poll"), None
    )
    notable = frozenset(recount_seats) if recount_seats is not None else notable_recount_seats()

    # Sort key: (time, exit polls first at the same instant, input position, order in the seat).
    items: list[tuple[datetime, int, int, int, dict[str, Any]]] = []
    first_declaration: dict[str, int] = {}
    last_declaration: dict[str, int] = {}
    for i, event in enumerate(events):
        items.append((times[i], 0 if event.get("type") == "exit_poll" else 1, i, 2, dict(event)))
        seat = _seat(event)
        if seat is not None and event.get("type") == "declaration":
            first_declaration.setdefault(seat, i)
            last_declaration[seat] = i

    for seat, i in first_declaration.items():
        declaration, at = events[i], times[i]
        floor = poll_at if poll_at is not None and poll_at <= at else None
        if recounts and (seat in notable or _is_close(declaration)):
            recount_at = _clamp(at - RECOUNT_LEAD, floor, at)
            status = {
                "type": "status",
                "constituency": seat,
                "status": "recount",
                "note": RECOUNT_NOTE,
            }
            items.append((recount_at, 1, i, 0, status))
            floor = recount_at
        winner = _winner(declaration) if flashes else None
        if winner is not None:
            flash = {"type": "flash", "constituency": seat, "winner": winner}
            items.append((_clamp(at - FLASH_LEAD, floor, at), 1, i, 1, flash))

    if corrections:
        rng = random.Random(seed)
        eligible = [s for s, i in last_declaration.items() if _runner_up(events[i]) is not None]
        chosen = set(rng.sample(eligible, min(corrections, len(eligible))))
        for seat in eligible:  # night order, so the draw of vote changes is reproducible
            if seat in chosen:
                i = last_declaration[seat]
                corrected = _corrected(events[i], rng)
                items.append((times[i] + CORRECTION_DELAY, 1, i, 3, corrected))

    items.sort(key=lambda item: item[:4])
    revisions: dict[str, int] = {}
    plan: list[Planned] = []
    for at, _, _, _, event in items:
        seat = _seat(event)
        if seat is not None and event.get("type") in PER_SEAT_TYPES:
            revisions[seat] = revisions.get(seat, 0) + 1
            event["revision"] = revisions[seat]
        plan.append(Planned(at, event))
    return plan


def declared_seats(plan: Iterable[Planned]) -> list[str]:
    """The seats that a plan declares, in the order of their first declaration."""
    seen: dict[str, None] = {}
    for item in plan:
        seat = _seat(item.event)
        if seat is not None and item.event.get("type") == "declaration":
            seen.setdefault(seat, None)
    return list(seen)


def limit_plan(plan: Sequence[Planned], seats: int) -> list[Planned]:
    """The plan cut down to its first ``seats`` declared seats.

    Kept: every per-seat event of those seats (their recounts, flashes and corrections, even a
    correction that comes after the cut), and every other event (an exit poll) up to the last
    of those first declarations. Events of later seats are dropped.
    """
    if seats < 0:
        raise ValueError("seats must be >= 0")
    allowed: set[str] = set()
    cut = len(plan)
    for k, item in enumerate(plan):
        seat = _seat(item.event)
        if seat is None or item.event.get("type") != "declaration" or seat in allowed:
            continue
        if len(allowed) == seats:
            cut = k
            break
        allowed.add(seat)
    kept: list[Planned] = []
    for k, item in enumerate(plan):
        seat = _seat(item.event)
        if seat is not None and item.event.get("type") in PER_SEAT_TYPES:
            if seat in allowed:
                kept.append(item)
        elif k < cut:
            kept.append(item)
    return kept


def first_seats(events: Sequence[Mapping[str, Any]], seats: int) -> list[dict[str, Any]]:
    """The night cut down to its first ``seats`` declared seats, in night order.

    Cutting the night before planning it (rather than cutting the plan) means that
    ``corrections`` are drawn from the seats that will be played.
    """
    return [dict(item.event) for item in limit_plan(plan_night(events), seats)]


@functools.cache
def notable_recount_seats() -> frozenset[str]:
    """IDs of the seats recounted on the 2024 night that the close-result rule would miss.

    Looked up by name in the bundled 2024 election definition; Peterborough's ID is known even
    when the definition is not there.
    """
    ids = {PETERBOROUGH_2024}
    try:
        definition = orjson.loads(election_path(NOTABLE_RECOUNT_ELECTION).read_bytes())
    except (OSError, ValueError):
        return frozenset(ids)
    wanted = {name.casefold() for name in NOTABLE_RECOUNT_NAMES}
    for seat in definition.get("constituencies", []):
        if isinstance(seat, dict) and str(seat.get("name", "")).casefold() in wanted:
            ids.add(str(seat["id"]))
    return frozenset(ids)


# --------------------------------------------------------------------------- helpers


def _seat(event: Mapping[str, Any]) -> str | None:
    seat = event.get("constituency")
    return seat if isinstance(seat, str) and seat else None


def _event_time(event: Mapping[str, Any]) -> datetime | None:
    for key in ("declared_at", "published_at"):
        value = event.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"{key} must be an ISO 8601 string, got {value!r}")
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{key} is not an ISO 8601 time: {value!r}") from None
        return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return None


def _event_times(events: Sequence[Mapping[str, Any]]) -> list[datetime]:
    parsed: list[datetime | None] = []
    for n, event in enumerate(events, start=1):
        try:
            parsed.append(_event_time(event))
        except ValueError as exc:
            raise NightError(f"event {n}: {exc}") from exc
    previous = next((at for at in parsed if at is not None), _NO_TIME)
    times: list[datetime] = []
    for at in parsed:
        previous = at if at is not None else previous
        times.append(previous)
    return times


def _clamp(at: datetime, low: datetime | None, high: datetime) -> datetime:
    if low is not None and at < low:
        at = low
    return min(at, high)


def _candidates(declaration: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The declaration's candidates if they are well-formed enough to reason about."""
    candidates = declaration.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        return None
    for candidate in candidates:
        if not isinstance(candidate, dict):
            return None
        votes = candidate.get("votes")
        if not isinstance(votes, int) or isinstance(votes, bool) or votes < 0:
            return None
        if not isinstance(candidate.get("name"), str) or not isinstance(
            candidate.get("party"), str
        ):
            return None
    return candidates


def _winner(declaration: Mapping[str, Any]) -> dict[str, str] | None:
    """The declared winner: the ``winner`` field, else the top-voted (None on an open tie)."""
    given = declaration.get("winner")
    if isinstance(given, dict):
        name, party = given.get("name"), given.get("party")
        if isinstance(name, str) and isinstance(party, str):
            return {"name": name, "party": party}
    candidates = _candidates(declaration)
    if candidates is None:
        return None
    ranked = sorted(candidates, key=lambda c: c["votes"], reverse=True)
    if len(ranked) > 1 and ranked[0]["votes"] == ranked[1]["votes"]:
        return None
    return {"name": ranked[0]["name"], "party": ranked[0]["party"]}


def _is_close(declaration: Mapping[str, Any]) -> bool:
    """Whether the majority is under :data:`CLOSE_RESULT` of the valid votes."""
    candidates = _candidates(declaration)
    if candidates is None or len(candidates) < 2:
        return False
    votes = sorted((c["votes"] for c in candidates), reverse=True)
    valid = sum(votes)
    return bool(valid > 0 and votes[0] - votes[1] < CLOSE_RESULT * valid)


def _runner_up(declaration: Mapping[str, Any]) -> int | None:
    """Index of the candidate placed second, if a correction can move their votes."""
    candidates = _candidates(declaration)
    winner = _winner(declaration)
    if candidates is None or winner is None or len(candidates) < 2:
        return None
    key = (winner["name"], winner["party"])
    winners = [i for i, c in enumerate(candidates) if (c["name"], c["party"]) == key]
    if len(winners) != 1:
        return None
    others = [i for i in range(len(candidates)) if i != winners[0]]
    runner = max(others, key=lambda i: candidates[i]["votes"])  # first of equals
    if candidates[runner]["votes"] > candidates[winners[0]]["votes"]:
        return None  # the winner field disagrees with the votes: leave it alone
    up, down = _room(candidates[winners[0]]["votes"], candidates[runner]["votes"])
    return runner if up + down > 0 else None


def _room(winner_votes: int, runner_votes: int) -> tuple[int, int]:
    """How far the runner-up's votes may go up and down without reaching the winner's or 0."""
    up = max(0, min(CORRECTION_MAX_CHANGE, winner_votes - runner_votes - 1))
    down = min(CORRECTION_MAX_CHANGE, runner_votes)
    return up, down


def _corrected(declaration: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
    runner = _runner_up(declaration)
    candidates = _candidates(declaration)
    winner = _winner(declaration)
    assert runner is not None and candidates is not None and winner is not None
    winner_votes = max(c["votes"] for c in candidates)
    up, down = _room(winner_votes, candidates[runner]["votes"])
    step = rng.randint(1, up + down)
    change = step if step <= up else up - step
    fixed = [dict(c) for c in candidates]
    fixed[runner]["votes"] += change
    fixed.sort(key=lambda c: c["votes"], reverse=True)  # stable: the winner stays first
    corrected = dict(declaration)
    corrected["candidates"] = fixed
    return corrected
