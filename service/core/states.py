"""Building each channel's state from the tally's records and totals, and bringing it up to
date in place with the merge patch of the change.

State never holds None: a field with no value is left out, because in a merge patch null
means "remove". Shares and turnout are percentages to two decimals, rounded halves up.
"""

from __future__ import annotations

from datetime import UTC, datetime

from service.core.election import Area, Constituency, Election
from service.core.majorities import add_majorities, update_majorities, working_majority
from service.core.records import SeatRecord, State
from service.core.totals import Totals, percent


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
    state = national_figures(election, totals)
    if exit_poll is not None:
        state["exit_poll"] = exit_poll
    state["parties"] = parties
    add_majorities(election, totals.seats, state)
    return state


def update_national(election: Election, totals: Totals, state: State) -> State:
    """Bring the national ``state`` up to what ``totals`` now give (exit poll aside), in place.

    Returns the merge patch from the old state to the new. The same figures as
    ``national_figures``, compared one by one rather than built and diffed.
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


def national_figures(election: Election, totals: Totals) -> State:
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
