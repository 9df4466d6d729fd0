"""The tally clients see and the one rebuilt off to the side: which one each entry reaches."""

from __future__ import annotations

from typing import Any

import pytest

from service.core.decoding import validate_event
from service.core.events import Event, InvalidEvent
from service.core.seq import ZERO, Seq
from service.core.tallies import Tallies
from service.core.tally import NATIONAL
from tests.core.builders import declaration, status, tiny_election

N1_KIW = declaration("N1", ("Ana", "KIW", 500), ("Ben", "TUI", 300), ("Cy", "MOA", 200))
S1_MOA = declaration("S1", ("Gus", "MOA", 400), ("Hal", "TUI", 100))


def event(document: dict[str, Any], seq: Seq) -> Event:
    return validate_event(document, tiny_election(), str(seq))


def seq(n: int) -> Seq:
    return Seq(1_720_148_400_000 + n, 0)


def test_entries_reach_the_tally_shown_until_a_rebuild_begins() -> None:
    tallies = Tallies(tiny_election())
    shown = tallies.shown
    assert tallies.apply(seq(1), event(N1_KIW, seq(1)), quiet=True).changes == ()
    tallies.settle()
    assert tallies.apply(seq(2), event(S1_MOA, seq(2)), quiet=False).changes
    assert tallies.shown is shown
    assert shown.seq == seq(2)
    assert tallies.building is None


def test_a_rebuild_is_built_off_to_the_side_and_handed_over_whole() -> None:
    tallies = Tallies(tiny_election())
    tallies.apply(seq(1), event(N1_KIW, seq(1)), quiet=True)
    tallies.settle()
    shown = tallies.shown
    before = shown.state(NATIONAL)

    tallies.begin(rebuild=True)
    tallies.apply(seq(1), event(N1_KIW, seq(1)), quiet=True)
    tallies.apply(seq(3), event(S1_MOA, seq(3)), quiet=True)
    assert tallies.shown is shown
    assert shown.seq == seq(1)
    assert shown.state(NATIONAL) == before

    rebuilt = tallies.hand_over()
    assert tallies.shown is rebuilt is not shown
    assert tallies.building is None
    assert rebuilt.seq == seq(3)
    assert rebuilt.state("constituency:S1")["winner"]["party"] == "MOA"  # settled
    with pytest.raises(RuntimeError):
        tallies.hand_over()


def test_a_stream_begun_again_replaces_the_tally_shown_or_restarts_the_rebuild() -> None:
    tallies = Tallies(tiny_election())
    tallies.apply(seq(1), event(N1_KIW, seq(1)), quiet=True)
    tallies.begin(rebuild=False)
    assert tallies.shown.seq == ZERO
    assert tallies.building is None

    tallies.begin(rebuild=True)
    tallies.apply(seq(2), event(N1_KIW, seq(2)), quiet=True)
    tallies.begin(rebuild=True)
    assert tallies.building is not None
    assert tallies.building.seq == ZERO
    with pytest.raises(RuntimeError):
        tallies.begin(rebuild=False)  # the rebuild would never be handed over


@pytest.mark.parametrize("rebuilding", [False, True])
def test_a_refused_entry_moves_the_position_of_the_tally_entries_reach(rebuilding: bool) -> None:
    tallies = Tallies(tiny_election())
    if rebuilding:
        tallies.begin(rebuild=True)
    target = tallies.building if rebuilding else tallies.shown
    assert target is not None
    tallies.apply(seq(1), event(N1_KIW, seq(1)), quiet=True)

    tallies.skip(seq(2))  # refused before the tally read it: the decoder's
    assert target.seq == seq(2)
    with pytest.raises(InvalidEvent):  # refused by the tally, which has read it
        tallies.apply(seq(3), event(status("N1", "recount"), seq(3)), quiet=True)
    tallies.skip(seq(3))
    assert target.seq == seq(3)
    assert seq(2) in target.entries and seq(3) in target.entries
    if rebuilding:
        assert tallies.shown.seq == ZERO
