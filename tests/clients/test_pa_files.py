"""PA files written from the bundled data, read back and mapped; bad ones refused."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from clients.night import load_night, plan_night
from clients.pa.files import PaFileError, PaResult, PaSeat, PaStateOfParties, parse_pa
from clients.pa.mapping import MapFileError, Mapper, UnmappedError, fold_name, read_seat_map
from clients.pa.writer import PaWriter, seat_numbers
from service import data
from service.core.decoding import validate_event
from service.core.election import Election, load_election, parse_election

PETERBOROUGH = "E14001425"
AT = datetime(2024, 7, 5, 3, 0, tzinfo=UTC)

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<FirstPastThePostResult revision="1">&lol3;</FirstPastThePostResult>
"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<Recount><Election><Constituency number="1" name="&secret;"/></Election></Recount>
"""


@pytest.fixture(scope="module")
def election() -> Election:
    return load_election(data.election_path("uk-2024"))


def night_declarations() -> dict[str, dict[str, Any]]:
    return {e["constituency"]: e for e in load_night("uk-2024") if e["type"] == "declaration"}


def test_the_whole_night_written_as_pa_files_reads_back_as_the_same_declarations(
    election: Election,
) -> None:
    plan = plan_night(load_night("uk-2024"), flashes=True, recounts=True)
    outputs = PaWriter(election).files(plan)
    mapper = Mapper(election)
    expected = night_declarations()

    events = [mapper.to_event(parse_pa(output.content)).event for output in outputs]

    declarations = [e for e in events if e["type"] == "declaration"]
    assert len(declarations) == 650 == sum(e["type"] == "flash" for e in events)
    for event in declarations:
        original = expected[event["constituency"]]
        assert event["candidates"] == original["candidates"]
        assert (event["declared_at"], event["electorate"]) == (
            original["declared_at"],
            original["electorate"],
        )
        assert event["revision"] == 1
        validate_event(event, election)
    state = [e for e in events if e["type"] == "state_of_parties"]
    assert [len(e["constituencies"]) for e in state] == [*range(50, 651, 50), 650]
    assert state[-1]["parties"]["LAB"] == {"seats": 411, "gains": 218, "losses": 7}
    # The writer spells some seats with "&" and in capitals, as PA does.
    names = b"".join(o.content for o in outputs)
    assert b" &amp; " in names and b'name="SUNDERLAND CENTRAL"' in names


def test_a_correction_is_the_next_revision_of_the_seats_result(election: Election) -> None:
    plan = plan_night(load_night("uk-2024"), corrections=2, seed=3)

    outputs = PaWriter(election).files(plan)

    second = [
        o for o in outputs if o.name.startswith("uk2024_result_") and o.name.endswith("_2.xml")
    ]
    assert len(second) == 2
    parsed = parse_pa(second[0].content)
    assert isinstance(parsed, PaResult) and parsed.revision == 2


@pytest.mark.parametrize(
    ("pa_name", "definition_name"),
    [
        ("Richmond & Northallerton", "Richmond and Northallerton"),
        ("YNYS MON", "Ynys Môn"),
        ("Inverness Skye and West Ross-shire", "Inverness, Skye and West Ross-shire"),
        ("  Weston-super-Mare ", "Weston-super-Mare"),
    ],
)
def test_seat_names_are_compared_without_case_accents_punctuation_or_ampersands(
    pa_name: str, definition_name: str
) -> None:
    assert fold_name(pa_name) == fold_name(definition_name)


def test_pa_abbreviations_map_to_the_definitions_codes_and_others_to_its_other_party(
    election: Election,
) -> None:
    mapper = Mapper(election)

    assert [mapper.party(a, "here") for a in ("Lab", "C", "Green", "SNP", "Ind", "LAB")] == [
        ("LAB", False),
        ("CON", False),
        ("GRN", False),
        ("SNP", False),
        ("IND", False),
        ("LAB", False),
    ]
    assert mapper.party("WPB", "here") == ("OTH", True)
    assert mapper.party("Yrks", "here") == ("OTH", True)


def test_a_party_is_never_guessed_when_the_definition_names_no_other_party(
    election: Election,
) -> None:
    document = orjson.loads(data.election_path("uk-2024").read_bytes())
    del document["other_party"]
    mapper = Mapper(parse_election(document))

    with pytest.raises(UnmappedError, match=r"constituency 9 \(X\): party 'WPB' is not in uk-2024"):
        mapper.party("WPB", PaSeat("9", "X"))


def test_an_unknown_seat_is_never_guessed(election: Election) -> None:
    mapper = Mapper(election)

    with pytest.raises(UnmappedError, match="no constituency of uk-2024 by that name"):
        mapper.seat(PaSeat("1", "Peterborough North"))
    with pytest.raises(UnmappedError, match="no name, and the number was not seen before"):
        mapper.seat(PaSeat("1", None))


