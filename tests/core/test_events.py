"""Decoding stream events: every reason for rejection, with real malformed input."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from service.core.decoding import decode_event, validate_event
from service.core.events import (
    MAX_VOTES,
    Candidate,
    Declaration,
    ExitPoll,
    Flash,
    InvalidEvent,
    Retraction,
    StateOfParties,
    StatusChange,
)
from tests.core.builders import (
    bundled_election,
    bundled_night,
    declaration,
    exit_poll,
    flash,
    retraction,
    status,
    tiny_election,
)

ENTRY = "1720148400000-0"

TWO = (("Ana", "KIW", 500), ("Ben", "TUI", 300))


def _declaration_with(**candidate: Any) -> dict[str, Any]:
    """A declaration whose second candidate is ``candidate`` (fields left out are absent)."""
    event = declaration("N1", ("Ana", "KIW", 500))
    event["candidates"].append(candidate)
    return event


REJECTED_BYTES = [
    # (what, the entry's event field as it came off the stream, words of the reason)
    ("not JSON", b"declaration N1 Ana 500", "not valid JSON"),
    ("truncated JSON", b'{"type": "declaration", "constituency": "N1"', "not valid JSON"),
    ("empty", b"", "not valid JSON"),
    ("invalid UTF-8", b'{"type": "flash", "constituency": "N\xff1"}', "not valid JSON"),
    ("a lone surrogate half", b'"\xed\xa0\x80"', "not valid JSON"),
    ("a JSON list", b'[{"type": "declaration"}]', "event must be a JSON object, not a list"),
    ("a JSON string", b'"declaration"', "event must be a JSON object, not a string"),
    ("a JSON number", b"42", "event must be a JSON object, not a number"),
    ("JSON true", b"true", "event must be a JSON object, not a boolean"),
    ("JSON null", b"null", "event must be a JSON object, not null"),
    ("text, not bytes", '{"type": "landslide"}', "unknown event type 'landslide'"),
]

REJECTED_EVENTS: list[tuple[str, Any, str]] = [
    # (what, the decoded event, words of the reason)
    ("no type", {"constituency": "N1"}, "unknown event type None"),
    ("unknown type", {"type": "landslide", "constituency": "N1"}, "unknown event type 'landslide'"),
    ("type not text", {"type": ["declaration"]}, "unknown event type ['declaration']"),
    ("unknown constituency", declaration("ZZ9", *TWO), "unknown constituency 'ZZ9'"),
    ("no constituency", flash("N1", "Ana", "KIW") | {"constituency": None}, "'constituency'"),
    ("constituency a number", retraction(1), "'constituency' must be a non-empty string"),
    ("no candidates", {"type": "declaration", "constituency": "N1"}, "'candidates'"),
    ("no candidates listed", declaration("N1"), "'candidates' must be a non-empty list"),
    ("candidates an object", declaration("N1") | {"candidates": {"Ana": 5}}, "'candidates'"),
    ("candidate not an object", declaration("N1") | {"candidates": ["Ana"]}, "candidate 1 must"),
    ("candidate without a name", _declaration_with(party="TUI", votes=3), "candidate 2: 'name'"),
    (
        "candidate blank name",
        _declaration_with(name=" ", party="TUI", votes=3),
        "candidate 2: 'name'",
    ),
    ("candidate without a party", _declaration_with(name="Ben", votes=3), "candidate 2: 'party'"),
    (
        "candidate without votes",
        _declaration_with(name="Ben", party="TUI"),
        "non-integer votes None",
    ),
    (
        "negative votes",
        declaration("N1", ("Ana", "KIW", 5), ("Ben", "TUI", -1)),
        "candidate 2 has negative votes",
    ),
    (
        "float votes",
        declaration("N1", ("Ana", "KIW", 5), ("Ben", "TUI", 3.5)),
        "candidate 2 has non-integer votes 3.5",
    ),
    (
        "whole float votes",
        declaration("N1", ("Ana", "KIW", 5.0)),
        "candidate 1 has non-integer votes 5.0",
    ),
    (
        "bool votes",
        declaration("N1", ("Ana", "KIW", 5), ("Ben", "TUI", True)),
        "candidate 2 has non-integer votes True",
    ),
    (
        "votes as text",
        declaration("N1", ("Ana", "KIW", "5")),
        "candidate 1 has non-integer votes '5'",
    ),
    (
        "more votes than can be counted",
        declaration("N1", ("Ana", "KIW", 2**64 - 1)),
        "candidate 1 has 18,446,744,073,709,551,615 votes, over 1,000,000,000,000",
    ),
    (
        "votes one over the limit",
        declaration("N1", ("Ana", "KIW", 5), ("Ben", "TUI", MAX_VOTES + 1)),
        "candidate 2 has 1,000,000,000,001 votes, over 1,000,000,000,000",
    ),
    (
        "votes adding up to more than can be counted",
        declaration("N1", ("Ana", "KIW", MAX_VOTES), ("Ben", "TUI", 1)),
        "the candidates' votes add up to 1,000,000,000,001, over 1,000,000,000,000",
    ),
    (
        "unknown party",
        declaration("N1", ("Ana", "KIW", 5), ("Ben", "LAB", 3)),
        "candidate 2: unknown party 'LAB'",
    ),
    (
        "same candidate twice",
        declaration("N1", ("Ana", "KIW", 5), ("Ana", "KIW", 3)),
        "candidate 2 (Ana, KIW) is listed twice",
    ),
    (
        "tie without winner",
        declaration("N1", ("Ana", "KIW", 5), ("Ben", "TUI", 5)),
        "tie on 5 votes between Ana (KIW) and Ben (TUI): name the 'winner'",
    ),
    (
        "three-way tie without winner",
        declaration("N1", ("Ana", "KIW", 0), ("Ben", "TUI", 0), ("Cy", "MOA", 0)),
        "Ana (KIW) and Ben (TUI) and Cy (MOA)",
    ),
    (
        "winner not among the top",
        declaration(
            "N1",
            ("Ana", "KIW", 5),
            ("Ben", "TUI", 5),
            ("Cy", "MOA", 4),
            winner={"name": "Cy", "party": "MOA"},
        ),
        "winner Cy (MOA) is not among the top-polling candidates",
    ),
    (
        "winner not a candidate",
        declaration("N1", *TWO, winner={"name": "Zed", "party": "KIW"}),
        "winner Zed (KIW) is not among",
    ),
    (
        "winner with the wrong party",
        declaration("N1", *TWO, winner={"name": "Ana", "party": "TUI"}),
        "winner Ana (TUI)",
    ),
    ("winner not an object", declaration("N1", *TWO, winner="Ana"), "'winner' must be an object"),
    ("winner without a party", declaration("N1", *TWO, winner={"name": "Ana"}), "winner: 'party'"),
    (
        "declared_at not a time",
        declaration("N1", *TWO, declared_at="last night"),
        "'declared_at' is not an ISO 8601 time: 'last night'",
    ),
    (
        "declared_at a number",
        declaration("N1", *TWO, declared_at=1720148400),
        "'declared_at' must be a string",
    ),
    (
        "negative electorate",
        declaration("N1", *TWO, electorate=-5),
        "'electorate' must be a non-negative integer",
    ),
    ("float electorate", declaration("N1", *TWO, electorate=1e3), "'electorate'"),
    (
        "negative revision",
        declaration("N1", *TWO, revision=-1),
        "'revision' must be a non-negative integer",
    ),
    ("revision as text", flash("N1", "Ana", "KIW", revision="2"), "'revision'"),
    ("bool revision", status("N1", "counting", revision=True), "'revision'"),
    ("float revision", retraction("N1", revision=2.0), "'revision'"),
    ("flash without winner", {"type": "flash", "constituency": "N1"}, "'winner' must be an object"),
    ("flash winner of an unknown party", flash("N1", "Ana", "XYZ"), "winner: unknown party 'XYZ'"),
    (
        "flash winner without a name",
        flash("N1", "", "KIW"),
        "winner: 'name' must be a non-empty string",
    ),
    (
        "unknown status",
        status("N1", "counted"),
        "'status' must be one of counting, recount, awaiting, not 'counted'",
    ),
    ("declared as a status", status("N1", "declared"), "not 'declared'"),
    ("no status", {"type": "status", "constituency": "N1"}, "not None"),
    ("note not text", status("N1", "recount", note=["close"]), "'note' must be a string"),
    ("reason not text", retraction("N1", reason=7), "'reason' must be a string"),
    ("exit poll without seats", {"type": "exit_poll"}, "'seats' must be a non-empty object"),
    ("exit poll with no seats", exit_poll({}), "'seats' must be a non-empty object"),
    ("exit poll seats a list", exit_poll([["KIW", 2]]), "'seats'"),
    (
        "exit poll of an unknown party",
        exit_poll({"KIW": 2, "LAB": 1}),
        "seats: unknown party 'LAB'",
    ),
    (
        "exit poll negative",
        exit_poll({"KIW": -1}),
        "seats: KIW must be a non-negative integer, not -1",
    ),
    (
        "exit poll float",
        exit_poll({"KIW": 1.5}),
        "seats: KIW must be a non-negative integer, not 1.5",
    ),
    ("exit poll bool", exit_poll({"KIW": False}), "not False"),
    (
        "exit poll published_at",
        exit_poll({"KIW": 2}, published_at="10pm"),
        "'published_at' is not an ISO 8601 time",
    ),
    (
        "a name with a line break",
        declaration("N1", ("A\nB", "KIW", 5), ("A\nB", "KIW", 3)),
        "is listed twice",
    ),
    (
        "a tie between names with line breaks",
        declaration("N1", ("A\r\nB", "KIW", 5), ("C\u2028D", "TUI", 5)),
        "tie on 5 votes",
    ),
]


def _assert_one_line_reason(reason: str, words: str) -> None:
    assert reason.startswith(f"entry {ENTRY}: ")
    assert len(reason.splitlines()) == 1
    assert words in reason


@pytest.mark.parametrize(
    ("raw", "words"), [pytest.param(raw, words, id=what) for what, raw, words in REJECTED_BYTES]
)
def test_an_entry_that_is_not_a_json_object_is_rejected_with_a_one_line_reason(
    raw: bytes | str, words: str
) -> None:
    with pytest.raises(InvalidEvent) as raised:
        decode_event(raw, tiny_election(), ENTRY)

    _assert_one_line_reason(str(raised.value), words)


@pytest.mark.parametrize(
    ("document", "words"),
    [pytest.param(document, words, id=what) for what, document, words in REJECTED_EVENTS],
)
def test_a_malformed_event_is_rejected_with_a_one_line_reason(document: Any, words: str) -> None:
    with pytest.raises(InvalidEvent) as raised:
        decode_event(orjson.dumps(document), tiny_election(), ENTRY)

    _assert_one_line_reason(str(raised.value), words)


def test_validating_a_decoded_event_gives_the_same_reason_as_decoding_it() -> None:
    document = declaration("N1", ("Ana", "KIW", 5), ("Ben", "TUI", -1))

    with pytest.raises(InvalidEvent) as decoded:
        decode_event(orjson.dumps(document), tiny_election(), ENTRY)
    with pytest.raises(InvalidEvent) as validated:
        validate_event(document, tiny_election(), ENTRY)

    assert str(decoded.value) == str(validated.value)


def test_a_reason_without_an_entry_id_says_so() -> None:
    with pytest.raises(InvalidEvent, match=r"^entry \?: "):
        validate_event([], tiny_election())


def test_two_candidates_with_one_name_and_different_parties_are_both_kept() -> None:
    # Mid Buckinghamshire, 2024: Greg Smith (Conservative) and Greg Smith (Green).
    raw = next(line for line in bundled_night("uk-2024") if b'"E14001360"' in line)

    event = decode_event(raw, bundled_election("uk-2024"), ENTRY)

    assert isinstance(event, Declaration)
    smiths = [c for c in event.candidates if c.name == "Greg Smith"]
    assert smiths == [Candidate("Greg Smith", "CON", 20150), Candidate("Greg Smith", "GRN", 2942)]
    assert event.winner == Candidate("Greg Smith", "CON", 20150)


@pytest.mark.parametrize("winner", ["Ana", "Ben"])
def test_a_tie_with_a_named_winner_is_accepted_and_the_winner_leads_the_table(
    winner: str,
) -> None:
    party = {"Ana": "KIW", "Ben": "TUI"}[winner]
    document = declaration(
        "N1",
        ("Cy", "MOA", 20),
        ("Ana", "KIW", 300),
        ("Ben", "TUI", 300),
        winner={"name": winner, "party": party},
    )

    event = validate_event(document, tiny_election(), ENTRY)

    assert isinstance(event, Declaration)
    assert event.winner == Candidate(winner, party, 300)
    assert event.candidates[0] == event.winner
    assert [c.votes for c in event.candidates] == [300, 300, 20]


@pytest.mark.parametrize(
    "candidates",
    [
        (("Ana", "KIW", MAX_VOTES),),
        (("Ana", "KIW", MAX_VOTES - 1), ("Ben", "TUI", 1)),
    ],
)
def test_a_seat_can_count_up_to_a_trillion_votes(
    candidates: tuple[tuple[str, str, int], ...],
) -> None:
    # Totals of such counts still fit the 64-bit integers of JSON encoders.
    document = declaration("N1", *candidates, electorate=MAX_VOTES)
    event = decode_event(orjson.dumps(document), tiny_election(), ENTRY)

    assert isinstance(event, Declaration)
    assert sum(c.votes for c in event.candidates) == MAX_VOTES == 10**12


def test_candidates_are_ranked_by_votes_and_the_feeds_order_breaks_no_ties() -> None:
    document = declaration("N1", ("Cy", "MOA", 20), ("Ben", "TUI", 300), ("Ana", "KIW", 500))

    event = validate_event(document, tiny_election(), ENTRY)

    assert isinstance(event, Declaration)
    assert [c.name for c in event.candidates] == ["Ana", "Ben", "Cy"]
    assert event.winner.name == "Ana"


def test_a_named_winner_without_a_tie_must_be_the_top_candidate() -> None:
    document = declaration("N1", *TWO, winner={"name": "Ana", "party": "KIW"})

    event = validate_event(document, tiny_election(), ENTRY)

    assert isinstance(event, Declaration)
    assert event.winner == Candidate("Ana", "KIW", 500)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            declaration(
                "N2",
                *TWO,
                declared_at="2031-05-02T01:30:00+12:00",
                electorate=1300,
                revision=4,
            ),
            Declaration(
                "N2",
                (Candidate("Ana", "KIW", 500), Candidate("Ben", "TUI", 300)),
                Candidate("Ana", "KIW", 500),
                declared_at="2031-05-02T01:30:00+12:00",
                electorate=1300,
                revision=4,
            ),
        ),
        (flash("S1", "Finn", "MOA", revision=1), Flash("S1", "Finn", "MOA", revision=1)),
        (
            status("S1", "recount", note="Bundle check"),
            StatusChange("S1", "recount", note="Bundle check"),
        ),
        (retraction("N1", reason="wrong seat"), Retraction("N1", reason="wrong seat")),
        (
            exit_poll({"KIW": 2, "MOA": 1}, published_at="2031-05-01T22:00:00+12:00"),
            ExitPoll((("KIW", 2), ("MOA", 1)), published_at="2031-05-01T22:00:00+12:00"),
        ),
    ],
    ids=["declaration", "flash", "status", "retraction", "exit_poll"],
)
def test_each_event_type_decodes_to_its_record(document: dict[str, Any], expected: object) -> None:
    assert decode_event(orjson.dumps(document), tiny_election(), ENTRY) == expected


@pytest.mark.parametrize("name", ["uk-2017", "uk-2019", "uk-2024"])
def test_every_event_of_the_bundled_nights_is_accepted(name: str) -> None:
    election = bundled_election(name)

    events = [decode_event(line, election, ENTRY) for line in bundled_night(name)]

    assert isinstance(events[0], ExitPoll)
    assert sum(isinstance(event, Declaration) for event in events) == 650


def test_a_party_named_by_its_alias_counts_as_the_party_itself() -> None:
    election = bundled_election("uk-2024")
    event = declaration("E14001425", ("Andrew Pakes", "Lab", 17669), ("Paul Bristow", "C", 17551))
    event["winner"] = {"name": "Andrew Pakes", "party": "Lab"}
    rush = {"type": "flash", "constituency": "E14001425", "winner": {"name": "A", "party": "Lab"}}

    decoded = validate_event(event, election, ENTRY)
    flashed = validate_event(rush, election, ENTRY)
    polled = validate_event(exit_poll({"Lab": 410, "C": 131}), election, ENTRY)

    assert isinstance(decoded, Declaration) and isinstance(flashed, Flash)
    assert [c.party for c in decoded.candidates] == ["LAB", "CON"]
    assert decoded.winner.party == "LAB" and flashed.winner_party == "LAB"
    assert polled == ExitPoll(seats=(("LAB", 410), ("CON", 131)))


def test_a_party_and_its_alias_twice_in_one_declaration_or_poll_are_refused() -> None:
    election = bundled_election("uk-2024")
    twice = declaration("E14001425", ("Andrew Pakes", "LAB", 17669), ("Andrew Pakes", "Lab", 3))

    with pytest.raises(InvalidEvent, match=r"candidate 2 \(Andrew Pakes, LAB\) is listed twice"):
        validate_event(twice, election, ENTRY)
    with pytest.raises(InvalidEvent, match=r"'Lab' and 'LAB' are the same party, LAB"):
        validate_event(exit_poll({"LAB": 410, "Lab": 411}), election, ENTRY)


def test_a_state_of_parties_may_name_parties_by_alias_but_not_one_party_twice() -> None:
    election = bundled_election("uk-2024")
    figures = {"seats": 1, "gains": 1, "losses": 0}
    event = {
        "type": "state_of_parties",
        "source": "PA",
        "constituencies": ["E14001425"],
        "parties": {"Lab": figures},
    }

    decoded = validate_event(event, election, ENTRY)
    event["parties"] = {"Lab": figures, "LAB": figures}

    assert isinstance(decoded, StateOfParties)
    assert [party.code for party in decoded.parties] == ["LAB"]
    with pytest.raises(InvalidEvent, match=r"'LAB' and 'Lab' are the same party"):
        validate_event(event, election, ENTRY)


def test_an_exit_poll_projecting_more_seats_than_there_are_is_rejected() -> None:
    election = bundled_election()
    with pytest.raises(InvalidEvent, match="add up to 1,000,000,000,000, more than the 650"):
        validate_event({"type": "exit_poll", "seats": {"LAB": 10**12}}, election, "1-0")
    with pytest.raises(InvalidEvent, match="add up to 651, more than the 650"):
        validate_event({"type": "exit_poll", "seats": {"LAB": 400, "CON": 251}}, election, "1-0")
    validate_event({"type": "exit_poll", "seats": {"LAB": 410, "CON": 131}}, election, "1-0")
