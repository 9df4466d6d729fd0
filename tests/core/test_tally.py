"""The tally: what each event does to every channel's state, and what it sends."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from service.core.decoding import validate_event
from service.core.election import parse_election
from service.core.events import InvalidEvent
from service.core.seq import ZERO, Seq
from service.core.tally import (
    DECLARATIONS,
    LOG_CHANNELS,
    NATIONAL,
    RECENT_DECLARATIONS,
    Applied,
    Change,
    Tally,
    constituency_channel,
)
from tests.core.builders import (
    Desk,
    bundled_declarations,
    bundled_election,
    declaration,
    exit_poll,
    flash,
    retraction,
    status,
    tiny_definition,
    tiny_election,
    walk,
)

N1_KIW = declaration("N1", ("Ana", "KIW", 500), ("Ben", "TUI", 300), ("Cy", "MOA", 200))
N2_KIW_GAIN = declaration(
    "N2",
    ("Dora", "KIW", 600),
    ("Eli", "TUI", 480),
    ("Fay", "MOA", 120),
    declared_at="2031-05-02T01:30:00+12:00",
)
S1_MOA_GAIN = declaration("S1", ("Gus", "MOA", 400), ("Hal", "TUI", 100))


def snapshot(tally: Tally) -> dict[str, Any]:
    """Every channel's state and seq, copied."""
    return copy.deepcopy(
        {
            channel: (tally.state(channel), tally.channel_seq(channel))
            for channel in tally.channels()
        }
    )


def by_channel(applied: Applied) -> dict[str, Change]:
    changes = {change.channel: change for change in applied.changes}
    assert len(changes) == len(applied.changes), "one change per channel"
    return changes


def declared_event(applied: Applied) -> Mapping[str, Any]:
    event = by_channel(applied)[DECLARATIONS].event
    assert event is not None
    return event


def test_a_declaration_fills_in_the_constituency() -> None:
    desk = Desk(tiny_election())

    desk.send(N2_KIW_GAIN)

    assert desk.tally.state("constituency:N2") == {
        "id": "N2",
        "name": "Südfeld",
        "region": "Côte Nord",
        "nation": "Upland",
        "electorate": 1200,
        "previous": "TUI",
        "status": "declared",
        "winner": {"name": "Dora", "party": "KIW"},
        "result": "gain",
        "gain_from": "TUI",
        "majority": 120,
        "turnout": 100.0,
        "valid_votes": 1200,
        "candidates": [
            {"name": "Dora", "party": "KIW", "votes": 600, "share": 50.0},
            {"name": "Eli", "party": "TUI", "votes": 480, "share": 40.0},
            {"name": "Fay", "party": "MOA", "votes": 120, "share": 10.0},
        ],
        "declared_at": "2031-05-02T01:30:00+12:00",
        "corrections": 0,
    }


def test_a_declaration_moves_the_national_totals() -> None:
    desk = Desk(tiny_election())

    desk.send(N2_KIW_GAIN)

    national = desk.tally.state(NATIONAL)
    assert {k: v for k, v in national.items() if k != "parties"} == {
        "election": "freedonia-2031",
        "total_seats": 3,
        "majority": 2,
        "declared": 1,
        "seats_to_declare": 2,
        "leader": "KIW",
        "seats_to_majority": 1,
    }
    assert national["parties"] == {
        "KIW": {
            "name": "Kiwi Party",
            "seats": 1,
            "gains": 1,
            "losses": 0,
            "net": 1,
            "votes": 600,
            "share": 50.0,
            "seats_to_majority": 1,
        },
        "TUI": {
            "name": "Tui Alliance",
            "seats": 0,
            "gains": 0,
            "losses": 1,
            "net": -1,
            "votes": 480,
            "share": 40.0,
            "seats_to_majority": 2,
        },
        "MOA": {
            "name": "Moa Movement",
            "seats": 0,
            "gains": 0,
            "losses": 0,
            "net": 0,
            "votes": 120,
            "share": 10.0,
            "seats_to_majority": 2,
        },
    }