def test_a_number_seen_beside_a_name_maps_a_later_file_that_gives_only_the_number(
    election: Election,
) -> None:
    mapper = Mapper(election)
    mapper.learn(PaSeat("377", "PETERBOROUGH"))

    assert mapper.seat(PaSeat("377", None)) == PETERBOROUGH


def test_a_map_file_maps_numbers_and_is_the_only_authority_on_them(
    election: Election, tmp_path: Path
) -> None:
    path = tmp_path / "seats.csv"
    path.write_text("number,id\n900,E14001425\n")
    mapper = Mapper(election, read_seat_map(path, election))

    assert mapper.seat(PaSeat("900", "Anything at all")) == PETERBOROUGH
    with pytest.raises(UnmappedError, match="number 901 is not in the --map file"):
        mapper.seat(PaSeat("901", "Peterborough"))


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("no,header\n1,E14001425\n", "header 'number,id'"),
        ("number,id\n1,E99999999\n", ":2: 'E99999999' is not a constituency"),
        ("number,id\n1,E14001425\n1,E14001426\n", ":3: number 1 is mapped twice"),
    ],
)
def test_a_bad_map_file_is_refused_naming_the_line(
    election: Election, tmp_path: Path, content: str, words: str
) -> None:
    path = tmp_path / "seats.csv"
    path.write_text(content)

    with pytest.raises(MapFileError, match=words):
        read_seat_map(path, election)


def peterborough_result(election: Election) -> bytes:
    return PaWriter(election).result(night_declarations()[PETERBOROUGH], 1, AT)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda x: x[: len(x) // 2], "malformed XML"),
        (lambda x: b"", "malformed XML"),
        (
            lambda x: x.replace(b"FirstPastThePostResult", b"EuroResult"),
            "unknown root <EuroResult>",
        ),
        (lambda x: BILLION_LAUGHS, "hostile XML refused: EntitiesForbidden"),
        (lambda x: EXTERNAL_ENTITY, "hostile XML refused: EntitiesForbidden"),
        (lambda x: re.sub(rb'votes="\d+"', b'votes="-5"', x, count=1), "votes='-5' is not a whole"),
        (lambda x: x.replace(b'revision="1"', b'revision="0"'), "revision must be 1 or more"),
        (lambda x: x.replace(b'abbreviation="Lab" ', b""), "<Party> has no 'abbreviation'"),
    ],
)
def test_a_bad_file_is_refused_with_a_reason(election: Election, change: Any, words: str) -> None:
    content = change(peterborough_result(election))

    with pytest.raises(PaFileError) as raised:
        parse_pa(content)

    assert words.replace("root <", "root element <") in str(raised.value)
    assert len(str(raised.value).splitlines()) == 1


def test_a_tie_needs_the_file_to_mark_who_was_elected(election: Election) -> None:
    tied = copy.deepcopy(night_declarations()[PETERBOROUGH])
    tied["candidates"][1]["votes"] = tied["candidates"][0]["votes"]
    tied["winner"] = {"name": tied["candidates"][1]["name"], "party": "CON"}
    content = PaWriter(election).result(tied, 1, AT)
    mapper = Mapper(election)

    event = mapper.to_event(parse_pa(content)).event

    assert event["winner"] == {"name": "Paul Bristow", "party": "CON"}
    with pytest.raises(
        UnmappedError, match=r"\(Peterborough\): a tie on \d+ votes with 0 of the tied elected"
    ):
        mapper.to_event(parse_pa(content.replace(b' elected="*"', b"")))


def test_a_state_of_parties_adds_the_small_parties_up_under_the_other_party(
    election: Election,
) -> None:
    numbers = seat_numbers(election)
    content = f"""<FirstPastThePostStateOfParties numberOfResults="2">
      <Election><Parties>
        <Party abbreviation="Lab" totalSeats="1" gains="1"/>
        <Party abbreviation="WPB" totalSeats="1" gains="1"/>
        <Party abbreviation="Yrks" losses="1"/>
        <Party abbreviation="C" losses="1"/>
      </Parties><ConstituenciesIncluded>
        <Constituency number="{numbers[PETERBOROUGH]}" name="Peterborough"/>
        <Constituency number="2" name="Leicester South"/>
      </ConstituenciesIncluded></Election></FirstPastThePostStateOfParties>""".encode()

    parsed = parse_pa(content)
    mapped = Mapper(election).to_event(parsed)

    assert isinstance(parsed, PaStateOfParties) and parsed.results == 2
    assert mapped.others == {"WPB", "Yrks"}
    assert mapped.event["parties"] == {
        "LAB": {"seats": 1, "gains": 1, "losses": 0},
        "OTH": {"seats": 1, "gains": 1, "losses": 1},
        "CON": {"seats": 0, "gains": 0, "losses": 1},
    }
    assert mapped.event["constituencies"] == [PETERBOROUGH, "E14001327"]
