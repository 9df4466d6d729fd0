"""Building each channel's state (a plain JSON-ready dict) from the tally's records.

State never holds None: a field with no value is left out, because in a merge patch null
means "remove". Shares and turnout are percentages rounded to two decimals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from service.core.election import Area, Constituency, Election
from service.core.events import Candidate, Declaration

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
    """Running sums over a set of seats, updated by adding and removing seat records."""

    parties: tuple[str, ...]
    seats: dict[str, int] = field(default_factory=dict)
    gains: dict[str, int] = field(default_factory=dict)
    losses: dict[str, int] = field(default_factory=dict)
    votes: dict[str, int] = field(default_factory=dict)
    valid_votes: int = 0
    declared: int = 0
    touched: set[str] = field(default_factory=set)
    """Parties whose counts changed since the last ``patch_parties``."""
    _shared_over: int = 0
    """The valid votes that the shares in the state were last computed over."""

    def __post_init__(self) -> None:
        for counter in (self.seats, self.gains, self.losses, self.votes):
            counter.update(dict.fromkeys(self.parties, 0))

    def add(self, record: SeatRecord, previous: str, sign: int = 1) -> None:
        """Add (sign=1) or remove (sign=-1) one seat's contribution."""
        if record.winner_party is not None:
            self.declared += sign
            self.seats[record.winner_party] += sign
            self.touched.add(record.winner_party)
            if record.winner_party != previous:
                self.gains[record.winner_party] += sign
                self.losses[previous] += sign
                self.touched.add(previous)
        if record.declaration is not None:
            for candidate in record.declaration.candidates:
                self.votes[candidate.party] += sign * candidate.votes
                self.valid_votes += sign * candidate.votes
                self.touched.add(candidate.party)

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

    def patch_parties(self, current: State, extra: Callable[[str, State], None]) -> State:
        """The merge patch taking ``current`` (a state's ``parties``) to these totals.

        Only touched parties are rebuilt; the others can only have a new share. ``extra``
        adds the fields a national entry has beyond an area's. Clears ``touched``.
        """
        patch: State = {}
        for code in self.touched:
            entry = self.party_entry(code)
            extra(code, entry)
            old = current[code]
            changed = {key: value for key, value in entry.items() if old[key] != value}
            if changed:
                patch[code] = changed
        if self.valid_votes != self._shared_over:
            # Every party's share moves when the valid votes do.
            self._shared_over = self.valid_votes
            for code in self.parties:
                if code not in self.touched:
                    share = percent(self.votes[code], self.valid_votes)
                    if current[code]["share"] != share:
                        patch[code] = {"share": share}
        self.touched.clear()
        return patch


def percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def iso_from_ms(ms: int) -> str:
    """A stream entry's time as ISO 8601, the same on every instance."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def national_state(election: Election, totals: Totals, exit_poll: State | None) -> State:
    """The national state built from scratch."""
    parties: State = {}
    for code in election.parties:
        entry = totals.party_entry(code)
        _national_extra(election, code, entry)
        parties[code] = entry
    state = national_headline(election, totals)
    if exit_poll is not None:
        state["exit_poll"] = exit_poll
    state["parties"] = parties
    return state


def national_patch(election: Election, totals: Totals, current: State) -> State:
    """The merge patch from ``current`` to the state ``totals`` now give (exit poll aside)."""
    patch: State = {}
    fresh = national_headline(election, totals)
    for key, value in fresh.items():
        if current.get(key) != value:
            patch[key] = value
    for key in _OPTIONAL_NATIONAL:
        if key in current and key not in fresh:
            patch[key] = None
    parties = totals.patch_parties(
        current["parties"], lambda code, entry: _national_extra(election, code, entry, False)
    )
    if parties:
        patch["parties"] = parties
    return patch


_OPTIONAL_NATIONAL = ("leader", "seats_to_majority", "majority_party")


def national_headline(election: Election, totals: Totals) -> State:
    """The national state's top-level figures: everything but the parties and exit poll."""
    state: State = {
        "election": election.id,
        "total_seats": election.total_seats,
        "majority": election.majority,
        "declared": totals.declared,
        "seats_to_declare": election.total_seats - totals.declared,
    }
    if totals.declared:
        seats, votes = totals.seats, totals.votes
        leader = min(totals.parties, key=lambda code: (-seats[code], -votes[code], code))
        state["leader"] = leader
        state["seats_to_majority"] = max(0, election.majority - seats[leader])
        if seats[leader] >= election.majority:
            state["majority_party"] = leader
    return state


def _national_extra(election: Election, code: str, entry: State, name: bool = True) -> None:
    if name:
        entry["name"] = election.parties[code].name
    entry["seats_to_majority"] = max(0, election.majority - entry["seats"])


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


def area_patch(area: Area, totals: Totals, current: State) -> State:
    """The merge patch from ``current`` to the area's state that ``totals`` now give."""
    patch: State = {}
    if current["declared"] != totals.declared:
        patch["declared"] = totals.declared
        patch["seats_to_declare"] = len(area.constituencies) - totals.declared
    parties = totals.patch_parties(current["parties"], _no_extra)
    if parties:
        patch["parties"] = parties
    return patch


def _no_extra(code: str, entry: State) -> None:
    pass


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
        valid = sum(c.votes for c in candidates)
        runner_up = candidates[1].votes if len(candidates) > 1 else 0
        state["majority"] = candidates[0].votes - runner_up
        if electorate:
            state["turnout"] = percent(valid, electorate)
        state["valid_votes"] = valid
        state["candidates"] = [
            {"name": c.name, "party": c.party, "votes": c.votes, "share": percent(c.votes, valid)}
            for c in candidates
        ]
    if record.declared_at is not None:
        state["declared_at"] = record.declared_at
    state["corrections"] = record.corrections
    return state
