"""A feed's own totals as a check on ours: the ``feed_check`` of the national state.

A ``state_of_parties`` event gives a feed's seats, gains and losses over the seats it lists.
The check compares them with the tally's own count over exactly those seats, as they stand
when the event is applied: the feed's figures are as of its file, so a later correction to
one of those seats is not held against them (the feed's next file will count it too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.core.election import Election
from service.core.events import FIGURES, StateOfParties
from service.core.records import SeatRecord
from service.core.shapes import FeedCheckState, Patch


def feed_check(
    election: Election, seats: Mapping[str, SeatRecord], event: StateOfParties
) -> FeedCheckState:
    """The check for ``event``: ``{source, results, agrees, differences}``.

    Ours are counted as the national totals count them: a seat with a winner (a flash's
    included) is a seat for it, and when the winner is not the seat's previous party, a gain
    for it and a loss for that party. A party the feed does not list has none of anything on
    its side. ``differences`` maps a party code to ``{figure: [feed's, ours]}`` for each
    figure that disagrees, parties in the definition's order and figures in ``FIGURES``
    order; ``agrees`` when it is empty.
    """
    # Not totals.Totals: it also sums every candidate's votes, four fifths of the work.
    ours = {figure: dict.fromkeys(election.parties, 0) for figure in FIGURES}
    won, gained, lost = ours["seats"], ours["gains"], ours["losses"]
    for seat_id in event.constituencies:
        winner = seats[seat_id].winner_party
        if winner is None:
            continue
        won[winner] += 1
        previous = election.constituencies[seat_id].previous
        if winner != previous:
            gained[winner] += 1
            lost[previous] += 1
    theirs = {party.code: party for party in event.parties}
    differences: dict[str, dict[str, list[int]]] = {}
    for code in election.parties:
        listed = theirs.get(code)
        disagreeing: dict[str, list[int]] = {}
        for figure in FIGURES:
            feeds = 0 if listed is None else getattr(listed, figure)
            own = ours[figure][code]
            if feeds != own:
                disagreeing[figure] = [feeds, own]
        if disagreeing:
            differences[code] = disagreeing
    return {
        "source": event.source,
        "results": len(event.constituencies),
        "agrees": not differences,
        "differences": differences,
    }


def check_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> Patch:
    """The merge patch from one check to the next, in a fixed order (removals first, in the
    old check's order), so that every instance sends the same bytes."""
    patch: Patch = {key: None for key in old if key not in new}
    for key, value in new.items():
        was = old.get(key)
        if value == was:
            continue
        if isinstance(was, dict) and isinstance(value, dict):
            patch[key] = check_patch(was, value)
        else:
            patch[key] = value
    return patch
