"""Running sums of seats, gains, losses and votes over a set of seats, kept per party.

Shares are percentages to two decimals, rounded halves up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, overload

from service.core.records import SeatRecord
from service.core.shapes import NationalParty, PartyFigures, Patch


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

    def party_entry(self, code: str) -> PartyFigures:
        """A party's counts over these seats, as the region and nation states show them."""
        return {
            "seats": self.seats[code],
            "gains": self.gains[code],
            "losses": self.losses[code],
            "net": self.gains[code] - self.losses[code],
            "votes": self.votes[code],
            "share": percent(self.votes[code], self.valid_votes),
        }

    @overload
    def update_parties(self, parties: Mapping[str, PartyFigures]) -> Patch: ...

    @overload
    def update_parties(self, parties: Mapping[str, NationalParty], majority: int) -> Patch: ...

    def update_parties(self, parties: Mapping[str, Any], majority: int | None = None) -> Patch:
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
        patch: Patch = {}
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
            changed: Patch = {}
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


def percent(part: int, whole: int) -> float:
    """``part`` as a percentage of ``whole``, to two decimals (exactly, halves up); 0 of 0."""
    # Integer arithmetic: exact, and several times faster than round(100.0 * part / whole, 2).
    return (20_000 * part + whole) // (2 * whole) / 100 if whole else 0.0