def test_a_declaration_moves_its_region_and_nation_and_no_other() -> None:
    desk = Desk(tiny_election())
    untouched = snapshot(desk.tally)["region:basse-vallee"]

    applied = desk.send(N2_KIW_GAIN)

    assert set(by_channel(applied)) == {
        "constituency:N2",
        NATIONAL,
        "region:cote-nord",
        "nation:upland",
        DECLARATIONS,
    }
    for channel, name, slug, seats in [
        ("region:cote-nord", "Côte Nord", "cote-nord", ["N1", "N2"]),
        ("nation:upland", "Upland", "upland", ["N1", "N2"]),
    ]:
        area = desk.tally.state(channel)
        assert {k: v for k, v in area.items() if k != "parties"} == {
            "name": name,
            "slug": slug,
            "total_seats": 2,
            "declared": 1,
            "seats_to_declare": 1,
            "constituencies": seats,
        }
        assert area["parties"]["KIW"] == {
            "seats": 1,
            "gains": 1,
            "losses": 0,
            "net": 1,
            "votes": 600,
            "share": 50.0,
        }
        assert area["parties"]["TUI"]["net"] == -1
    assert snapshot(desk.tally)["region:basse-vallee"] == untouched


def test_a_declaration_is_announced_on_the_declarations_channel() -> None:
    desk = Desk(tiny_election())

    applied = desk.send(N2_KIW_GAIN)

    change = by_channel(applied)[DECLARATIONS]
    assert change.patch is None
    assert change.event == {
        "seq": str(change.seq),
        "kind": "declaration",
        "headline": "Kiwi Party gain Südfeld from Tui Alliance, majority 120",
        "constituency": desk.tally.state("constituency:N2"),
    }
    assert desk.tally.state(DECLARATIONS) == {"recent": [change.event]}


@pytest.mark.parametrize(
    ("events", "kind", "headline"),
    [
        ([N1_KIW], "declaration", "Kiwi Party hold Nordhaven, majority 200"),
        ([S1_MOA_GAIN], "declaration", "Moa Movement gain Lowmere from Tui Alliance, majority 300"),
        (
            [declaration("S1", ("Gus", "MOA", 12_400), ("Hal", "TUI", 55), electorate=20_000)],
            "declaration",
            "Moa Movement gain Lowmere from Tui Alliance, majority 12,345",
        ),
        (
            [flash("S1", "Gus", "MOA")],
            "flash",
            "Flash: Moa Movement gain Lowmere from Tui Alliance, figures to follow",
        ),
        (
            [flash("N1", "Ana", "KIW")],
            "flash",
            "Flash: Kiwi Party hold Nordhaven, figures to follow",
        ),
        (
            [flash("S1", "Gus", "MOA"), S1_MOA_GAIN],
            "declaration",
            "Moa Movement gain Lowmere from Tui Alliance, majority 300",
        ),
        (
            [N1_KIW, declaration("N1", ("Ana", "KIW", 450), ("Ben", "TUI", 300))],
            "correction",
            "Correction: Kiwi Party hold Nordhaven, majority 150",
        ),
        (
            [N1_KIW, declaration("N1", ("Ben", "TUI", 520), ("Ana", "KIW", 480))],
            "correction",
            "Correction: Tui Alliance gain Nordhaven from Kiwi Party, majority 40",
        ),
        (
            [N1_KIW, retraction("N1", reason="figures were for Südfeld")],
            "retraction",
            "Result withdrawn in Nordhaven: figures were for Südfeld",
        ),
        (
            [flash("N1", "Ana", "KIW"), retraction("N1")],
            "retraction",
            "Result withdrawn in Nordhaven",
        ),
    ],
    ids=[
        "hold",
        "gain",
        "thousands",
        "flash gain",
        "flash hold",
        "declaration after flash",
        "correction",
        "correction that changes the winner",
        "retraction with reason",
        "retraction of a flash",
    ],
)
def test_each_announcement_has_its_kind_and_a_headline_for_a_ticker(
    events: list[dict[str, Any]], kind: str, headline: str
) -> None:
    desk = Desk(tiny_election())

    *_, last = desk.send_all(events)

    event = declared_event(last)
    assert event["kind"] == kind
    assert event["headline"] == headline


