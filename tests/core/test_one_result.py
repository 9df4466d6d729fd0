"""One result however it is written; figures that cannot be (DESIGN.md, Events on the stream).

A declaration that differs from the seat's current one only in how it is written — candidates
on equal votes listed the other way round, names in another Unicode form or spacing, its time
in another time zone, its keys in another order — is an identical repeat: nothing changes and
nothing is sent. A real change of votes or winner is still a correction. A name and party
twice in one declaration is refused however the name is written; more valid votes than the
seat has electors are refused, with both figures in the reason.
"""

from __future__ import annotations

import copy
import unicodedata
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings

from service.core.decoding import decode_event
from service.core.election import parse_election
from service.core.events import Declaration, InvalidEvent
from service.core.tally import DECLARATIONS, NATIONAL, Applied
from tests.core.builders import Desk, bundled_declarations, bundled_election, tiny_definition
from tests.core.test_tally import snapshot

Document = dict[str, Any]

PETERBOROUGH = "E14001425"
MID_BUCKINGHAMSHIRE = "E14001360"
PROPERTIES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def real(seat: str) -> Document:
    """The seat's 2024 declaration as the bundled night has it (a fresh copy)."""
    return next(d for d in bundled_declarations() if d["constituency"] == seat)


def peterborough(
    *changes: tuple[str, int], order: list[str] | None = None, **extra: Any
) -> Document:
    """Peterborough 2024 with some candidates' votes changed (by name), listed in ``order``."""
    document = real(PETERBOROUGH)
    votes = dict(changes)
    for candidate in document["candidates"]:
        candidate["votes"] = votes.get(candidate["name"], candidate["votes"])
    if order is not None:
        by_name = {c["name"]: c for c in document["candidates"]}
        document["candidates"] = [by_name[name] for name in order]
    return document | extra


NFC_NAME = unicodedata.normalize("NFC", "José Núñez")
NFD_NAME = unicodedata.normalize("NFD", "José Núñez")
TIED_LOSERS = (("Tom Rogers", 900), ("Zahid Khan", 900))
TIED_WINNERS = (("Paul Bristow", 13418),)


def renamed(document: Document, old: str, new: str) -> Document:
    document = copy.deepcopy(document)
    for candidate in document["candidates"]:
        if candidate["name"] == old:
            candidate["name"] = new
    winner = document.get("winner")
    if winner is not None and winner["name"] == old:
        winner["name"] = new
    return document


def without_electorate(document: Document) -> Document:
    return {key: value for key, value in document.items() if key != "electorate"}


def send(desk: Desk, raw: bytes) -> Applied:
    """Decode ``raw`` as the next stream entry's event field, and apply it."""
    seq = desk.next_seq()
    return desk.tally.apply(seq, decode_event(raw, desk.election, str(seq)))


def sent_kinds(applied: Applied) -> list[tuple[str, str]]:
    return [
        (c.event["kind"], c.event["headline"])
        for c in applied.changes
        if c.channel == DECLARATIONS and c.event is not None
    ]


# --- the table: one result written two ways ----------------------------------------------

PETERBOROUGH_TIED = peterborough(*TIED_LOSERS)
ORDER = [c["name"] for c in PETERBOROUGH_TIED["candidates"]]
LAB_WINS_THE_LOT = {"name": "Andrew Pakes", "party": "LAB"}

REPEATS = [
    pytest.param(
        PETERBOROUGH_TIED,
        peterborough(*TIED_LOSERS, order=[*ORDER[:-2], "Zahid Khan", "Tom Rogers"]),
        id="two 900-vote losers listed the other way round",
    ),
    pytest.param(
        renamed(real(PETERBOROUGH), "Andrew Pakes", NFC_NAME),
        renamed(real(PETERBOROUGH), "Andrew Pakes", NFD_NAME),
        id="the winner's name in Unicode NFD",
    ),
    pytest.param(
        real(PETERBOROUGH),
        renamed(real(PETERBOROUGH), "Paul Bristow", "  Paul \t Bristow\u00a0"),
        id="a name with spaces around it and a tab and spaces inside",
    ),
    pytest.param(
        real(PETERBOROUGH),
        real(PETERBOROUGH) | {"declared_at": "2024-07-05T04:05:00Z"},
        id="the time in UTC rather than British Summer Time",
    ),
    pytest.param(
        real(PETERBOROUGH),
        real(PETERBOROUGH) | {"declared_at": "2024-07-05T09:50:00.000+05:45"},
        id="the time in Kathmandu, to the millisecond",
    ),
    pytest.param(
        real(PETERBOROUGH),
        real(PETERBOROUGH) | {"declared_at": "20240705T040500Z"},
        id="the time in ISO 8601's basic format",
    ),
    pytest.param(
        peterborough(*TIED_WINNERS, winner=LAB_WINS_THE_LOT),
        peterborough(*TIED_WINNERS, winner={"name": "ANDREW  PAKES", "party": "LAB"}),
        id="the winner of a tie named in capitals and spaced out",
    ),
    pytest.param(
        real(PETERBOROUGH),
        {"electorate": 73378, **without_electorate(real(PETERBOROUGH))},
        id="the keys in another order",
    ),
]


