"""Building each channel's state (a plain JSON-ready dict) from the tally's records.

State never holds None: a field with no value is left out, because in a merge patch null
means "remove". Shares and turnout are percentages to two decimals, rounded halves up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import zip_longest
from typing import Any

from service.core.election import Area, Constituency, Election
from service.core.events import Candidate, Declaration
from service.core.majorities import add_majorities, update_majorities, working_majority

State = dict[str, Any]


@dataclass(frozen=True, slots=True)
class SeatRecord:
    """What the tally knows of one seat; replaced whole on every change."""

    status: str = "awaiting"
    winner_name: str | None = None
    winner_party: str | None = None
    declaration: Declaration | None = None
    declared_at: str | None = None
    electorate: int | None = None
    """From the declaration when it gave one; else the definition's."""
    revision: int | None = None
    corrections: int = 0

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        """The declared figures, winner first; none before a declaration."""
        return () if self.declaration is None else self.declaration.candidates

    def same_result(self, other: SeatRecord) -> bool:
        """Equal in everything a client sees.

        The declaration's own revision and time are bookkeeping: the record's ``declared_at``
        is the one shown, and a resend with a new revision is not a correction.
        """
        return (
            self.status == other.status
            and self.winner_name == other.winner_name
            and self.winner_party == other.winner_party
            and self.candidates == other.candidates
            and self.declared_at == other.declared_at
            and self.electorate == other.electorate
        )


@dataclass(slots=True)
class Totals:
    """Running sums over a set of seats, updated by adding, removing and replacing seat records."""

    parties: tuple[str, ...]
    seats: dict[str, int] = field(default_factory=dict)
    gains: dict[str, int] = field(default_factory=dict)
    losses: dict[str, int] = field(default_factory=dict)
    votes: dict[str, int] = field(default_factory=dict)
    valid_votes: int = 0
    declared: int = 0
    touched: set[str] = field(default_factory=set)
    """Parties whose votes or seats changed since the last ``update_parties``."""
    seated: set[str] = field(default_factory=set)
    """The touched parties whose seats, gains or losses changed: winners and previous holders."""
    _shared_over: int = 0
    """The valid votes that the shares in the state were last computed over."""

    def __post_init__(self) -> None:
        for counter in (self.seats, self.gains, self.losses, self.votes):
            counter.update(dict.fromkeys(self.parties, 0))

    def add(self, record: SeatRecord, previous: str, sign: int = 1) -> None:
        """Add (sign=1) or remove (sign=-1) one seat's contribution."""
        self._count_seat(record, previous, sign)
        if record.declaration is not None:
            votes, touched = self.votes, self.touched
            valid = 0
            for candidate in record.declaration.candidates:
                votes[candidate.party] += sign * candidate.votes
                valid += candidate.votes
                touched.add(candidate.party)
            self.valid_votes += sign * valid

    def replace(
        self, old: SeatRecord, new: SeatRecord, previous: str, moves: dict[str, int]
    ) -> None:
        """Replace one seat's ``old`` record with ``new``; ``moves`` is ``vote_moves(old, new)``.

        Only what differs is counted again: a correction to one candidate moves one party.
        """
        if old.winner_party != new.winner_party:
            self._count_seat(old, previous, -1)
            self._count_seat(new, previous, 1)
        if moves:
            votes = self.votes
            for party, count in moves.items():
                votes[party] += count
            self.valid_votes += sum(moves.values())
            self.touched.update(moves)

    def _count_seat(self, record: SeatRecord, previous: str, sign: int) -> None:
        """Add or remove the seat itself: declared, and its winner's seats, gains, losses."""
        winner = record.winner_party
        if winner is None:
            return  # an awaiting seat counts for nothing
        self.declared += sign
        self.seats[winner] += sign
        self.seated.add(winner)
        if winner != previous:
            self.gains[winner] += sign
            self.losses[previous] += sign
            self.seated.add(previous)
        self.touched.update(self.seated)

    def settle(self) -> None:
        """The states were just built afresh from these totals: nothing is pending."""
        self.touched.clear()
        self.seated.clear()
        self._shared_over = self.valid_votes

    def party_entry(self, code: str) -> State:
        """A party's counts over these seats, as the region and nation states show them."""
        return {
            "seats": self.seats[code],
            "gains": self.gains[code],
            "losses": self.losses[code],
            "net": self.gains[code] - self.losses[code],
            "votes": self.votes[code],
            "share": percent(self.votes[code], self.valid_votes),
        }

    def update_parties(self, parties: State, majority: int | None = None) -> State:
        """Bring ``parties`` (a state's party entries) up to date, in place.

        Returns the merge patch that did it. Only touched parties can have new counts; when
        the valid votes have moved, any party's share can have moved too. ``majority`` (the
        national state's) also keeps each party's ``seats_to_majority``. Clears ``touched``
        and ``seated``.

        This diffs and applies in one pass, where building each entry afresh, diffing it
        and merging the patch did the work three times over; it runs three times for every
        result. ``Tally.recompute`` checks that it agrees with building from scratch.
        """
        valid = self.valid_votes
        twice = 2 * valid  # for percent(), written out: this is the tally's innermost loop
        shares_moved = valid != self._shared_over
        self._shared_over = valid
        touched, seated = self.touched, self.seated
        all_seats, all_gains, all_losses, all_votes = (
            self.seats,
            self.gains,
            self.losses,
            self.votes,
        )
        patch: State = {}
        # In the state's order (the definition's), so that every instance sends the same bytes.
        for code, entry in parties.items():
            votes = all_votes[code]
            if code not in touched:
                # Only its share can have moved; a party without votes keeps its 0% (losing
                # its last vote touches it).
                if votes and shares_moved:
                    share = (20_000 * votes + valid) // twice / 100
                    if entry["share"] != share:
                        entry["share"] = share
                        patch[code] = {"share": share}
                continue
            # Each new figure goes to the state and to the patch alike: scalars only, so the
            # patch shares nothing with the state.
            changed: State = {}
            if code in seated:
                seats, gains, losses = all_seats[code], all_gains[code], all_losses[code]
                if entry["seats"] != seats:
                    entry["seats"] = changed["seats"] = seats
                if entry["gains"] != gains:
                    entry["gains"] = changed["gains"] = gains
                if entry["losses"] != losses:
                    entry["losses"] = changed["losses"] = losses
                if entry["net"] != gains - losses:
                    entry["net"] = changed["net"] = gains - losses
            if entry["votes"] != votes:
                entry["votes"] = changed["votes"] = votes
            share = (20_000 * votes + valid) // twice / 100 if valid else 0.0
            if entry["share"] != share:
                entry["share"] = changed["share"] = share
            if majority is not None and "seats" in changed:
                to_majority = max(0, majority - changed["seats"])
                if entry["seats_to_majority"] != to_majority:
                    entry["seats_to_majority"] = changed["seats_to_majority"] = to_majority
            if changed:
                patch[code] = changed
        touched.clear()
        seated.clear()
        return patch