def test_peterborough_2024_is_a_labour_gain_by_118() -> None:
    election = bundled_election("uk-2024")
    desk = Desk(election)
    peterborough = next(d for d in bundled_declarations() if d["constituency"] == "E14001425")

    applied = desk.send(peterborough)

    event = declared_event(applied)
    assert event["headline"] == "Labour gain Peterborough from Conservative, majority 118"
    assert event["constituency"]["winner"] == {"name": "Andrew Pakes", "party": "LAB"}


def test_a_declaration_without_a_time_is_stamped_with_its_entry_time() -> None:
    desk = Desk(tiny_election(), first_ms=1_720_148_400_000 - 1)

    desk.send(N1_KIW)
    desk.send(declaration("N1", ("Ana", "KIW", 450), ("Ben", "TUI", 300)))

    # The correction keeps the time of the declaration it corrects.
    assert desk.tally.state("constituency:N1")["declared_at"] == "2024-07-05T03:00:00+00:00"


@pytest.mark.parametrize(
    ("votes", "shares", "turnout"),
    [
        ((31, 1), [96.88, 3.13], 3.2),  # 3.125% rounds up, as 96.875% does
        ((2, 1), [66.67, 33.33], 0.3),
        ((1, 0), [100.0, 0.0], 0.1),
        ((0, 0), [0.0, 0.0], 0.0),
    ],
)
def test_shares_and_turnout_are_percentages_to_two_decimals_rounded_halves_up(
    votes: tuple[int, int], shares: list[float], turnout: float
) -> None:
    desk = Desk(tiny_election())

    ana = {"name": "Ana", "party": "KIW"}  # named, for the tie of 0 and 0
    desk.send(declaration("N1", ("Ana", "KIW", votes[0]), ("Ben", "TUI", votes[1]), winner=ana))

    seat = desk.tally.state("constituency:N1")
    assert [c["share"] for c in seat["candidates"]] == shares
    assert seat["turnout"] == turnout  # of an electorate of 1,000
    parties = desk.tally.state(NATIONAL)["parties"]
    assert [parties["KIW"]["share"], parties["TUI"]["share"]] == shares


def test_an_electorate_in_the_declaration_replaces_the_definitions() -> None:
    desk = Desk(tiny_election())

    desk.send(N1_KIW | {"electorate": 2000})

    seat = desk.tally.state("constituency:N1")
    assert seat["electorate"] == 2000
    assert seat["turnout"] == 50.0


def test_a_correction_moves_the_seat_and_both_parties_totals_and_is_counted() -> None:
    desk = Desk(tiny_election())
    desk.send_all([N1_KIW, S1_MOA_GAIN])

    applied = desk.send(declaration("N1", ("Ben", "TUI", 520), ("Ana", "KIW", 480)))

    seat = desk.tally.state("constituency:N1")
    assert seat["winner"] == {"name": "Ben", "party": "TUI"}
    assert (seat["result"], seat["gain_from"], seat["corrections"]) == ("gain", "KIW", 1)
    assert "Cy" not in {c["name"] for c in seat["candidates"]}
    national = desk.tally.state(NATIONAL)["parties"]
    assert {p: (national[p]["seats"], national[p]["net"]) for p in national} == {
        "KIW": (0, -1),
        "TUI": (1, 0),
        "MOA": (1, 1),
    }
    assert {p: national[p]["votes"] for p in national} == {"KIW": 480, "TUI": 620, "MOA": 400}
    assert by_channel(applied)[NATIONAL].patch == {
        "leader": "TUI",
        "parties": {
            "KIW": {
                "seats": 0,
                "losses": 1,
                "net": -1,
                "votes": 480,
                "share": 32.0,
                "seats_to_majority": 2,
            },
            "TUI": {
                "seats": 1,
                "gains": 1,
                "net": 0,
                "votes": 620,
                "share": 41.33,
                "seats_to_majority": 1,
            },
            "MOA": {"votes": 400, "share": 26.67},  # Cy's 200 votes are gone
        },
    }

    desk.send(declaration("N1", ("Ben", "TUI", 519), ("Ana", "KIW", 480)))

    assert desk.tally.state("constituency:N1")["corrections"] == 2


