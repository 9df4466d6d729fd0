"""One result however it is written, as properties (hypothesis) over real 2024 declarations.

Each example takes a real declaration, gives some candidates accented names and ties some on
votes, then writes it again another way: candidates in any order, names in NFC or NFD with any
spacing (and any case where only who is who is decided), the time in another time zone and
format, the keys in any order, the JSON with or without escapes and indentation.
"""

from __future__ import annotations

import copy
import json
import unicodedata
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.core.decoding import decode_event
from service.core.events import Declaration, InvalidEvent
from service.core.identity import candidate_key
from service.core.tally import Applied
from tests.core.builders import Desk, bundled_declarations, bundled_election
from tests.core.test_one_result import send, sent_kinds
from tests.core.test_tally import snapshot

Document = dict[str, Any]

PROPERTIES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ACCENTED = (
    "José Núñez",
    "Zoë Ångström",
    "Đặng Thị Ngọc Thịnh",  # letters with two marks each: NFD reorders nothing, NFC composes
    "Siân Gwenllïan",
    "Łukasz Żółć",
    "Seán Ó Fearghaíl",
    "Björk Guðmundsdóttir",
    "Strauß",
)
SPACES = (" ", "  ", "\t", "\u00a0", " \u2003 ", "\u3000")
EDGES = ("", " ", "\u00a0", "\t ", "\u2009")
OFFSETS = (
    -720,
    -330,
    -300,
    0,
    0,
    60,
    345,
    840,
)  # minutes: UTC-12 to UTC+14, half and quarter hours


def _real() -> list[Document]:
    return bundled_declarations("uk-2024")


def _elected(document: Document) -> tuple[str, str]:
    """Who the declaration says won, as (name, party): the named winner, else the top."""
    winner = document.get("winner")
    if winner is not None:
        return winner["name"], winner["party"]
    top = max(document["candidates"], key=lambda c: c["votes"])
    return top["name"], top["party"]


@st.composite
def _settled(draw: st.DrawFn, document: Document) -> Document:
    """``document`` with a ``winner`` where the top is tied (drawn), and perhaps where not."""
    document.pop("winner", None)
    top = max(c["votes"] for c in document["candidates"])
    tied = [c for c in document["candidates"] if c["votes"] == top]
    if len(tied) > 1 or draw(st.booleans()):
        chosen = draw(st.sampled_from(tied))
        document["winner"] = {"name": chosen["name"], "party": chosen["party"]}
    return document


@st.composite
def declarations(draw: st.DrawFn) -> Document:
    """A real 2024 declaration; some names accented; some candidates lowered to tie others."""
    document = copy.deepcopy(draw(st.sampled_from(_real())))
    candidates = document["candidates"]
    taken = {candidate_key(c["name"], c["party"]) for c in candidates}
    for candidate in candidates:
        name = draw(st.none() | st.sampled_from(ACCENTED))
        if name is not None and candidate_key(name, candidate["party"]) not in taken:
            taken.add(candidate_key(name, candidate["party"]))
            candidate["name"] = name
    indices = st.integers(0, len(candidates) - 1)
    for _ in range(draw(st.integers(0, 2)) if len(candidates) > 1 else 0):
        # Lowered, never raised: the figures stay within the electorate.
        a, b = draw(st.lists(indices, min_size=2, max_size=2, unique=True))
        candidates[a]["votes"] = candidates[b]["votes"] = min(
            candidates[a]["votes"], candidates[b]["votes"]
        )
    return draw(_settled(document))


@st.composite
def respelled(draw: st.DrawFn, name: str, *, case: bool = False) -> str:
    """``name`` in another Unicode form and spacing; in another case too if ``case``."""
    words = name.split()
    if case:
        cases: list[Callable[[str], str]] = [str, str.upper, str.lower, str.title, str.swapcase]
        change = draw(st.sampled_from(cases))
        words = [change(word) for word in words]
    joined = "".join(
        word + (draw(st.sampled_from(SPACES)) if index < len(words) - 1 else "")
        for index, word in enumerate(words)
    )
    spaced = draw(st.sampled_from(EDGES)) + joined + draw(st.sampled_from(EDGES))
    return unicodedata.normalize(draw(st.sampled_from(["NFC", "NFD"])), spaced)


