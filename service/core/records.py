"""What the tally records of each seat, and what a change of record moves.

A record holds None where a seat has no value; the states built from it leave such a field
out instead (service.core.shapes).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import zip_longest

from service.core.events import Candidate, Declaration
from service.core.identity import same_candidates, same_instant, same_name


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
        """Equal in everything a client sees, however each was written.

        Names are compared as ``identity.same_name`` says and times as instants: a resend
        spelled another way is a repeat, and the spelling first shown stays. The
        declaration's own revision and time are bookkeeping: the record's ``declared_at`` is
        the one shown, and a resend with a new revision is not a correction.
        """
        return (
            self.status == other.status
            and self.winner_party == other.winner_party
            and same_name(self.winner_name, other.winner_name)
            and same_candidates(self.candidates, other.candidates)
            and same_instant(self.declared_at, other.declared_at)
            and self.electorate == other.electorate
        )


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