@pytest.mark.parametrize(
    ("first", "repeat"),
    [
        pytest.param(N1_KIW, N1_KIW, id="identical"),
        pytest.param(N1_KIW | {"revision": 1}, N1_KIW | {"revision": 2}, id="a new revision"),
        pytest.param(N1_KIW | {"revision": 1}, N1_KIW, id="no revision"),
        pytest.param(
            N1_KIW,
            declaration("N1", ("Cy", "MOA", 200), ("Ben", "TUI", 300), ("Ana", "KIW", 500)),
            id="candidates in another order",
        ),
    ],
)
def test_a_repeated_declaration_changes_and_sends_nothing(
    first: dict[str, Any], repeat: dict[str, Any]
) -> None:
    desk = Desk(tiny_election())
    desk.send(first)
    before = snapshot(desk.tally)

    applied = desk.send(repeat)

    assert applied == Applied()
    assert snapshot(desk.tally) == before


def test_a_repeat_without_the_time_or_electorate_given_the_first_time_changes_nothing() -> None:
    desk = Desk(tiny_election())
    desk.send(N2_KIW_GAIN | {"electorate": 1200})
    before = snapshot(desk.tally)

    repeat = {k: v for k, v in N2_KIW_GAIN.items() if k not in ("declared_at", "electorate")}
    applied = desk.send(repeat)

    assert applied == Applied()
    assert snapshot(desk.tally) == before


STALE_EVENTS = [
    declaration("N1", ("Ben", "TUI", 600), ("Ana", "KIW", 400)),
    flash("N1", "Ben", "TUI"),
    status("N1", "recount"),
    retraction("N1"),
]


@pytest.mark.parametrize("stale", STALE_EVENTS, ids=lambda e: e["type"])
@pytest.mark.parametrize("revision", [0, 2, 3])
def test_an_event_whose_revision_is_not_above_the_seats_is_stale_and_changes_nothing(
    stale: dict[str, Any], revision: int
) -> None:
    desk = Desk(tiny_election())
    desk.send(N1_KIW | {"revision": 3})
    before = snapshot(desk.tally)

    applied = desk.send(stale | {"revision": revision})

    assert applied == Applied(stale=True)
    assert snapshot(desk.tally) == before


def test_a_higher_revision_applies_and_an_unrevised_event_keeps_the_seats_revision() -> None:
    desk = Desk(tiny_election())
    desk.send(N1_KIW | {"revision": 3})

    assert desk.send(retraction("N1", revision=4)).changes
    assert desk.send(N1_KIW).changes
    assert desk.send(retraction("N1", revision=4)) == Applied(stale=True)
    assert desk.send(retraction("N1", revision=5)).changes


def test_revisions_are_per_seat() -> None:
    desk = Desk(tiny_election())
    desk.send(N1_KIW | {"revision": 9})

    assert desk.send(S1_MOA_GAIN | {"revision": 1}).changes


def test_a_flash_counts_the_seat_before_the_figures() -> None:
    desk = Desk(tiny_election())

    applied = desk.send(flash("S1", "Gus", "MOA"))

    assert desk.tally.state("constituency:S1") == {
        "id": "S1",
        "name": "Lowmere",
        "region": "Basse Vallée",
        "nation": "Lowland",
        "electorate": 800,
        "previous": "TUI",
        "status": "flash",
        "winner": {"name": "Gus", "party": "MOA"},
        "result": "gain",
        "gain_from": "TUI",
        "corrections": 0,
    }
    national = desk.tally.state(NATIONAL)
    assert (national["declared"], national["leader"]) == (1, "MOA")
    assert {k: national["parties"]["MOA"][k] for k in ("seats", "gains", "votes", "share")} == {
        "seats": 1,
        "gains": 1,
        "votes": 0,
        "share": 0.0,
    }
    assert national["parties"]["TUI"]["losses"] == 1
    assert desk.tally.state("nation:lowland")["declared"] == 1
    assert declared_event(applied)["kind"] == "flash"


