"""Building each channel's state from the tally's records and totals, and bringing it up to
date in place with the merge patch of the change.

State never holds None: a field with no value is left out, because in a merge patch null
means "remove". Shares and turnout are percentages to two decimals, rounded halves up.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, NotRequired, TypedDict

from service.core.election import Area, Constituency, Election
from service.core.majorities import add_majorities, update_majorities, working_majority
from service.core.records import SeatRecord
from service.core.shapes import (
    AreaState,
    ConstituencyState,
    ExitPollState,
    NationalFigures,
    NationalParty,
    NationalState,
    Patch,
)
from service.core.totals import Totals, percent


def iso_from_ms(ms: int) -> str:
    """A stream entry's time as ISO 8601, the same on every instance."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def national_state(
    election: Election, totals: Totals, exit_poll: ExitPollState | None
) -> NationalState:
    """The national state built from scratch."""
    parties: dict[str, NationalParty] = {}
    for code in election.parties:
        entry = totals.party_entry(code)
        parties[code] = {
            "seats": entry["seats"],
            "gains": entry["gains"],
            "losses": entry["losses"],
            "net": entry["net"],
            "votes": entry["votes"],
            "share": entry["share"],
            "name": election.parties[code].name,
            "seats_to_majority": max(0, election.majority - entry["seats"]),
        }
    figures = national_figures(election, totals)
    if exit_poll is not None:
        figures["exit_poll"] = exit_poll
    state: NationalState = {**figures, "parties": parties}
    add_majorities(election, totals.seats, state)
    return state


def update_national(election: Election, totals: Totals, state: NationalState) -> Patch:
    """Bring the national ``state`` up to what ``totals`` now give (exit poll aside), in place.

    Returns the merge patch from the old state to the new. The same figures as
    ``national_figures``, compared one by one rather than built and diffed.
    """
    patch: Patch = {}
    was_majority_party = state.get("majority_party")
    declared = totals.declared
    if state["declared"] != declared:
        patch["declared"] = state["declared"] = declared
        patch["seats_to_declare"] = state["seats_to_declare"] = election.total_seats - declared
    fresh = _leading(election, totals) if declared else None
    for key in _OPTIONAL_NATIONAL:
        if fresh is None or key not in fresh:
            if key in state:
                del state[key]
                patch[key] = None
        elif state.get(key) != fresh[key]:
            patch[key] = state[key] = fresh[key]
    parties = totals.update_parties(state["parties"], election.majority)
    if parties:
        patch["parties"] = parties
    update_majorities(election, totals.seats, state, patch, was_majority_party)
    return patch


_OPTIONAL_NATIONAL: Final = ("leader", "seats_to_majority", "majority_party")
"""The national figures that ``_leading`` gives, left out before the first seat."""


def national_figures(election: Election, totals: Totals) -> NationalFigures:
    """The national state's top-level figures: everything but the parties and exit poll."""
    declared = totals.declared
    working = working_majority(election, totals.seats)
    # Two literals, so that working_majority keeps its place before declared on the wire.
    if working is None:
        state: NationalFigures = {
            "election": election.id,
            "total_seats": election.total_seats,
            "majority": election.majority,
            "declared": declared,
            "seats_to_declare": election.total_seats - declared,
        }
    else:
        state = {
            "election": election.id,
            "total_seats": election.total_seats,
            "majority": election.majority,
            "working_majority": working,
            "declared": declared,
            "seats_to_declare": election.total_seats - declared,
        }
    if declared:
        leading = _leading(election, totals)
        for key in _OPTIONAL_NATIONAL:
            if key in leading:
                state[key] = leading[key]
    return state


class _Leading(TypedDict):
    leader: str
    seats_to_majority: int
    majority_party: NotRequired[str]


def _leading(election: Election, totals: Totals) -> _Leading:
    """``leader``, its ``seats_to_majority`` and ``majority_party`` (when it has one)."""
    seats, votes = totals.seats, totals.votes
    most = max(seats.values())
    leaders = [code for code, count in seats.items() if count == most]  # in party order
    # Most seats; a tie goes to most votes, then to the first code.
    leader = min(leaders, key=lambda code: (-votes[code], code)) if len(leaders) > 1 else leaders[0]
    figures: _Leading = {"leader": leader, "seats_to_majority": max(0, election.majority - most)}
    if most >= election.majority:
        figures["majority_party"] = leader
    return figures


def area_state(area: Area, totals: Totals) -> AreaState:
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


def update_area(area: Area, totals: Totals, state: AreaState) -> Patch:
    """Bring a region's or nation's ``state`` up to what ``totals`` now give, in place.

    Returns the merge patch from the old state to the new.
    """
    patch: Patch = {}
    if state["declared"] != totals.declared:
        patch["declared"] = state["declared"] = totals.declared
        patch["seats_to_declare"] = state["seats_to_declare"] = (
            len(area.constituencies) - totals.declared
        )
    parties = totals.update_parties(state["parties"])
    if parties:
        patch["parties"] = parties
    return patch


def constituency_state(seat: Constituency, record: SeatRecord) -> ConstituencyState:
    electorate = seat.electorate if record.electorate is None else record.electorate
    state: ConstituencyState = {
        "id": seat.id,
        "name": seat.name,
        "region": seat.region,
        "nation": seat.nation,
        "electorate": electorate,
        "previous": seat.previous,
        "status": record.status,
    }
    winner_name, winner_party = record.winner_name, record.winner_party
    if winner_party is None or winner_name is None:  # a record has both or neither
        return state
    state["winner"] = {"name": winner_name, "party": winner_party}
    if winner_party == seat.previous:
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