@st.composite
def same_instant(draw: st.DrawFn, written: str) -> str:
    """The instant ``written`` names, written in another time zone and format."""
    moment = datetime.fromisoformat(written)
    minutes = draw(st.sampled_from(OFFSETS))
    local = moment.astimezone(timezone(timedelta(minutes=minutes)))
    style = draw(st.sampled_from(["extended", "milliseconds", "space", "basic"]))
    if style == "basic":
        text = local.strftime("%Y%m%dT%H%M%S%z")
    elif style == "milliseconds":
        text = local.isoformat(timespec="milliseconds")
    else:
        text = local.isoformat(sep=" " if style == "space" else "T")
    if minutes == 0 and draw(st.booleans()):
        text = text.removesuffix("+00:00").removesuffix("+0000") + "Z"
    return text


@st.composite
def shuffled(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with the keys of every object in it in a drawn order."""
    if isinstance(value, dict):
        keys = draw(st.permutations(list(value)))
        return {key: draw(shuffled(value[key])) for key in keys}
    if isinstance(value, list):
        return [draw(shuffled(item)) for item in value]
    return value


@st.composite
def rewritten(draw: st.DrawFn, document: Document) -> bytes:
    """``document`` written another way, as the bytes of a stream entry's event field."""
    document = copy.deepcopy(document)
    document["candidates"] = draw(st.permutations(document["candidates"]))
    for candidate in document["candidates"]:
        candidate["name"] = draw(respelled(candidate["name"]))
    winner = document.get("winner")
    if winner is not None:
        # A named winner only says who of the candidates it is: case does not count.
        winner["name"] = draw(respelled(winner["name"], case=True))
    document["declared_at"] = draw(same_instant(document["declared_at"]))
    if draw(st.booleans()):
        # The definition's electorate: the same whether given or not.
        del document["electorate"]
    layout = draw(st.sampled_from([None, 1, "\t"]))
    text = json.dumps(draw(shuffled(document)), ensure_ascii=draw(st.booleans()), indent=layout)
    return text.encode()


def _sent_first(desk: Desk, document: Document, revision: int | None) -> None:
    if revision is not None:
        document = document | {"revision": revision}
    [(kind, _)] = sent_kinds(send(desk, orjson.dumps(document)))
    assert kind == "declaration"


def _next_revision(raw: bytes, revision: int | None) -> bytes:
    """The rewriting under the next revision, as a feed resending it would number it."""
    if revision is None:
        return raw
    text = raw.decode()
    return (text[: text.rindex("}")] + f', "revision": {revision + 1}}}').encode()


@PROPERTIES
@given(st.data(), st.none() | st.integers(0, 3))
def test_any_rewriting_of_a_declaration_sent_after_it_is_an_identical_repeat(
    data: st.DataObject, revision: int | None
) -> None:
    document = data.draw(declarations(), label="declaration")
    desk = Desk(bundled_election("uk-2024"))
    _sent_first(desk, document, revision)
    before = snapshot(desk.tally)
    again = _next_revision(data.draw(rewritten(document), label="rewritten"), revision)

    applied = send(desk, again)

    assert applied == Applied()
    assert snapshot(desk.tally) == before


@st.composite
def changed(draw: st.DrawFn, document: Document) -> Document:
    """``document`` with a real change: one candidate's votes, or who won a tie by lot."""
    document = copy.deepcopy(document)
    candidates = document["candidates"]
    if len(candidates) > 1 and draw(st.booleans()):
        # The top two tie (the first lowered) and the lot goes to one it did not go to.
        was = _elected(document)
        ranked = sorted(candidates, key=lambda c: -c["votes"])
        ranked[0]["votes"] = ranked[1]["votes"]
        tied = [c for c in candidates if c["votes"] == ranked[1]["votes"]]
        others = [c for c in tied if (c["name"], c["party"]) != was]
        chosen = draw(st.sampled_from(others))
        document["winner"] = {"name": chosen["name"], "party": chosen["party"]}
        return document
    candidate = draw(st.sampled_from(candidates))
    delta = draw(st.integers(-min(candidate["votes"], 500), 500).filter(bool))
    candidate["votes"] += delta
    return draw(_settled(document))


@PROPERTIES
@given(st.data())
def test_a_real_change_of_votes_or_winner_however_written_is_a_correction(
    data: st.DataObject,
) -> None:
    document = data.draw(declarations(), label="declaration")
    desk = Desk(bundled_election("uk-2024"))
    _sent_first(desk, document, None)
    change = data.draw(changed(document), label="changed")

    applied = send(desk, data.draw(rewritten(change), label="rewritten"))

    [(kind, headline)] = sent_kinds(applied)
    assert (kind, headline[:12]) == ("correction", "Correction: ")
    seat = desk.tally.state(f"constituency:{document['constituency']}")
    assert seat["corrections"] == 1
    figures = Counter((c["party"], c["votes"]) for c in seat["candidates"])
    assert figures == Counter((c["party"], c["votes"]) for c in change["candidates"])
    name, party = _elected(change)
    assert candidate_key(seat["winner"]["name"], seat["winner"]["party"]) == candidate_key(
        name, party
    )


@PROPERTIES
@given(st.data())
def test_a_name_and_party_twice_is_refused_however_the_second_is_written(
    data: st.DataObject,
) -> None:
    document = data.draw(declarations(), label="declaration")
    twin = copy.deepcopy(data.draw(st.sampled_from(document["candidates"]), label="twin"))
    twin["name"] = data.draw(respelled(twin["name"], case=True), label="written")
    twin["votes"] = data.draw(st.integers(0, 1000), label="votes")
    position = data.draw(st.integers(0, len(document["candidates"])), label="position")
    document["candidates"].insert(position, twin)

    with pytest.raises(InvalidEvent, match=r"is listed twice, as candidate \d+"):
        decode_event(orjson.dumps(document), bundled_election("uk-2024"), "1-0")


@PROPERTIES
@given(st.data())
def test_one_name_in_another_party_is_another_candidate(data: st.DataObject) -> None:
    document = data.draw(declarations(), label="declaration")
    candidates = document["candidates"]
    namesake = data.draw(st.sampled_from(candidates), label="namesake")
    taken = {candidate_key(c["name"], c["party"]) for c in candidates}
    parties = [
        code
        for code in bundled_election("uk-2024").parties
        if candidate_key(namesake["name"], code) not in taken
    ]
    # Fewer votes than the winner, and no more than the electorate has left.
    room = document["electorate"] - sum(c["votes"] for c in candidates)
    most = min(max(c["votes"] for c in candidates) - 1, room)
    other = {
        "name": data.draw(respelled(namesake["name"], case=True), label="written"),
        "party": data.draw(st.sampled_from(parties), label="party"),
        "votes": data.draw(st.integers(0, most), label="votes"),
    }
    candidates.insert(data.draw(st.integers(0, len(candidates)), label="position"), other)

    event = decode_event(orjson.dumps(document), bundled_election("uk-2024"), "1-0")

    assert isinstance(event, Declaration)
    assert len(event.candidates) == len(candidates)
    assert (other["name"], other["party"]) in {(c.name, c.party) for c in event.candidates}


@PROPERTIES
@given(st.data())
def test_a_declaration_is_refused_exactly_when_its_valid_votes_exceed_the_electorate(
    data: st.DataObject,
) -> None:
    document = data.draw(declarations(), label="declaration")
    candidates = document["candidates"]
    valid = sum(c["votes"] for c in candidates)
    if data.draw(st.booleans(), label="the event gives it"):
        electorate = data.draw(st.integers(max(1, valid - 100), valid + 100), label="electorate")
        document["electorate"] = electorate
    else:
        del document["electorate"]
        electorate = bundled_election("uk-2024").constituencies[document["constituency"]].electorate
        # The top candidate takes the votes that bring the total near the electorate.
        target = electorate + data.draw(st.integers(-100, 100), label="over by")
        top = max(candidates, key=lambda c: c["votes"])
        top["votes"] += target - valid
        document.pop("winner", None)
        valid = target
    raw = orjson.dumps(document)

    if valid > electorate:
        with pytest.raises(InvalidEvent) as raised:
            decode_event(raw, bundled_election("uk-2024"), "1-0")
        assert f"{valid:,} valid votes in " in str(raised.value)
        assert f"electorate of {electorate:,} " in str(raised.value)
    else:
        assert isinstance(decode_event(raw, bundled_election("uk-2024"), "1-0"), Declaration)