def test_a_declaration_after_a_flash_adds_the_figures() -> None:
    desk = Desk(tiny_election())
    desk.send(flash("S1", "Gus", "MOA"))

    applied = desk.send(S1_MOA_GAIN)

    seat = desk.tally.state("constituency:S1")
    assert (seat["status"], seat["majority"], seat["corrections"]) == ("declared", 300, 0)
    assert desk.tally.state(NATIONAL)["declared"] == 1
    assert desk.tally.state(NATIONAL)["parties"]["MOA"]["votes"] == 400
    assert by_channel(applied)[NATIONAL].patch == {
        "parties": {
            "MOA": {"votes": 400, "share": 80.0},
            "TUI": {"votes": 100, "share": 20.0},
        }
    }


@pytest.mark.parametrize("revision", [None, 2, 99])
@pytest.mark.parametrize("winner", [("Ana", "KIW"), ("Ben", "TUI")])
def test_a_flash_never_overwrites_a_declaration(
    revision: int | None, winner: tuple[str, str]
) -> None:
    desk = Desk(tiny_election())
    desk.send(N1_KIW | {"revision": 1})
    before = snapshot(desk.tally)

    extra: dict[str, Any] = {} if revision is None else {"revision": revision}
    applied = desk.send(flash("N1", *winner, **extra))

    assert applied == Applied(stale=True)
    assert snapshot(desk.tally) == before


def test_a_retraction_returns_the_seat_to_awaiting_and_the_totals_revert() -> None:
    desk = Desk(tiny_election())
    desk.send(S1_MOA_GAIN)
    without = snapshot(desk.tally)
    desk.send(N1_KIW)
    desk.send(declaration("N1", ("Ben", "TUI", 520), ("Ana", "KIW", 480)))

    applied = desk.send(retraction("N1", reason="wrong seat"))

    after = snapshot(desk.tally)
    for channel in (NATIONAL, "constituency:N1", "region:cote-nord", "nation:upland"):
        assert after[channel][0] == without[channel][0], channel
    event = declared_event(applied)
    assert event["kind"] == "retraction"
    assert event["reason"] == "wrong seat"
    assert event["constituency"] == desk.tally.state("constituency:N1")
    assert desk.tally.state("constituency:N1")["status"] == "awaiting"


def test_a_declaration_after_a_retraction_is_a_new_declaration() -> None:
    desk = Desk(tiny_election())
    desk.send_all([N1_KIW, retraction("N1")])

    applied = desk.send(N1_KIW)

    assert declared_event(applied)["kind"] == "declaration"
    assert desk.tally.state(NATIONAL)["declared"] == 1


def test_a_retraction_of_a_status_returns_the_seat_to_awaiting_and_announces_nothing() -> None:
    desk = Desk(tiny_election())
    desk.send(status("N1", "recount"))

    applied = desk.send(retraction("N1", reason="no recount after all"))

    assert [change.channel for change in applied.changes] == ["constituency:N1"]
    assert desk.tally.state("constituency:N1")["status"] == "awaiting"


@pytest.mark.parametrize("document", [retraction("N1"), status("N1", "awaiting")])
def test_withdrawing_nothing_changes_nothing(document: dict[str, Any]) -> None:
    desk = Desk(tiny_election())
    before = snapshot(desk.tally)

    assert desk.send(document) == Applied()
    assert snapshot(desk.tally) == before


@pytest.mark.parametrize("value", ["counting", "recount", "awaiting"])
@pytest.mark.parametrize("result", [N1_KIW, flash("N1", "Ana", "KIW")], ids=["declared", "flash"])
def test_a_status_for_a_seat_with_a_result_is_rejected_and_changes_nothing(
    result: dict[str, Any], value: str
) -> None:
    desk = Desk(tiny_election())
    desk.send(result)
    before = snapshot(desk.tally)
    seq = desk.next_seq()
    event = validate_event(status("N1", value), desk.election, str(seq))

    with pytest.raises(InvalidEvent) as raised:
        desk.tally.apply(seq, event)

    reason = str(raised.value)
    assert reason.startswith(f"entry {seq}: constituency N1 has a ")
    assert "retract it" in reason
    assert len(reason.splitlines()) == 1
    assert snapshot(desk.tally) == before
    assert desk.tally.seq == seq  # the entry has been read all the same


