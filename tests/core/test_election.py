"""Election definitions: the bundled ones load, bad ones are refused with a useful message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from service import data
from service.core.election import ElectionError, load_election, parse_election, slugify
from service.core.tally import NATIONAL, Tally
from tests.core.builders import Desk, declaration, tiny_definition

Definition = dict[str, Any]


@pytest.mark.parametrize("name", ["uk-2017", "uk-2019", "uk-2024"])
def test_the_bundled_definitions_load_with_650_seats_and_a_majority_of_326(name: str) -> None:
    election = load_election(data.election_path(name))

    assert election.id == name
    assert election.total_seats == 650
    assert election.majority == 326
    assert sorted(election.nations) == ["england", "northern-ireland", "scotland", "wales"]
    assert len(election.regions) == 12
    assert sum(len(area.constituencies) for area in election.regions.values()) == 650
    assert sum(len(area.constituencies) for area in election.nations.values()) == 650
    assert {"LAB", "CON", "LD", "SNP", "SPK"} <= set(election.parties)


def test_the_2024_definition_knows_peterborough_and_its_region() -> None:
    election = load_election(data.election_path("uk-2024"))
    peterborough = election.constituencies["E14001425"]

    assert peterborough.name == "Peterborough"
    assert peterborough.previous == "CON"
    assert peterborough.region_slug == "east-of-england"
    assert peterborough.nation_slug == "england"
    assert "E14001425" in election.regions["east-of-england"].constituencies
    assert election.regions["east-of-england"].name == "East of England"
    assert election.parties["LAB"].name == "Labour"


Entry = Callable[[Definition], dict[str, Any]]
Breaker = Callable[[Definition], None]


def _drop(entry: Entry, field: str) -> Breaker:
    def drop(definition: Definition) -> None:
        del entry(definition)[field]

    return drop


def _set(entry: Entry, field: str, value: Any) -> Breaker:
    def set_(definition: Definition) -> None:
        entry(definition)[field] = value

    return set_


def _top(d: Definition) -> dict[str, Any]:
    return d


def _seat(index: int) -> Entry:
    return lambda d: d["constituencies"][index]


def _party(code: str) -> Entry:
    return lambda d: d["parties"][code]


DEFINITION_ERRORS = [
    # (what is wrong, how to break the tiny definition, words the message must hold)
    ("no id", _drop(_top, "id"), ["definition", "'id'"]),
    ("no name", _drop(_top, "name"), ["definition", "'name'"]),
    ("no parties", _drop(_top, "parties"), ["'parties'"]),
    ("empty parties", _set(_top, "parties", {}), ["'parties'"]),
    ("party not an object", _set(_top, "parties", {"KIW": "Kiwi"}), ["party 'KIW'"]),
    ("party without a name", _drop(_party("TUI"), "name"), ["party 'TUI'", "'name'"]),
    ("colour not a string", _set(_party("KIW"), "colour", 7), ["party 'KIW'", "'colour'"]),
    ("no constituencies", _drop(_top, "constituencies"), ["'constituencies'"]),
    ("empty constituencies", _set(_top, "constituencies", []), ["'constituencies'"]),
    (
        "constituency not an object",
        lambda d: d["constituencies"].__setitem__(1, "N2"),
        ["constituency 1"],
    ),
    ("constituency without an id", _drop(_seat(1), "id"), ["constituency 1", "'id'"]),
    ("constituency without a name", _drop(_seat(1), "name"), ["constituency 1 (N2)", "'name'"]),
    ("blank region", _set(_seat(2), "region", "  "), ["constituency 2 (S1)", "'region'"]),
    ("missing nation", _drop(_seat(0), "nation"), ["constituency 0 (N1)", "'nation'"]),
    ("missing previous", _drop(_seat(0), "previous"), ["constituency 0 (N1)", "'previous'"]),
    ("missing electorate", _drop(_seat(0), "electorate"), ["(N1)", "'electorate'"]),
    ("negative electorate", _set(_seat(1), "electorate", -1), ["(N2)", "'electorate'"]),
    ("float electorate", _set(_seat(1), "electorate", 1.5), ["(N2)", "'electorate'"]),
    ("bool electorate", _set(_seat(1), "electorate", True), ["(N2)", "'electorate'"]),
    (
        "duplicate constituency id",
        _set(_seat(2), "id", "N1"),
        ["constituency 2 (N1)", "duplicate constituency id"],
    ),
    (
        "previous not in parties",
        _set(_seat(1), "previous", "XYZ"),
        ["constituency 1 (N2)", "'previous'", "'XYZ'", "'parties'"],
    ),
    ("majority of zero", _set(_top, "majority", 0), ["'majority'", "from 1 to 3"]),
    ("majority over the seats", _set(_top, "majority", 4), ["'majority'", "from 1 to 3"]),
    ("negative majority", _set(_top, "majority", -2), ["'majority'"]),
    ("majority as text", _set(_top, "majority", "2"), ["'majority'"]),
    ("majority as a float", _set(_top, "majority", 2.0), ["'majority'"]),
    ("majority as a bool", _set(_top, "majority", True), ["'majority'"]),
    ("aliases not a list", _set(_party("KIW"), "aliases", "Kiwi"), ["party 'KIW'", "'aliases'"]),
    ("a blank alias", _set(_party("KIW"), "aliases", [" "]), ["party 'KIW'", "'aliases'"]),
    ("an alias twice", _set(_party("KIW"), "aliases", ["K", "K"]), ["party 'KIW'", "twice"]),
    (
        "an alias that is another party's code",
        _set(_party("KIW"), "aliases", ["TUI"]),
        ["party 'KIW'", "alias 'TUI'", "the code of party 'TUI'"],
    ),
    (
        "an alias that is another party's alias",
        lambda d: (
            d["parties"]["KIW"].__setitem__("aliases", ["K"]),
            d["parties"]["MOA"].__setitem__("aliases", ["M", "K"]),
        ),
        ["party 'MOA'", "alias 'K'", "an alias of party 'KIW'"],
    ),
    ("other_party not a party", _set(_top, "other_party", "OTH"), ["'other_party'", "'OTH'"]),
    ("other_party not text", _set(_top, "other_party", 3), ["'other_party'"]),
    ("non-voting seats as text", _set(_top, "non_voting_seats", "4"), ["'non_voting_seats'"]),
    ("negative non-voting seats", _set(_top, "non_voting_seats", -1), ["from 0 to 2"]),
    ("every seat non-voting", _set(_top, "non_voting_seats", 3), ["from 0 to 2"]),
    ("abstaining parties as text", _set(_top, "abstaining_parties", "TUI"), ["a list"]),
    (
        "unknown abstaining party",
        _set(_top, "abstaining_parties", ["TUI", "XYZ"]),
        ["'abstaining_parties'", "'XYZ'", "'parties'"],
    ),
    ("abstaining party twice", _set(_top, "abstaining_parties", ["MOA", "MOA"]), ["twice"]),
    ("region without letters", _set(_seat(0), "region", "!!"), ["N1", "region '!!'"]),
    (
        "two regions with one slug",
        _set(_seat(2), "region", "Cote Nord"),
        ["'Côte Nord'", "'Cote Nord'", "'cote-nord'"],
    ),
]


@pytest.mark.parametrize(
    ("break_it", "words"),
    [pytest.param(fn, words, id=what) for what, fn, words in DEFINITION_ERRORS],
)
def test_each_definition_error_names_the_file_entry_and_field(
    tmp_path: Path, break_it: Breaker, words: list[str]
) -> None:
    definition = tiny_definition()
    break_it(definition)
    path = tmp_path / "broken.election.json"
    path.write_bytes(orjson.dumps(definition))

    with pytest.raises(ElectionError) as raised:
        load_election(path)

    message = str(raised.value)
    assert message.startswith(f"{path}: ")
    assert len(message.splitlines()) == 1
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    ("content", "words"),
    [
        pytest.param(b'{"id": "x",', ["not valid JSON"], id="truncated"),
        pytest.param(b"", ["not valid JSON"], id="empty"),
        pytest.param(b"\xff\xfe{}", ["not valid JSON"], id="not UTF-8"),
        pytest.param(b"[1, 2, 3]", ["must be a JSON object"], id="a list"),
        pytest.param(b'"uk-2024"', ["must be a JSON object"], id="a string"),
        pytest.param(b"null", ["must be a JSON object"], id="null"),
    ],
)
def test_a_file_that_is_not_a_json_object_is_refused_naming_the_file(
    tmp_path: Path, content: bytes, words: list[str]
) -> None:
    path = tmp_path / "odd.election.json"
    path.write_bytes(content)

    with pytest.raises(ElectionError) as raised:
        load_election(path)

    assert str(raised.value).startswith(f"{path}: ")
    for word in words:
        assert word in str(raised.value)


def test_a_missing_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.election.json"

    with pytest.raises(ElectionError, match=r"nowhere\.election\.json: cannot read"):
        load_election(path)


def test_a_decoded_definition_is_named_by_its_source() -> None:
    definition = tiny_definition()
    del definition["constituencies"][0]["name"]

    with pytest.raises(ElectionError, match=r"^upload\.json: constituency 0 \(N1\): 'name'"):
        parse_election(definition, source="upload.json")


@pytest.mark.parametrize(
    ("seats", "majority"),
    [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (650, 326), (651, 326)],
)
def test_majority_defaults_to_half_the_seats_plus_one(seats: int, majority: int) -> None:
    definition = tiny_definition()
    template = definition["constituencies"][0]
    definition["constituencies"] = [{**template, "id": f"C{n}"} for n in range(seats)]

    election = parse_election(definition)

    assert election.total_seats == seats
    assert election.majority == majority


def test_a_given_majority_is_kept() -> None:
    definition = tiny_definition()
    definition["majority"] = 3

    assert parse_election(definition).majority == 3


def test_the_working_majority_fields_are_kept_when_given_and_absent_otherwise() -> None:
    definition = tiny_definition()
    definition |= {"non_voting_seats": 1, "abstaining_parties": ["MOA"]}

    given = parse_election(definition)
    plain = parse_election(tiny_definition())

    assert (given.non_voting_seats, given.abstaining_parties) == (1, ("MOA",))
    assert given.has_working_majority
    assert (plain.non_voting_seats, plain.abstaining_parties) == (None, None)
    assert not plain.has_working_majority


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("East of England", "east-of-england"),
        ("Yorkshire and The Humber", "yorkshire-and-the-humber"),
        ("Northern Ireland", "northern-ireland"),
        ("Côte Nord", "cote-nord"),
        ("Île-de-France", "ile-de-france"),
        ("Zürich", "zurich"),
        ("Ynys Môn", "ynys-mon"),
        ("  North -- East!  ", "north-east"),
        ("Region 7", "region-7"),
    ],
)
def test_area_names_become_slugs(name: str, slug: str) -> None:
    assert slugify(name) == slug


def test_a_tiny_election_with_made_up_parties_works_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "tiny.election.json"
    path.write_bytes(orjson.dumps(tiny_definition()))
    election = load_election(path)
    desk = Desk(election)

    assert election.majority == 2
    assert sorted(election.regions) == ["basse-vallee", "cote-nord"]
    assert sorted(election.nations) == ["lowland", "upland"]
    assert set(desk.tally.channels()) == {
        "national",
        "declarations",
        "posts",
        "constituency:N1",
        "constituency:N2",
        "constituency:S1",
        "region:cote-nord",
        "region:basse-vallee",
        "nation:upland",
        "nation:lowland",
    }

    desk.send(declaration("N1", ("Ana", "KIW", 500), ("Ben", "TUI", 300)))
    desk.send(declaration("N2", ("Cleo", "KIW", 610), ("Dan", "TUI", 500), ("Eve", "MOA", 90)))
    applied = desk.send(declaration("S1", ("Finn", "MOA", 400), ("Gus", "TUI", 100)))

    national = desk.tally.state(NATIONAL)
    assert national["total_seats"] == 3
    assert national["majority"] == 2
    assert national["declared"] == 3
    assert national["seats_to_declare"] == 0
    assert national["leader"] == "KIW"
    assert national["majority_party"] == "KIW"
    assert national["seats_to_majority"] == 0
    assert national["parties"]["KIW"] == {
        "name": "Kiwi Party",
        "seats": 2,
        "gains": 1,
        "losses": 0,
        "net": 1,
        "votes": 1110,
        "share": 44.4,  # 1,110 of 2,500 valid votes
        "seats_to_majority": 0,
        "overall_majority": 1,  # its 2 seats against the other 1
    }
    assert national["parties"]["TUI"]["net"] == -2
    assert national["parties"]["MOA"]["gains"] == 1
    assert desk.tally.state("region:cote-nord")["name"] == "Côte Nord"
    assert desk.tally.state("region:cote-nord")["parties"]["KIW"]["seats"] == 2
    assert desk.tally.state("nation:lowland")["parties"]["MOA"]["seats"] == 1
    (event,) = (c.event for c in applied.changes if c.event is not None)
    assert event["headline"] == "Moa Movement gain Lowmere from Tui Alliance, majority 300"
    assert desk.tally.recompute() == {
        channel: desk.tally.state(channel)
        for channel in desk.tally.channels()
        if channel not in ("declarations", "posts")
    }


def test_a_fresh_tally_of_a_tiny_election_has_every_seat_awaiting() -> None:
    tally = Tally(parse_election(tiny_definition()))

    national = tally.state(NATIONAL)
    assert national["declared"] == 0
    assert national["seats_to_declare"] == 3
    assert "leader" not in national
    assert tally.state("constituency:S1")["status"] == "awaiting"
    assert tally.state("declarations") == {"recent": []}


def test_an_alias_names_its_party_and_the_other_party_is_kept() -> None:
    definition = tiny_definition()
    definition["parties"]["KIW"]["aliases"] = ["Kiwi", "K"]
    definition["other_party"] = "MOA"

    election = parse_election(definition)

    assert election.parties["KIW"].aliases == ("Kiwi", "K")
    assert [election.party_code(c) for c in ("KIW", "Kiwi", "K", "TUI", "kiwi")] == [
        "KIW",
        "KIW",
        "KIW",
        "TUI",
        None,
    ]
    assert election.other_party == "MOA"


@pytest.mark.parametrize("name", ["uk-2017", "uk-2019", "uk-2024"])
def test_the_bundled_definitions_know_pa_abbreviations_and_count_others_as_oth(name: str) -> None:
    election = load_election(data.election_path(name))

    assert election.other_party == "OTH"
    assert "OTH" in election.parties
    pa = {"Lab": "LAB", "C": "CON", "Green": "GRN", "Alliance": "APNI", "Ind": "IND"}
    for abbreviation, code in pa.items():
        assert election.party_code(abbreviation) == code