@pytest.mark.parametrize(("first", "resend"), REPEATS)
def test_a_declaration_written_another_way_is_an_identical_repeat(
    first: Document, resend: Document
) -> None:
    desk = Desk(bundled_election("uk-2024"))
    [(kind, _)] = sent_kinds(send(desk, orjson.dumps(first)))
    assert kind == "declaration"
    before = snapshot(desk.tally)

    applied = send(desk, orjson.dumps(resend))

    assert applied == Applied()
    assert snapshot(desk.tally) == before  # the spelling first shown stays


CORRECTIONS = [
    pytest.param(
        PETERBOROUGH_TIED,
        peterborough(("Tom Rogers", 900), ("Zahid Khan", 901)),
        "Correction: Labour gain Peterborough from Conservative, majority 118",
        id="one of the two losers has one vote more",
    ),
    pytest.param(
        peterborough(*TIED_WINNERS, winner=LAB_WINS_THE_LOT),
        peterborough(*TIED_WINNERS, winner={"name": "Paul Bristow", "party": "CON"}),
        "Correction: Conservative hold Peterborough, majority 0",
        id="the lot named the other tied candidate",
    ),
    pytest.param(
        real(PETERBOROUGH),
        peterborough(("Paul Bristow", 13419)),
        "Correction: Conservative hold Peterborough, majority 1",
        id="a recount that changes the winner",
    ),
    pytest.param(
        real(PETERBOROUGH),
        renamed(real(PETERBOROUGH), "Andrew Pakes", "ANDREW PAKES"),
        "Correction: Labour gain Peterborough from Conservative, majority 118",
        id="a name in other case: case is shown, so it is compared",
    ),
]


@pytest.mark.parametrize(("first", "resend", "headline"), CORRECTIONS)
def test_a_real_change_is_still_a_correction(
    first: Document, resend: Document, headline: str
) -> None:
    desk = Desk(bundled_election("uk-2024"))
    send(desk, orjson.dumps(first))

    applied = send(desk, orjson.dumps(resend))

    assert sent_kinds(applied) == [("correction", headline)]
    assert desk.tally.state(f"constituency:{PETERBOROUGH}")["corrections"] == 1


# --- the table: who is one candidate -----------------------------------------------------

NUNEZ_TWICE = [
    pytest.param(NFC_NAME, NFD_NAME, id="NFC and NFD"),
    pytest.param("José Núñez", "JOSÉ NÚÑEZ", id="in capitals"),
    pytest.param("José Núñez", " josé  núñez ", id="lower case with spaces"),
    pytest.param("Strauß", "STRAUSS", id="German sharp s, case-folded"),
    pytest.param("A\nB", "A B", id="a line break for a space"),
]


@pytest.mark.parametrize(("written", "again"), NUNEZ_TWICE)
def test_one_name_and_party_twice_in_a_declaration_is_refused_however_it_is_written(
    written: str, again: str
) -> None:
    document = real(PETERBOROUGH)
    document["candidates"][0] = {"name": written, "party": "LAB", "votes": 1000}
    document["candidates"].append({"name": again, "party": "LAB", "votes": 900})

    with pytest.raises(InvalidEvent) as raised:
        decode_event(orjson.dumps(document), bundled_election("uk-2024"), "1-0")

    reason = str(raised.value)
    assert reason.startswith("entry 1-0: candidate 9 (")
    assert "LAB) is listed twice, as candidate 1" in reason
    assert len(reason.splitlines()) == 1