def test_a_status_change_moves_only_the_constituency() -> None:
    desk = Desk(tiny_election())

    applied = desk.send(status("N1", "recount", note="Bundle check"))

    change = by_channel(applied)["constituency:N1"]
    assert list(by_channel(applied)) == ["constituency:N1"]
    assert change.patch == {"status": "recount"}
    assert desk.send(status("N1", "recount")) == Applied()


def test_the_exit_poll_appears_in_the_national_state() -> None:
    desk = Desk(tiny_election(), first_ms=1_720_130_400_000 - 1)

    applied = desk.send(exit_poll({"KIW": 2, "MOA": 1}))

    assert desk.tally.state(NATIONAL)["exit_poll"] == {
        "seats": {"KIW": 2, "MOA": 1},
        "published_at": "2024-07-04T22:00:00+00:00",
    }
    assert [change.channel for change in applied.changes] == [NATIONAL]


def test_a_new_exit_poll_that_drops_a_party_removes_it() -> None:
    desk = Desk(tiny_election())
    published = "2031-05-01T22:00:00+12:00"
    desk.send(exit_poll({"KIW": 2, "MOA": 1}, published_at=published))

    applied = desk.send(exit_poll({"KIW": 1, "TUI": 2}, published_at=published))

    assert desk.tally.state(NATIONAL)["exit_poll"]["seats"] == {"KIW": 1, "TUI": 2}
    assert by_channel(applied)[NATIONAL].patch == {
        "exit_poll": {"seats": {"KIW": 1, "TUI": 2, "MOA": None}}
    }
    assert desk.send(exit_poll({"KIW": 1, "TUI": 2}, published_at=published)) == Applied()


ASSORTED = [
    exit_poll({"KIW": 2, "TUI": 1}),
    status("N1", "counting", note="Boxes arriving"),
    flash("S1", "Gus", "MOA"),
    N1_KIW,
    status("N2", "recount"),
    declaration("N1", ("Ben", "TUI", 520), ("Ana", "KIW", 480)),
    retraction("S1"),
    N2_KIW_GAIN,
    flash("S1", "Hal", "TUI"),
    retraction("N1", reason="error"),
]


def test_no_state_ever_holds_null() -> None:
    desk = Desk(tiny_election())
    seen: list[Any] = []
    for document in ASSORTED:
        applied = desk.send(document)
        seen += [change.event for change in applied.changes if change.event is not None]
        seen += [desk.tally.state(channel) for channel in desk.tally.channels()]

    nulls = [path for value in seen for path, item in walk(value) if item is None]
    assert nulls == []


def test_each_change_names_the_seq_of_the_channels_change_before_it() -> None:
    desk = Desk(tiny_election())
    last: dict[str, Seq] = {}
    for document in ASSORTED:
        for change in desk.send(document).changes:
            assert change.prev == last.get(change.channel, ZERO)
            assert change.seq == desk.tally.seq
            last[change.channel] = change.seq

    for channel in desk.tally.channels():
        assert desk.tally.channel_seq(channel) == last.get(channel, ZERO)
    assert desk.tally.channel_seq("region:basse-vallee") == last["nation:lowland"]


@pytest.mark.parametrize(
    ("events", "leader"),
    [
        ([N1_KIW], "KIW"),
        (
            [
                declaration("N1", ("Ana", "KIW", 500), ("Ben", "TUI", 300)),
                declaration("N2", ("Eli", "TUI", 610), ("Dora", "KIW", 100)),
            ],
            "TUI",  # one seat each; TUI has more votes
        ),
        (
            [
                declaration("N1", ("Ana", "KIW", 500), ("Ben", "TUI", 300)),
                declaration("N2", ("Eli", "TUI", 500), ("Dora", "KIW", 300)),
            ],
            "KIW",  # one seat and 800 votes each; KIW comes first by code
        ),
        ([flash("N2", "Eli", "TUI"), flash("S1", "Gus", "MOA")], "MOA"),
        ([S1_MOA_GAIN, N1_KIW, N2_KIW_GAIN], "KIW"),
    ],
    ids=["one seat", "votes break a tie", "code breaks a tie", "flashes only", "most seats"],
)
def test_the_leader_has_most_seats_then_most_votes_then_the_first_code(
    events: list[dict[str, Any]], leader: str
) -> None:
    desk = Desk(tiny_election())

    desk.send_all(events)

    assert desk.tally.state(NATIONAL)["leader"] == leader


