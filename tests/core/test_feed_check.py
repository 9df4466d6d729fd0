"""The feed's totals as a check: decoding ``state_of_parties`` and the national ``feed_check``."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import json_merge_patch
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.decoding import decode_event, validate_event
from service.core.election import Election
from service.core.events import InvalidEvent, PartyFigures, StateOfParties
from service.core.seq import Seq
from service.core.tally import NATIONAL, Tally
from tests.core.builders import (
    Desk,
    bundled_declarations,
    bundled_election,
    declaration,
    flash,
    retraction,
    tiny_election,
)
from tests.core.test_properties import SMALL, small_elections

ENTRY = "1720148400000-0"

N1_KIW_HOLD = declaration("N1", ("Ana", "KIW", 500), ("Ben", "TUI", 300))
N2_KIW_GAIN = declaration("N2", ("Dora", "KIW", 600), ("Eli", "TUI", 480))
S1_MOA_GAIN = declaration("S1", ("Gus", "MOA", 400), ("Hal", "TUI", 100))


def state_of_parties(seats: Any, parties: Any, source: Any = "PA", **fields: Any) -> dict[str, Any]:
    """``state_of_parties(["N1"], {"KIW": (1, 0, 0)})``: figures as (seats, gains, losses)."""
    if isinstance(parties, dict):
        parties = {
            code: dict(zip(("seats", "gains", "losses"), figures, strict=True))
            if isinstance(figures, tuple)
            else figures
            for code, figures in parties.items()
        }
    return {
        "type": "state_of_parties",
        "source": source,
        "constituencies": seats,
        "parties": parties,
        **fields,
    }


# Over N1 (a KIW hold) and N2 (a KIW gain from TUI), what the tally itself counts.
AGREEING = state_of_parties(["N1", "N2"], {"KIW": (2, 1, 0), "TUI": (0, 0, 1)})


def national(desk: Desk) -> Mapping[str, Any]:
    return desk.tally.state(NATIONAL)


# --- decoding ------------------------------------------------------------------------------


def test_a_state_of_parties_decodes_to_its_record() -> None:
    event = validate_event(AGREEING, tiny_election(), ENTRY)

    assert event == StateOfParties(
        source="PA",
        constituencies=("N1", "N2"),
        parties=(PartyFigures("KIW", 2, 1, 0), PartyFigures("TUI", 0, 0, 1)),
    )


def test_a_state_of_parties_over_no_seats_yet_is_accepted() -> None:
    event = validate_event(state_of_parties([], {}), tiny_election(), ENTRY)

    assert event == StateOfParties(source="PA", constituencies=(), parties=())


REJECTED: list[tuple[str, Any, str]] = [
    # (what, the decoded event, words of the reason)
    ("no source", AGREEING | {"source": None}, "'source' must be a non-empty string"),
    ("blank source", AGREEING | {"source": "  "}, "'source' must be a non-empty string"),
    ("source a number", AGREEING | {"source": 7}, "'source' must be a non-empty string"),
    ("no constituencies", {**AGREEING, "constituencies": None}, "'constituencies' must be a list"),
    ("constituencies text", AGREEING | {"constituencies": "N1,N2"}, "'constituencies' must be"),
    ("constituency a number", AGREEING | {"constituencies": ["N1", 2]}, "entry 2 must be"),
    ("unknown constituency", AGREEING | {"constituencies": ["N1", "ZZ9"]}, "unknown constituency"),
    ("constituency twice", AGREEING | {"constituencies": ["N1", "N1"]}, "'N1' is listed twice"),
    ("no parties", {**AGREEING, "parties": None}, "'parties' must be an object"),
    ("parties a list", AGREEING | {"parties": [{"KIW": 2}]}, "'parties' must be an object"),
    ("unknown party", state_of_parties(["N1"], {"Lab": (1, 0, 0)}), "unknown party 'Lab'"),
    ("figures a number", state_of_parties(["N1"], {"KIW": 1}), "KIW must be an object"),
    (
        "a figure missing",
        state_of_parties(["N1"], {"KIW": {"seats": 1, "gains": 0}}),
        "KIW 'losses' must be a non-negative integer",
    ),
    (
        "negative seats",
        state_of_parties(["N1"], {"KIW": (-1, 0, 0)}),
        "KIW 'seats' must be a non-negative integer",
    ),
    (
        "fractional gains",
        state_of_parties(["N1"], {"KIW": (1, 0.5, 0)}),
        "KIW 'gains' must be a non-negative integer",
    ),
    (
        "losses as true",
        state_of_parties(["N1"], {"KIW": (1, 0, True)}),
        "KIW 'losses' must be a non-negative integer",
    ),
    (
        "seats as text",
        state_of_parties(["N1"], {"KIW": ("1", 0, 0)}),
        "KIW 'seats' must be a non-negative integer",
    ),
    (
        "more gains than seats",
        state_of_parties(["N1", "N2"], {"KIW": (1, 2, 0)}),
        "KIW has 2 gains but only 1 seats",
    ),
    (
        "more seats than seats covered",
        state_of_parties(["N1"], {"KIW": (1, 0, 0), "TUI": (1, 0, 0)}),
        "the parties' seats add up to 2, more than the 1 constituencies it covers",
    ),
    (
        "more losses than seats covered",
        state_of_parties(["N1"], {"KIW": (1, 1, 1), "TUI": (0, 0, 1)}),
        "the parties' losses add up to 2, more than the 1 constituencies it covers",
    ),
]


@pytest.mark.parametrize(
    ("document", "words"), [pytest.param(doc, words, id=what) for what, doc, words in REJECTED]
)
def test_a_malformed_state_of_parties_is_rejected_with_a_one_line_reason(
    document: Any, words: str
) -> None:
    with pytest.raises(InvalidEvent) as raised:
        decode_event(orjson.dumps(document), tiny_election(), ENTRY)

    reason = str(raised.value)
    assert reason.startswith(f"entry {ENTRY}: ")
    assert len(reason.splitlines()) == 1
    assert words in reason


def test_a_rejected_state_of_parties_changes_nothing() -> None:
    desk = Desk(tiny_election())
    desk.send_all([N1_KIW_HOLD, N2_KIW_GAIN])
    before = copy.deepcopy(national(desk))

    with pytest.raises(InvalidEvent):
        desk.send(state_of_parties(["N1", "N1"], {"KIW": (1, 0, 0)}))

    assert national(desk) == before
    assert "feed_check" not in before


# --- the check -----------------------------------------------------------------------------


def test_there_is_no_feed_check_before_the_first_state_of_parties() -> None:
    desk = Desk(tiny_election())
    desk.send_all([N1_KIW_HOLD, N2_KIW_GAIN])

    assert "feed_check" not in national(desk)


def test_a_feed_that_agrees_over_the_seats_it_lists_is_shown_to_agree() -> None:
    desk = Desk(tiny_election())
    desk.send_all([N1_KIW_HOLD, N2_KIW_GAIN, S1_MOA_GAIN])

    applied = desk.send(AGREEING)

    check = {"source": "PA", "results": 2, "agrees": True, "differences": {}}
    assert national(desk)["feed_check"] == check
    assert applied.feed_check == check
    assert [(c.channel, c.patch) for c in applied.changes] == [(NATIONAL, {"feed_check": check})]


@pytest.mark.parametrize(
    ("parties", "differences"),
    [
        pytest.param(
            {"KIW": (1, 1, 0), "TUI": (0, 0, 1)},
            {"KIW": {"seats": [1, 2]}},
            id="one seat short",
        ),
        pytest.param(
            {"KIW": (2, 0, 0), "TUI": (0, 0, 0)},
            {"KIW": {"gains": [0, 1]}, "TUI": {"losses": [0, 1]}},
            id="a gain counted as a hold",
        ),
        pytest.param(
            {"KIW": (1, 1, 0), "TUI": (1, 0, 1), "MOA": (0, 0, 0)},
            {"KIW": {"seats": [1, 2]}, "TUI": {"seats": [1, 0]}},
            id="a seat given to another party",
        ),
        pytest.param(
            {"KIW": (2, 1, 0)},
            {"TUI": {"losses": [0, 1]}},
            id="a party left out counts as none of anything",
        ),
        pytest.param(
            {"TUI": (0, 0, 1), "KIW": (2, 1, 0), "MOA": (0, 0, 0)},
            {},
            id="parties in any order",
        ),
    ],
)
def test_every_figure_that_disagrees_is_named_with_the_feeds_and_ours(
    parties: dict[str, tuple[int, int, int]], differences: dict[str, Any]
) -> None:
    desk = Desk(tiny_election())
    desk.send_all([N1_KIW_HOLD, N2_KIW_GAIN])

    desk.send(state_of_parties(["N1", "N2"], parties))

    check = national(desk)["feed_check"]
    assert check["differences"] == differences
    assert check["agrees"] is (not differences)


def test_only_the_seats_the_event_lists_are_counted() -> None:
    desk = Desk(tiny_election())
    desk.send_all([N1_KIW_HOLD, N2_KIW_GAIN, S1_MOA_GAIN])

    desk.send(state_of_parties(["S1"], {"MOA": (1, 1, 0), "TUI": (0, 0, 1)}))

    assert national(desk)["feed_check"] == {
        "source": "PA",
        "results": 1,
        "agrees": True,
        "differences": {},
    }


def test_a_flash_counts_and_a_listed_seat_still_awaiting_counts_for_nobody() -> None:
    desk = Desk(tiny_election())
    desk.send(flash("N2", "Dora", "KIW"))

    desk.send(state_of_parties(["N1", "N2"], {"KIW": (2, 1, 0), "TUI": (0, 0, 1)}))

    # N2's flash counts as a KIW gain, as in the national totals; N1 has no result here yet.
    assert national(desk)["feed_check"]["differences"] == {"KIW": {"seats": [2, 1]}}


def test_the_check_stays_as_computed_at_the_event_when_a_listed_seat_changes_later() -> None:
    desk = Desk(tiny_election())
    desk.send_all([N1_KIW_HOLD, N2_KIW_GAIN, AGREEING])
    check = copy.deepcopy(national(desk)["feed_check"])

    applied = desk.send(retraction("N2"))

    assert national(desk)["feed_check"] == check
    national_patch = next(c.patch for c in applied.changes if c.channel == NATIONAL)
    assert national_patch is not None and "feed_check" not in national_patch


def test_a_later_state_of_parties_replaces_the_check_and_its_patch_leads_from_the_old() -> None:
    desk = Desk(tiny_election())
    desk.send_all([N1_KIW_HOLD, N2_KIW_GAIN])
    desk.send(state_of_parties(["N1", "N2"], {"KIW": (1, 0, 0)}, source="Desk"))
    client = copy.deepcopy(national(desk))

    applied = desk.send(AGREEING)

    (change,) = applied.changes
    assert change.patch is not None
    assert json_merge_patch.merge(client, change.patch) == national(desk)
    assert national(desk)["feed_check"] == {
        "source": "PA",
        "results": 2,
        "agrees": True,
        "differences": {},
    }


def test_the_same_check_again_sends_nothing_and_is_still_reported() -> None:
    desk = Desk(tiny_election())
    desk.send_all([N1_KIW_HOLD, AGREEING])
    seq = desk.tally.channel_seq(NATIONAL)

    applied = desk.send(AGREEING)

    assert applied.changes == ()
    assert applied.feed_check is not None and applied.feed_check["agrees"] is False
    assert desk.tally.channel_seq(NATIONAL) == seq


def test_a_quiet_catch_up_keeps_the_check_and_recomputing_keeps_it_too() -> None:
    election = tiny_election()
    documents = [N1_KIW_HOLD, N2_KIW_GAIN, AGREEING, S1_MOA_GAIN]
    normal, quiet = Tally(election), Tally(election)
    for number, document in enumerate(documents):
        seq = Seq(1_000 + number, 0)
        expected = normal.apply(seq, validate_event(document, election))
        got = quiet.apply(seq, validate_event(document, election), quiet=True)
        assert got.feed_check == expected.feed_check
    quiet.settle()

    assert quiet.state(NATIONAL) == normal.state(NATIONAL)
    assert quiet.channel_seq(NATIONAL) == normal.channel_seq(NATIONAL)
    assert normal.recompute()[NATIONAL] == normal.state(NATIONAL)
    assert normal.state(NATIONAL)["feed_check"]["agrees"] is True


# --- the real 2024 night -------------------------------------------------------------------


def _real_night_desk(declared: int) -> Desk:
    desk = Desk(bundled_election("uk-2024"))
    desk.send_all(bundled_declarations("uk-2024")[:declared])
    return desk


def _figures(desk: Desk) -> dict[str, tuple[int, int, int]]:
    return {
        code: (party["seats"], party["gains"], party["losses"])
        for code, party in national(desk)["parties"].items()
        if party["seats"] or party["losses"]
    }


def test_the_whole_2024_nights_own_totals_agree_and_one_wrong_figure_is_named() -> None:
    desk = _real_night_desk(650)
    everything = list(desk.election.constituencies)
    figures = _figures(desk)
    assert figures["LAB"][0] == 411

    desk.send(state_of_parties(everything, figures))
    assert national(desk)["feed_check"] == {
        "source": "PA",
        "results": 650,
        "agrees": True,
        "differences": {},
    }

    desk.send(state_of_parties(everything, figures | {"LAB": (410, *figures["LAB"][1:])}))
    assert national(desk)["feed_check"]["differences"] == {"LAB": {"seats": [410, 411]}}
    assert national(desk)["feed_check"]["agrees"] is False


# --- properties ----------------------------------------------------------------------------


def _counted(election: Election, desk: Desk, seats: list[str]) -> dict[str, list[int]]:
    """Seats, gains and losses over ``seats``, read from the constituency states alone."""
    figures = {code: [0, 0, 0] for code in election.parties}
    for seat_id in seats:
        seat = desk.tally.state(f"constituency:{seat_id}")
        if "winner" not in seat:
            continue
        figures[seat["winner"]["party"]][0] += 1
        if seat["result"] == "gain":
            figures[seat["winner"]["party"]][1] += 1
            figures[seat["gain_from"]][2] += 1
    return figures


@st.composite
def covered_nights(draw: st.DrawFn) -> tuple[Election, list[dict[str, Any]], list[str]]:
    """A small election, declarations and flashes for some of its seats, and seats to cover."""
    election = draw(small_elections())
    seat_ids = sorted(election.constituencies)
    parties = sorted(election.parties)
    events = []
    for seat_id in draw(st.lists(st.sampled_from(seat_ids), unique=True)):
        party = draw(st.sampled_from(parties))
        if draw(st.booleans()):
            events.append(flash(seat_id, "Ana", party))
        else:
            events.append(declaration(seat_id, ("Ana", party, draw(st.integers(1, 50)))))
    covered = draw(st.lists(st.sampled_from(seat_ids), unique=True))
    return election, events, covered


@SMALL
@given(covered_nights(), st.data())
def test_a_feed_giving_our_own_counts_agrees_and_any_one_figure_changed_is_named(
    night: tuple[Election, list[dict[str, Any]], list[str]], data: st.DataObject
) -> None:
    election, events, covered = night
    desk = Desk(election)
    desk.send_all(events)
    ours = _counted(election, desk, covered)
    listed = {code: tuple(figures) for code, figures in ours.items() if any(figures)}

    desk.send(state_of_parties(covered, listed))
    check = national(desk)["feed_check"]
    assert check == {"source": "PA", "results": len(covered), "agrees": True, "differences": {}}

    code = data.draw(st.sampled_from(sorted(election.parties)))
    field = data.draw(st.sampled_from(["seats", "gains", "losses"]))
    wrong = list(ours[code])
    index = ("seats", "gains", "losses").index(field)
    wrong[index] = data.draw(st.integers(0, len(covered) + 1).filter(lambda n: n != wrong[index]))
    document = state_of_parties(covered, listed | {code: tuple(wrong)})
    try:
        desk.send(document)
    except InvalidEvent:
        return  # the changed figure made the feed's figures impossible (more gains than seats)
    assert national(desk)["feed_check"]["differences"] == {
        code: {field: [wrong[index], ours[code][index]]}
    }
