"""What a hostile or broken feed may send beyond posts: names, notes, reasons, sources and
candidate lists are bounded, and hold nothing that would move a terminal's cursor or reorder
the text around it; an event's electorate of 0 does not switch plausibility off."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from service.core.decoding import decode_event
from service.core.events import (
    CANDIDATES_MAX,
    REASON_MAX,
    TEXT_MAX,
    Declaration,
    InvalidEvent,
)
from tests.core.builders import declaration, flash, retraction, status, tiny_election

ENTRY = "1720148400000-0"
TWO = (("Ana", "KIW", 500), ("Ben", "TUI", 300))


def _many_candidates(count: int) -> dict[str, Any]:
    return declaration("N1", ("Ana", "KIW", 1), *((f"C{n}", "MOA", 0) for n in range(count - 1)))


def _state_of_parties(source: str) -> dict[str, Any]:
    return {
        "type": "state_of_parties",
        "source": source,
        "constituencies": ["N1"],
        "parties": {"KIW": {"seats": 1, "gains": 0, "losses": 0}},
    }


REFUSED: list[tuple[str, Any, str]] = [
    (
        "a candidate name with a terminal escape",
        declaration("N1", ("Ana\x1b[2J", "KIW", 500), ("Ben", "TUI", 300)),
        "candidate 1: 'name' has a control character (U+001B) at character 4",
    ),
    (
        "a candidate name with a NUL",
        declaration("N1", ("Ana", "KIW", 500), ("B\x00en", "TUI", 300)),
        "candidate 2: 'name' has a control character (U+0000) at character 2",
    ),
    (
        "a candidate name with a vertical tab",
        declaration("N1", ("Ana\x0bBaker", "KIW", 500), ("Ben", "TUI", 300)),
        "candidate 1: 'name' has a control character (U+000B) at character 4",
    ),
    (
        "a candidate name with a bidirectional override",
        declaration("N1", ("Ana \u202enaB", "KIW", 500), ("Ben", "TUI", 300)),
        "candidate 1: 'name' has a bidirectional control (U+202E) at character 5",
    ),
    (
        "a candidate name too long",
        declaration("N1", ("A" * (TEXT_MAX + 1), "KIW", 500), ("Ben", "TUI", 300)),
        f"candidate 1: 'name' is {TEXT_MAX + 1:,} characters long, over {TEXT_MAX:,}",
    ),
    (
        "a tie's named winner with an escape",
        declaration(
            "N1", ("Ana", "KIW", 5), ("Ben", "TUI", 5), winner={"name": "Ana\x1b", "party": "KIW"}
        ),
        "winner: 'name' has a control character (U+001B)",
    ),
    (
        "a flash winner with an isolate",
        flash("N1", "Ana\u2066", "KIW"),
        "winner: 'name' has a bidirectional control (U+2066)",
    ),
    (
        "more candidates than any ballot holds",
        _many_candidates(CANDIDATES_MAX + 1),
        f"{CANDIDATES_MAX + 1:,} candidates, over {CANDIDATES_MAX:,}",
    ),
    (
        "a retraction reason with a line break",
        retraction("N1", reason="oops\nKiwi Party gain Everywhere"),
        "'reason' has a control character (U+000A) at character 5",
    ),
    (
        "a retraction reason with an escape",
        retraction("N1", reason="oops\x1b[5m"),
        "'reason' has a control character (U+001B)",
    ),
    (
        "a retraction reason too long",
        retraction("N1", reason="r" * (TEXT_MAX + 1)),
        f"'reason' is {TEXT_MAX + 1:,} characters long",
    ),
    (
        "a status note with an override",
        status("N1", "recount", note="close\u202d"),
        "'note' has a bidirectional control (U+202D)",
    ),
    (
        "a feed's source with a line break",
        _state_of_parties("PA\nBBC"),
        "'source' has a control character (U+000A)",
    ),
    (
        "an event's electorate of 0 hiding implausible votes",
        declaration("N1", ("Ana", "KIW", 99_999), ("Ben", "TUI", 300), electorate=0),
        "100,299 valid votes in Nordhaven (N1) are more than its electorate of 1,000",
    ),
]


@pytest.mark.parametrize(
    ("document", "words"),
    [pytest.param(document, words, id=what) for what, document, words in REFUSED],
)
def test_hostile_text_or_impossible_figures_are_refused_with_a_one_line_reason(
    document: Any, words: str
) -> None:
    with pytest.raises(InvalidEvent) as raised:
        decode_event(orjson.dumps(document), tiny_election(), ENTRY)

    reason = str(raised.value)
    assert reason.startswith(f"entry {ENTRY}: ")
    assert len(reason.splitlines()) == 1
    assert words in reason


@pytest.mark.parametrize(
    "name",
    ["Ana\tBaker", "Ana\nBaker", "Ana\u00a0Baker", "Ana\u2028Baker", "José Núñez", "محمد علي"],
)
def test_names_spaced_any_way_and_in_any_script_are_still_taken(name: str) -> None:
    event = decode_event(orjson.dumps(declaration("N1", (name, "KIW", 5))), tiny_election(), ENTRY)

    assert isinstance(event, Declaration)
    assert event.winner.name == name


def test_the_longest_name_and_the_most_candidates_allowed_are_taken() -> None:
    document = _many_candidates(CANDIDATES_MAX)
    document["candidates"][0]["name"] = "A" * TEXT_MAX

    event = decode_event(orjson.dumps(document), tiny_election(), ENTRY)

    assert isinstance(event, Declaration)
    assert len(event.candidates) == CANDIDATES_MAX


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(status("Z" * 2_000_000, "counting"), id="an unknown constituency"),
        pytest.param(declaration("N1", ("Ana", "Z" * 2_000_000, 5)), id="an unknown party"),
        pytest.param({"type": "Z" * 2_000_000}, id="an unknown type"),
        pytest.param(status("N1", "Z\n" * 1_000_000), id="an unknown status, escaped"),
    ],
)
def test_a_reason_quoting_a_huge_value_is_cut_to_a_line_a_person_can_read(document: Any) -> None:
    with pytest.raises(InvalidEvent) as raised:
        decode_event(orjson.dumps(document), tiny_election(), ENTRY)

    reason = str(raised.value)
    assert reason.startswith(f"entry {ENTRY}: ")
    assert len(reason.splitlines()) == 1
    assert len(reason) <= REASON_MAX + 40
    assert reason.endswith(" characters)")