def test_the_majority_party_appears_at_the_majority_and_goes_when_it_is_lost() -> None:
    desk = Desk(tiny_election())

    desk.send(N1_KIW)
    national = desk.tally.state(NATIONAL)
    assert "majority_party" not in national
    assert national["seats_to_majority"] == 1

    desk.send(N2_KIW_GAIN)
    assert desk.tally.state(NATIONAL)["majority_party"] == "KIW"
    assert desk.tally.state(NATIONAL)["seats_to_majority"] == 0

    applied = desk.send(retraction("N2"))
    assert "majority_party" not in desk.tally.state(NATIONAL)
    assert by_channel(applied)[NATIONAL].patch == {
        "declared": 1,
        "seats_to_declare": 2,
        "seats_to_majority": 1,
        "majority_party": None,
        "parties": {
            "KIW": {
                "seats": 1,
                "gains": 0,
                "net": 0,
                "votes": 500,
                "seats_to_majority": 1,
                "overall_majority": None,
            },  # 1,100 of 2,200 votes and 500 of 1,000: the same 50% share
            "TUI": {"losses": 0, "net": 0, "votes": 300, "share": 30.0},
            "MOA": {"votes": 200, "share": 20.0},
        },
    }


def test_the_leader_goes_when_the_last_result_is_withdrawn() -> None:
    desk = Desk(tiny_election())
    desk.send(N1_KIW)

    applied = desk.send(retraction("N1"))

    national = desk.tally.state(NATIONAL)
    assert "leader" not in national
    assert "seats_to_majority" not in national
    patch = by_channel(applied)[NATIONAL].patch
    assert patch is not None
    assert (patch["leader"], patch["seats_to_majority"]) == (None, None)


def test_the_declarations_snapshot_keeps_the_most_recent_newest_last() -> None:
    desk = Desk(tiny_election())
    winners = [("Ana", "KIW"), ("Ben", "TUI")]
    for number in range(RECENT_DECLARATIONS + 10):
        desk.send(flash("N1", *winners[number % 2]))

    recent = desk.tally.state(DECLARATIONS)["recent"]
    assert len(recent) == RECENT_DECLARATIONS >= 20
    assert recent[-1]["seq"] == str(desk.tally.seq)
    assert [Seq.parse(event["seq"]) for event in recent] == sorted(
        Seq.parse(event["seq"]) for event in recent
    )


def test_entries_must_come_in_stream_order() -> None:
    desk = Desk(tiny_election())
    desk.send(N1_KIW)
    seq = desk.tally.seq
    event = validate_event(S1_MOA_GAIN, desk.election)

    for earlier in (seq, Seq(seq.ms - 1, 5)):
        with pytest.raises(ValueError, match="is not after the last applied entry"):
            desk.tally.apply(earlier, event)

    assert desk.tally.apply(Seq(seq.ms, seq.n + 1), event).changes


def test_channels_are_named_and_unknown_ones_refused() -> None:
    tally = Tally(tiny_election())

    assert tally.has_channel(constituency_channel("N1"))
    assert tally.has_channel(DECLARATIONS)
    assert not tally.has_channel("constituency:ZZ9")
    assert tally.channel_seq(NATIONAL) == ZERO
    with pytest.raises(KeyError):
        tally.state("region:atlantis")
    with pytest.raises(KeyError):
        tally.channel_seq("nation:atlantis")


