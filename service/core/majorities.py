"""The figures presenters say beside the seat count: the working and overall majorities.

A working majority counts only the members who vote: the definition's ``non_voting_seats``
(a Speaker and deputies) and the seats won by its ``abstaining_parties`` do not. It moves
during the night as abstaining parties win seats. A majority party's overall majority is its
seats minus all other seats in the house. Nothing here knows a country.
"""

from __future__ import annotations

from collections.abc import Mapping

from service.core.election import Election
from service.core.shapes import NationalState, Patch


def working_majority(election: Election, seats: Mapping[str, int]) -> int | None:
    """Seats that make a majority of the members who vote; None when the definition does not
    say who does not vote. ``seats`` is party code -> seats won so far."""
    if not election.has_working_majority:
        return None
    abstaining = sum(seats[code] for code in election.abstaining_parties or ())
    voting = election.total_seats - (election.non_voting_seats or 0) - abstaining
    return voting // 2 + 1


def overall_majority(election: Election, seats: int) -> int:
    """A party's seats minus all the other seats in the house (declared or not)."""
    return seats - (election.total_seats - seats)


def add_majorities(election: Election, seats: Mapping[str, int], state: NationalState) -> None:
    """Put the working and overall majorities into a national state being built afresh.

    ``state`` must already hold its ``parties`` entries and its ``majority_party`` (if any).
    """
    parties = state["parties"]
    working = working_majority(election, seats)
    if working is not None:
        state["working_majority"] = working
        for entry in parties.values():
            entry["seats_to_working_majority"] = max(0, working - entry["seats"])
    leading = state.get("majority_party")
    if leading is not None:
        parties[leading]["overall_majority"] = overall_majority(election, seats[leading])


def update_majorities(
    election: Election,
    seats: Mapping[str, int],
    state: NationalState,
    patch: Patch,
    was_majority_party: str | None,
) -> None:
    """Bring the majorities of a national ``state`` up to date in place, adding to ``patch``.

    Called after the seats, the parties' entries and ``majority_party`` were brought up to
    date, with ``patch`` the merge patch that did it: a party whose seats did not move keeps
    its figures unless the working majority itself moved.
    """
    parties = state["parties"]
    party_patches: Patch = patch.get("parties", {})
    working = working_majority(election, seats)
    if working is not None:
        moved = state["working_majority"] != working
        if moved:
            state["working_majority"] = patch["working_majority"] = working
        codes = parties if moved else [c for c, p in party_patches.items() if "seats" in p]
        for code in codes:
            entry = parties[code]
            to_working = max(0, working - entry["seats"])
            if entry["seats_to_working_majority"] != to_working:
                entry["seats_to_working_majority"] = to_working
                party_patches.setdefault(code, {})["seats_to_working_majority"] = to_working
    leading = state.get("majority_party")
    if was_majority_party is not None and was_majority_party != leading:
        del parties[was_majority_party]["overall_majority"]
        party_patches.setdefault(was_majority_party, {})["overall_majority"] = None
    if leading is not None:
        entry = parties[leading]
        overall = overall_majority(election, entry["seats"])
        if entry.get("overall_majority") != overall:
            entry["overall_majority"] = overall
            party_patches.setdefault(leading, {})["overall_majority"] = overall
    if party_patches:
        patch["parties"] = party_patches