def vote_moves(old: SeatRecord, new: SeatRecord) -> dict[str, int]:
    """Per party, the votes that replacing ``old`` with ``new`` adds (or, below zero, takes
    away); parties whose votes stay as they were are left out."""
    moves: dict[str, int] = {}
    # Side by side: a correction mostly leaves the table's order and nearly every figure as
    # they were, and a pair with the same party and votes moves nothing.
    for was, now in zip_longest(old.candidates, new.candidates):
        if was is not None and now is not None and was.party == now.party:
            if was.votes != now.votes:
                moves[was.party] = moves.get(was.party, 0) + now.votes - was.votes
            continue
        if was is not None:
            moves[was.party] = moves.get(was.party, 0) - was.votes
        if now is not None:
            moves[now.party] = moves.get(now.party, 0) + now.votes
    return {party: count for party, count in moves.items() if count}


def percent(part: int, whole: int) -> float:
    """``part`` as a percentage of ``whole``, to two decimals (exactly, halves up); 0 of 0."""
    # Integer arithmetic: exact, and several times faster than round(100.0 * part / whole, 2).
    return (20_000 * part + whole) // (2 * whole) / 100 if whole else 0.0


def iso_from_ms(ms: int) -> str:
    """A stream entry's time as ISO 8601, the same on every instance."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def national_state(election: Election, totals: Totals, exit_poll: State | None) -> State:
    """The national state built from scratch."""
    parties: State = {}
    for code in election.parties:
        entry = totals.party_entry(code)
        entry["name"] = election.parties[code].name
        entry["seats_to_majority"] = max(0, election.majority - entry["seats"])
        parties[code] = entry
    state = national_headline(election, totals)
    if exit_poll is not None:
        state["exit_poll"] = exit_poll
    state["parties"] = parties
    add_majorities(election, totals.seats, state)
    return state


def update_national(election: Election, totals: Totals, state: State) -> State:
    """Bring the national ``state`` up to what ``totals`` now give (exit poll aside), in place.

    Returns the merge patch from the old state to the new. The same figures as
    ``national_headline``, compared one by one rather than built and diffed.
    """
    patch: State = {}
    was_majority_party = state.get("majority_party")
    declared = totals.declared
    if state["declared"] != declared:
        patch["declared"] = state["declared"] = declared
        patch["seats_to_declare"] = state["seats_to_declare"] = election.total_seats - declared
    fresh = _leading(election, totals) if declared else {}
    for key in _OPTIONAL_NATIONAL:
        value = fresh.get(key)
        if value is None:
            if key in state:
                del state[key]
                patch[key] = None
        elif state.get(key) != value:
            patch[key] = state[key] = value
    parties = totals.update_parties(state["parties"], election.majority)
    if parties:
        patch["parties"] = parties
    update_majorities(election, totals.seats, state, patch, was_majority_party)
    return patch


_OPTIONAL_NATIONAL = ("leader", "seats_to_majority", "majority_party")


def national_headline(election: Election, totals: Totals) -> State:
    """The national state's top-level figures: everything but the parties and exit poll."""
    state: State = {
        "election": election.id,
        "total_seats": election.total_seats,
        "majority": election.majority,
    }
    working = working_majority(election, totals.seats)
    if working is not None:
        state["working_majority"] = working
    state |= {
        "declared": totals.declared,
        "seats_to_declare": election.total_seats - totals.declared,
    }
    if totals.declared:
        state.update(_leading(election, totals))
    return state


