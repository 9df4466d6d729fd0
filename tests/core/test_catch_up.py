"""Quiet catch-up: ``apply(..., quiet=True)`` then ``settle()`` leaves exactly what normal
applies leave (hypothesis).

Two tallies take the same events in lockstep, one of them quietly over a window of the
sequence. While quiet, both must agree on every channel's seq, on ``seq``, on staleness and
on refusals; once the quiet one settles, on every state and the declarations log; and after
that, on every change they produce.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.decoding import validate_event
from service.core.election import Election
from service.core.events import InvalidEvent
from service.core.seq import Seq
from service.core.tally import (
    DECLARATIONS,
    KEPT_FROM_QUIET,
    LOG_CHANNELS,
    NATIONAL,
    Applied,
    Change,
    Tally,
)
from tests.core.builders import (
    bundled_election,
    declaration,
    exit_poll,
    flash,
    retraction,
    status,
    tiny_election,
)
from tests.core.test_properties import (
    REAL,
    SMALL,
    TIMES,
    Document,
    Repeat,
    Step,
    _real_declarations,
    later_steps,
    real_nights,
    small_elections,
    small_events,
)

# Just before a second's end: exit polls without a time of their own (which take their
# entry's) are the same poll within a second and a new one across it.
FIRST_MS = 1_720_148_399_990


def _documents(steps: list[Step]) -> list[Document]:
    """The steps with each Repeat resolved to the event it repeats."""
    documents: list[Document] = []
    for step in steps:
        if isinstance(step, Repeat):
            if documents:
                documents.append(documents[-1 - step.index % len(documents)])
        else:
            documents.append(step)
    return documents


def _apply(tally: Tally, seq: Seq, document: Document, quiet: bool) -> Applied | str:
    """What applying did: the Applied, or the reason it was refused."""
    event = validate_event(document, tally.election, str(seq))
    try:
        return tally.apply(seq, event, quiet=quiet)
    except InvalidEvent as exc:
        return str(exc)


def _seqs(tally: Tally) -> dict[str, Seq]:
    return {channel: tally.channel_seq(channel) for channel in tally.channels()}


def _states(tally: Tally) -> dict[str, Any]:
    return {channel: tally.state(channel) for channel in tally.channels()}


def _catch_up(election: Election, documents: list[Document], start: int, stop: int) -> None:
    """Apply ``documents`` normally to one tally and to another quietly from ``start`` to
    ``stop`` (then settled), checking that nothing tells the two apart."""
    normal, quiet = Tally(election), Tally(election)
    logged: list[Change] = []  # the declarations changes of the normal applies in the window

    def settle() -> None:
        kept = quiet.settle()
        # What settle hands back for the history is what the normal applies sent.
        assert list(kept) == logged[-KEPT_FROM_QUIET:]
        logged.clear()

    for number, document in enumerate(documents):
        seq = Seq(FIRST_MS + number // 2, number % 2)
        if number == stop:
            settle()
            assert _states(quiet) == _states(normal)
        silent = start <= number < stop
        expected = _apply(normal, seq, document, quiet=False)
        if silent and isinstance(expected, Applied):
            logged.extend(c for c in expected.changes if c.channel == DECLARATIONS)
        got = _apply(quiet, seq, document, quiet=silent)
        if not silent:
            assert got == expected
        elif isinstance(expected, str):
            assert got == expected, "a quiet apply refuses what a normal one refuses"
        else:
            assert got == Applied(stale=expected.stale, feed_check=expected.feed_check)
        assert quiet.seq == normal.seq
        assert _seqs(quiet) == _seqs(normal), document
    if stop >= len(documents):
        settle()
    assert _states(quiet) == _states(normal)
    assert _seqs(quiet) == _seqs(normal)
    assert quiet.recompute() == normal.recompute()


@st.composite
def windows(draw: st.DrawFn, size: int) -> tuple[int, int]:
    """Where the quiet applies start and stop: most often from the first event, as when an
    instance starts."""
    start = draw(st.sampled_from([0, 0, draw(st.integers(0, size))]))
    return start, draw(st.integers(start, size))


@st.composite
def embargoed_polls(draw: st.DrawFn, election: Election) -> Document:
    # Each party at most its share of the seats: the projections never add up to more.
    share = election.total_seats // len(election.parties)
    seats = draw(st.dictionaries(st.sampled_from(sorted(election.parties)), st.integers(0, share)))
    return exit_poll(
        seats or {next(iter(election.parties)): 1},
        published_at=draw(st.sampled_from(TIMES)),
        embargo_until=draw(st.sampled_from(TIMES)),
    )


@st.composite
def small_catch_ups(draw: st.DrawFn) -> tuple[Election, list[Document], tuple[int, int]]:
    election = draw(small_elections())
    events = small_events(election)
    repeats = st.integers(0, 50).map(Repeat)
    steps = draw(
        st.lists(
            st.one_of(events, events, events, repeats, embargoed_polls(election)),
            min_size=1,
            max_size=40,
        )
    )
    documents = _documents(steps)
    return election, documents, draw(windows(len(documents)))


@SMALL
@given(small_catch_ups())
def test_quiet_applies_then_settle_leave_what_normal_applies_leave_on_a_small_election(
    catch_up: tuple[Election, list[Document], tuple[int, int]],
) -> None:
    election, documents, (start, stop) = catch_up
    _catch_up(election, documents, start, stop)


@REAL
@given(st.data())
def test_quiet_applies_then_settle_leave_what_normal_applies_leave_on_the_2024_definition(
    data: st.DataObject,
) -> None:
    documents = _documents(data.draw(real_nights()))
    start, stop = data.draw(windows(len(documents)))
    _catch_up(bundled_election("uk-2024"), documents, start, stop)


@REAL
@given(st.integers(0, 650), later_steps(), st.data())
def test_a_start_part_way_through_the_2024_night_catches_up_quietly(
    declared: int, steps: list[Step], data: st.DataObject
) -> None:
    documents = _documents([*_real_declarations()[:declared], *steps])
    stop = data.draw(st.integers(declared, len(documents)))
    _catch_up(bundled_election("uk-2024"), documents, 0, stop)


# --- the channel seqs, case by case ------------------------------------------------------

ANA = ("Ana", "KIW", 500)
BEN = ("Ben", "TUI", 300)
CY = ("Cy", "KIW", 100)


@pytest.mark.parametrize(
    ("events", "changed"),
    [
        pytest.param(
            [status("N1", "counting")],
            {"constituency:N1"},
            id="a status touches only its seat",
        ),
        pytest.param(
            [declaration("N1", ANA, BEN)],
            {"constituency:N1", NATIONAL, "region:cote-nord", "nation:upland", DECLARATIONS},
            id="a declaration touches its seat, its areas, the nation and the log",
        ),
        pytest.param(
            [declaration("N1", ANA, BEN, CY), declaration("N1", ("Ana", "KIW", 501), BEN, CY)],
            {"constituency:N1", NATIONAL, "region:cote-nord", "nation:upland", DECLARATIONS},
            id="a correction of one party's votes touches every total",
        ),
        pytest.param(
            [
                declaration("N1", ANA, BEN, CY),
                declaration("N1", ("Ana", "KIW", 499), BEN, ("Cy", "KIW", 101)),
            ],
            {"constituency:N1", DECLARATIONS},
            id="votes moved between two candidates of one party touch no total",
        ),
        pytest.param(
            [declaration("N1", ANA, BEN), declaration("N1", ANA, BEN, ("Dee", "MOA", 0))],
            {"constituency:N1", DECLARATIONS},
            id="a candidate without a vote touches no total",
        ),
        pytest.param(
            [declaration("N1", ANA, BEN), declaration("N1", ANA, BEN, electorate=999)],
            {"constituency:N1", DECLARATIONS},
            id="a corrected electorate touches only the seat and the log",
        ),
        pytest.param(
            [flash("N1", "Ana", "KIW"), flash("N1", "Anna", "KIW")],
            {"constituency:N1", DECLARATIONS},
            id="a flash naming another winner of the same party touches no total",
        ),
        pytest.param(
            [declaration("N1", ANA, BEN), declaration("N1", ANA, BEN, revision=4)],
            set(),
            id="a resend under a new revision touches nothing",
        ),
        pytest.param(
            [retraction("N1")],
            set(),
            id="a retraction of an awaiting seat touches nothing",
        ),
        pytest.param(
            [exit_poll({"KIW": 2}, published_at=TIMES[0])],
            {NATIONAL},
            id="an exit poll touches the national state",
        ),
        pytest.param(
            [
                exit_poll({"KIW": 2}, published_at=TIMES[0]),
                exit_poll({"KIW": 2}, published_at=TIMES[0]),
            ],
            set(),
            id="the same exit poll again touches nothing",
        ),
    ],
)
def test_a_quiet_apply_advances_the_seqs_of_the_channels_a_normal_one_changes(
    events: list[Document], changed: set[str]
) -> None:
    election = tiny_election()
    normal, quiet = Tally(election), Tally(election)
    *before, last = events
    seq = Seq(FIRST_MS, 0)
    for number, document in enumerate(before):
        seq = Seq(FIRST_MS + number, 0)
        _apply(normal, seq, document, quiet=False)
        _apply(quiet, seq, document, quiet=False)
    last_seq = Seq(seq.ms + 1, 0)

    applied = _apply(normal, last_seq, last, quiet=False)
    _apply(quiet, last_seq, last, quiet=True)

    assert isinstance(applied, Applied)
    assert {change.channel for change in applied.changes} == changed
    assert {ch for ch, at in _seqs(quiet).items() if at == last_seq} == changed
    quiet.settle()
    assert _states(quiet) == _states(normal)


def test_a_normal_apply_before_settle_is_refused() -> None:
    election = tiny_election()
    tally = Tally(election)
    _apply(tally, Seq(1, 0), declaration("N1", ANA, BEN), quiet=True)

    with pytest.raises(RuntimeError, match="settle"):
        _apply(tally, Seq(2, 0), declaration("S1", ANA, BEN), quiet=False)

    tally.settle()
    assert isinstance(_apply(tally, Seq(2, 0), declaration("S1", ANA, BEN), quiet=False), Applied)


def test_settle_without_quiet_applies_changes_nothing() -> None:
    election = tiny_election()
    tally = Tally(election)
    _apply(tally, Seq(1, 0), declaration("N1", ANA, BEN), quiet=False)
    states, seqs = _states(tally), _seqs(tally)

    tally.settle()

    assert (_states(tally), _seqs(tally)) == (states, seqs)
    # And the incremental bookkeeping still agrees with the rebuilt states.
    applied = _apply(tally, Seq(2, 0), declaration("S1", ANA, BEN), quiet=False)
    assert isinstance(applied, Applied) and applied.changes
    assert tally.recompute() == {
        ch: s for ch, s in _states(tally).items() if ch not in LOG_CHANNELS
    }


def test_after_settle_every_share_moves_when_the_valid_votes_return_to_an_earlier_total() -> None:
    # The shares were last computed over 800 valid votes, then rebuilt over 900 by settle:
    # going back to 800 must move the shares of the parties the retraction did not touch.
    election = tiny_election()
    normal, quiet = Tally(election), Tally(election)
    events = [declaration("N1", ANA, BEN), declaration("S1", ("Dee", "MOA", 100)), retraction("S1")]
    for number, document in enumerate(events):
        seq = Seq(FIRST_MS + number, 0)
        _apply(normal, seq, document, quiet=False)
        if number == 2:
            quiet.settle()
        _apply(quiet, seq, document, quiet=number == 1)

    assert quiet.state(NATIONAL)["parties"]["KIW"]["share"] == 62.5
    assert _states(quiet) == _states(normal)