def test_two_candidates_of_one_name_in_different_parties_are_two_candidates() -> None:
    desk = Desk(bundled_election("uk-2024"))
    mid_bucks = real(MID_BUCKINGHAMSHIRE)  # two Greg Smiths, Conservative and Green
    mid_bucks["candidates"][4]["name"] = "GREG  SMITH"  # however the second is written

    send(desk, orjson.dumps(mid_bucks))

    seat = desk.tally.state(f"constituency:{MID_BUCKINGHAMSHIRE}")
    smiths = [
        (c["name"], c["party"], c["votes"])
        for c in seat["candidates"]
        if "smith" in c["name"].lower()
    ]
    assert smiths == [("Greg Smith", "CON", 20150), ("GREG  SMITH", "GRN", 2942)]
    assert seat["winner"] == {"name": "Greg Smith", "party": "CON"}
    parties = desk.tally.state(NATIONAL)["parties"]
    assert (parties["CON"]["votes"], parties["GRN"]["votes"]) == (20150, 2942)


# --- the table: plausibility -------------------------------------------------------------

IMPLAUSIBLE = [
    pytest.param(
        without_electorate(peterborough(("Andrew Pakes", 90000 - 41872 + 13418))),
        "90,000 valid votes in Peterborough (E14001425) are more than its electorate of "
        "73,378 (the definition's)",
        id="Peterborough: 90,000 valid votes on an electorate of 73,378",
    ),
    pytest.param(
        real(PETERBOROUGH) | {"electorate": 40000},
        "41,872 valid votes in Peterborough (E14001425) are more than its electorate of "
        "40,000 (the event's)",
        id="more votes than the electorate the event gives",
    ),
    pytest.param(
        without_electorate(peterborough(("Andrew Pakes", 73378 - 41872 + 13418 + 1))),
        "73,379 valid votes in Peterborough (E14001425) are more than its electorate of 73,378",
        id="one vote over",
    ),
]


@pytest.mark.parametrize(("document", "reason"), IMPLAUSIBLE)
def test_more_valid_votes_than_electors_is_refused_naming_both_figures(
    document: Document, reason: str
) -> None:
    with pytest.raises(InvalidEvent) as raised:
        decode_event(orjson.dumps(document), bundled_election("uk-2024"), "1-0")

    assert str(raised.value).startswith("entry 1-0: ")
    assert reason in str(raised.value)


PLAUSIBLE = [
    pytest.param(
        without_electorate(peterborough(("Andrew Pakes", 73378 - 41872 + 13418))),
        id="every elector voted",
    ),
    pytest.param(
        peterborough(("Andrew Pakes", 80000 - 41872 + 13418), electorate=80000),
        id="over the definition's electorate, within the event's",
    ),
]


@pytest.mark.parametrize("document", PLAUSIBLE)
def test_up_to_the_electorate_in_force_is_accepted(document: Document) -> None:
    event = decode_event(orjson.dumps(document), bundled_election("uk-2024"), "1-0")

    assert isinstance(event, Declaration)


def test_an_electorate_of_0_is_not_known_and_not_checked() -> None:
    definition = tiny_definition()
    definition["constituencies"][0]["electorate"] = 0
    desk = Desk(parse_election(definition))
    document = {
        "type": "declaration",
        "constituency": "N1",
        "candidates": [{"name": "Ana", "party": "KIW", "votes": 5000}],
    }

    send(desk, orjson.dumps(document))

    assert "turnout" not in desk.tally.state("constituency:N1")
    assert desk.tally.state("constituency:N1")["valid_votes"] == 5000


@pytest.mark.parametrize(
    "again",
    [NFD_NAME, f" {NFC_NAME}  ", NFC_NAME.replace(" ", "\u00a0")],
    ids=["NFD", "spaced", "a no-break space"],
)
def test_a_flash_resent_with_the_name_written_another_way_is_a_repeat(again: str) -> None:
    desk = Desk(bundled_election("uk-2024"))
    flash = {"type": "flash", "constituency": PETERBOROUGH}
    send(desk, orjson.dumps(flash | {"winner": {"name": NFC_NAME, "party": "LAB"}}))
    before = snapshot(desk.tally)

    applied = send(desk, orjson.dumps(flash | {"winner": {"name": again, "party": "LAB"}}))

    assert applied == Applied()
    assert snapshot(desk.tally) == before