def test_the_incremental_states_equal_a_recomputation_after_assorted_events() -> None:
    desk = Desk(tiny_election())

    desk.send_all(ASSORTED)

    states = {ch: desk.tally.state(ch) for ch in desk.tally.channels() if ch not in LOG_CHANNELS}
    assert desk.tally.recompute() == states


def working_election(non_voting: int | None = 0, abstaining: list[str] | None = None) -> Desk:
    """The tiny election with a working majority: five seats, TUI taking none it wins."""
    definition = tiny_definition()
    template = definition["constituencies"][0]
    definition["constituencies"] += [{**template, "id": f"X{n}"} for n in range(2)]
    if non_voting is not None:
        definition["non_voting_seats"] = non_voting
    if abstaining is not None:
        definition["abstaining_parties"] = abstaining
    return Desk(parse_election(definition))


def test_the_working_majority_falls_as_an_abstaining_party_wins_and_rises_on_withdrawal() -> None:
    desk = working_election(non_voting=1, abstaining=["TUI"])
    national = desk.tally.state(NATIONAL)
    assert national["working_majority"] == 3  # (5 - 1) // 2 + 1
    assert national["parties"]["KIW"]["seats_to_working_majority"] == 3

    applied = desk.send(declaration("N2", ("Eli", "TUI", 480), ("Dora", "KIW", 300)))

    assert desk.tally.state(NATIONAL)["working_majority"] == 2  # (5 - 1 - 1) // 2 + 1
    patch = by_channel(applied)[NATIONAL].patch
    assert patch is not None
    assert patch["working_majority"] == 2
    assert {
        code: entry["seats_to_working_majority"] for code, entry in patch["parties"].items()
    } == {
        "KIW": 2,
        "TUI": 1,
        "MOA": 2,
    }

    desk.send(retraction("N2"))
    assert desk.tally.state(NATIONAL)["working_majority"] == 3


def test_a_party_that_does_not_abstain_leaves_the_working_majority_where_it_was() -> None:
    desk = working_election(non_voting=1, abstaining=["TUI"])

    applied = desk.send(N1_KIW)

    patch = by_channel(applied)[NATIONAL].patch
    assert patch is not None
    assert "working_majority" not in patch
    assert patch["parties"]["KIW"]["seats_to_working_majority"] == 2
    assert "seats_to_working_majority" not in patch["parties"].get("TUI", {})


@pytest.mark.parametrize(
    ("non_voting", "abstaining", "working"),
    [(0, None, 3), (None, [], 3), (2, None, 2), (4, ["TUI"], 1)],
)
def test_either_field_alone_gives_a_working_majority(
    non_voting: int | None, abstaining: list[str] | None, working: int
) -> None:
    national = working_election(non_voting, abstaining).tally.state(NATIONAL)

    assert national["working_majority"] == working


def test_without_either_field_there_is_no_working_majority() -> None:
    national = Desk(tiny_election()).tally.state(NATIONAL)

    assert "working_majority" not in national
    assert not any("seats_to_working_majority" in e for e in national["parties"].values())


def test_the_overall_majority_moves_to_a_new_majority_party() -> None:
    desk = working_election()
    kiwi_seats = [("N1", "Ana"), ("N2", "Bo"), ("S1", "Cy")]
    for seat, name in kiwi_seats:
        desk.send(declaration(seat, (name, "KIW", 500), ("Ben", "TUI", 300)))
    assert desk.tally.state(NATIONAL)["parties"]["KIW"]["overall_majority"] == 1  # 3 against 2

    for seat, name in kiwi_seats:
        applied = desk.send(declaration(seat, (name, "TUI", 500), ("Ben", "KIW", 300)))
    for seat in ("X0", "X1"):
        applied = desk.send(declaration(seat, ("Di", "TUI", 500), ("Ed", "KIW", 300)))

    national = desk.tally.state(NATIONAL)
    assert national["majority_party"] == "TUI"
    assert national["parties"]["TUI"]["overall_majority"] == 5
    assert "overall_majority" not in national["parties"]["KIW"]
    patch = by_channel(applied)[NATIONAL].patch
    assert patch is not None
    assert patch["parties"]["TUI"]["overall_majority"] == 5