def _leading(election: Election, totals: Totals) -> State:
    """``leader``, its ``seats_to_majority`` and ``majority_party`` (when it has one)."""
    seats, votes = totals.seats, totals.votes
    most = max(seats.values())
    leaders = [code for code, count in seats.items() if count == most]  # in party order
    # Most seats; a tie goes to most votes, then to the first code.
    leader = min(leaders, key=lambda code: (-votes[code], code)) if len(leaders) > 1 else leaders[0]
    figures: State = {"leader": leader, "seats_to_majority": max(0, election.majority - most)}
    if most >= election.majority:
        figures["majority_party"] = leader
    return figures


def area_state(area: Area, totals: Totals) -> State:
    """A region's or nation's state built from scratch."""
    return {
        "name": area.name,
        "slug": area.slug,
        "total_seats": len(area.constituencies),
        "declared": totals.declared,
        "seats_to_declare": len(area.constituencies) - totals.declared,
        "constituencies": list(area.constituencies),
        "parties": {code: totals.party_entry(code) for code in totals.parties},
    }


def update_area(area: Area, totals: Totals, state: State) -> State:
    """Bring a region's or nation's ``state`` up to what ``totals`` now give, in place.

    Returns the merge patch from the old state to the new.
    """
    patch: State = {}
    if state["declared"] != totals.declared:
        patch["declared"] = state["declared"] = totals.declared
        patch["seats_to_declare"] = state["seats_to_declare"] = (
            len(area.constituencies) - totals.declared
        )
    parties = totals.update_parties(state["parties"])
    if parties:
        patch["parties"] = parties
    return patch


def constituency_state(seat: Constituency, record: SeatRecord) -> State:
    electorate = seat.electorate if record.electorate is None else record.electorate
    state: State = {
        "id": seat.id,
        "name": seat.name,
        "region": seat.region,
        "nation": seat.nation,
        "electorate": electorate,
        "previous": seat.previous,
        "status": record.status,
    }
    if record.winner_party is None:
        return state
    state["winner"] = {"name": record.winner_name, "party": record.winner_party}
    if record.winner_party == seat.previous:
        state["result"] = "hold"
    else:
        state["result"] = "gain"
        state["gain_from"] = seat.previous
    declaration = record.declaration
    if declaration is not None:
        candidates = declaration.candidates
        valid = sum([c.votes for c in candidates])
        runner_up = candidates[1].votes if len(candidates) > 1 else 0
        state["majority"] = candidates[0].votes - runner_up
        if electorate:
            state["turnout"] = percent(valid, electorate)
        state["valid_votes"] = valid
        twice = 2 * valid  # percent(), written out: it runs for every candidate
        state["candidates"] = [
            {
                "name": c.name,
                "party": c.party,
                "votes": c.votes,
                "share": (20_000 * c.votes + valid) // twice / 100 if valid else 0.0,
            }
            for c in candidates
        ]
    if record.declared_at is not None:
        state["declared_at"] = record.declared_at
    state["corrections"] = record.corrections
    return state
