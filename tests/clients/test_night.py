"""The night loader and replay planner (clients/night.py): pure, no Redis."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients.night import (
    BUNDLED_NIGHTS,
    CORRECTION_DELAY,
    CORRECTION_MAX_CHANGE,
    FLASH_LEAD,
    RECOUNT_LEAD,
    NightError,
    Planned,
    declared_seats,
    first_seats,
    limit_plan,
    load_night,
    notable_recount_seats,
    plan_night,
)
from service.data import election_path

PETERBOROUGH = "E14001425"


@pytest.fixture(scope="module")
def night_2024() -> list[dict[str, Any]]:
    return load_night("uk-2024")


@pytest.fixture(scope="module")
def seat_ids_by_name() -> dict[str, str]:
    definition = json.loads(election_path("uk-2024").read_text(encoding="utf-8"))
    return {seat["name"]: seat["id"] for seat in definition["constituencies"]}


# --------------------------------------------------------------------------- helpers


def top(declaration: dict[str, Any]) -> tuple[str, str]:
    if "winner" in declaration:
        return declaration["winner"]["name"], declaration["winner"]["party"]
    best = max(declaration["candidates"], key=lambda c: c["votes"])
    return best["name"], best["party"]


def by_seat(plan: list[Planned]) -> dict[str, list[tuple[int, Planned]]]:
    seats: dict[str, list[tuple[int, Planned]]] = defaultdict(list)
    for position, item in enumerate(plan):
        if "constituency" in item.event:
            seats[item.event["constituency"]].append((position, item))
    return seats


def check_invariants(plan: list[Planned]) -> None:
    """What every plan must satisfy, whatever the options."""
    times = [item.at for item in plan]
    assert times == sorted(times)

    polls = [item.at for item in plan if item.event["type"] == "exit_poll"]
    for seat, items in by_seat(plan).items():
        revisions = [item.event["revision"] for _, item in items]
        assert revisions == list(range(1, len(items) + 1)), seat
        kinds = [item.event["type"] for _, item in items]
        declared = False
        for _, item in items:
            event = item.event
            if event["type"] == "declaration":
                declared = True
            elif event["type"] in ("flash", "status"):
                assert not declared, f"{seat}: {event['type']} after the declaration"
        if "flash" in kinds:
            assert kinds.index("flash") < kinds.index("declaration")
            flash = items[kinds.index("flash")][1]
            declaration = items[kinds.index("declaration")][1]
            assert (flash.event["winner"]["name"], flash.event["winner"]["party"]) == top(
                declaration.event
            )
            if polls and polls[0] <= declaration.at:
                assert flash.at >= polls[0]
        if "status" in kinds:
            assert kinds.index("status") < kinds.index("declaration")
            if "flash" in kinds:
                assert kinds.index("status") < kinds.index("flash")


def declaration_at(plan: list[Planned], seat: str) -> datetime:
    return next(
        item.at
        for item in plan
        if item.event["type"] == "declaration" and item.event["constituency"] == seat
    )


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("name", BUNDLED_NIGHTS)
def test_bundled_nights_load(name: str) -> None:
    events = load_night(name)
    assert events[0]["type"] == "exit_poll"
    declarations = [e for e in events if e["type"] == "declaration"]
    assert len({e["constituency"] for e in declarations}) == len(declarations) > 0


def test_a_path_loads_too(tmp_path: Path) -> None:
    path = tmp_path / "tiny.jsonl"
    path.write_text(
        '{"type": "exit_poll", "seats": {"A": 1}}\n\n'
        '{"type": "declaration", "constituency": "X", "candidates": []}\n',
        encoding="utf-8",
    )
    assert [e["type"] for e in load_night(str(path))] == ["exit_poll", "declaration"]


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        pytest.param('{"type": "exit_poll"}\n{"type": "decl', 2, "not valid JSON", id="truncated"),
        pytest.param("{'type': 'flash'}\n", 1, "not valid JSON", id="single-quotes"),
        pytest.param('{"type": "flash"}\n\n\nnot json\n', 4, "not valid JSON", id="after-blanks"),
        pytest.param('[{"type": "flash"}]\n', 1, "expected a JSON object", id="array"),
        pytest.param('"flash"\n', 1, "expected a JSON object", id="string"),
        pytest.param('{"type": "flash"}\n{"constituency": "X"}\n', 2, 'no "type"', id="no-type"),
        pytest.param('{"type": 7}\n', 1, '"type" must be', id="numeric-type"),
        pytest.param('{"type": ""}\n', 1, '"type" must be', id="empty-type"),
        pytest.param(
            '{"type": "declaration", "declared_at": "after midnight"}\n',
            1,
            "not an ISO 8601 time",
            id="bad-time",
        ),
        pytest.param(
            '{"type": "exit_poll", "published_at": 22}\n', 1, "ISO 8601 string", id="int-time"
        ),
        pytest.param(b'{"type": "flash", "note": "\xff"}\n', 1, "not valid JSON", id="not-utf8"),
    ],
)
def test_load_errors_name_file_and_line(
    tmp_path: Path, content: str | bytes, line: int, message: str
) -> None:
    path = tmp_path / "bad.night.jsonl"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(NightError) as caught:
        load_night(str(path))
    text = str(caught.value)
    assert text.startswith(f"{path}:{line}: "), text
    assert message in text


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("uk-1066", "bundled"),
        ("/no/such/dir/night.jsonl", "no such file"),
        ("missing.jsonl", "no such file"),
    ],
)
def test_unknown_sources(source: str, message: str) -> None:
    with pytest.raises(NightError, match=message):
        load_night(source)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(NightError, match="no events"):
        load_night(str(path))


# --------------------------------------------------------------------------- the real night

OPTIONS = [
    pytest.param({}, id="plain"),
    pytest.param({"flashes": True}, id="flashes"),
    pytest.param({"recounts": True}, id="recounts"),
    pytest.param({"corrections": 25, "seed": 3}, id="corrections"),
    pytest.param({"flashes": True, "recounts": True, "corrections": 40, "seed": 9}, id="all"),
]


@pytest.mark.parametrize("options", OPTIONS)
def test_plan_invariants_on_2024(night_2024: list[dict[str, Any]], options: dict[str, Any]) -> None:
    plan = plan_night(night_2024, **options)
    check_invariants(plan)
    assert plan[0].event["type"] == "exit_poll"
    counts = Counter(item.event["type"] for item in plan)
    declared = len(declared_seats(plan))
    assert declared == 650
    assert counts["declaration"] == declared + options.get("corrections", 0)
    assert counts["flash"] == (declared if options.get("flashes") else 0)
    assert (counts["status"] > 0) == bool(options.get("recounts"))


def test_planning_does_not_touch_the_input(night_2024: list[dict[str, Any]]) -> None:
    before = json.dumps(night_2024)
    plan_night(night_2024, flashes=True, recounts=True, corrections=50, seed=1)
    assert json.dumps(night_2024) == before


def test_flashes_come_five_minutes_early(night_2024: list[dict[str, Any]]) -> None:
    plan = plan_night(night_2024, flashes=True)
    declared = {
        item.event["constituency"]: item for item in plan if item.event["type"] == "declaration"
    }
    poll = plan[0].at
    for item in plan:
        if item.event["type"] != "flash":
            continue
        declaration = declared[item.event["constituency"]]
        assert item.at == max(declaration.at - FLASH_LEAD, poll)
        assert set(item.event) == {"type", "constituency", "winner", "revision"}
        best = declaration.event["candidates"][0]
        assert item.event["winner"] == {"name": best["name"], "party": best["party"]}


def test_recounts_include_the_known_close_seats(
    night_2024: list[dict[str, Any]], seat_ids_by_name: dict[str, str]
) -> None:
    plan = plan_night(night_2024, recounts=True)
    recounts = {item.event["constituency"]: item for item in plan if item.event["type"] == "status"}
    named = {
        seat_ids_by_name["Peterborough"],
        seat_ids_by_name["North West Cambridgeshire"],
        seat_ids_by_name["Inverness, Skye and West Ross-shire"],
    }
    assert PETERBOROUGH in named
    assert named <= notable_recount_seats()
    assert named <= set(recounts)
    for seat, item in recounts.items():
        assert item.event["status"] == "recount"
        assert item.event["note"] == "Recount under way"
        assert item.at == declaration_at(plan, seat) - RECOUNT_LEAD
    # Every very close result is among them, and nothing comfortable besides the named seats.
    for event in night_2024:
        if event["type"] != "declaration":
            continue
        votes = sorted((c["votes"] for c in event["candidates"]), reverse=True)
        close = votes[0] - votes[1] < 0.005 * sum(votes)
        assert (event["constituency"] in recounts) == (close or event["constituency"] in named)


def test_recount_seats_can_be_given(night_2024: list[dict[str, Any]]) -> None:
    seat = night_2024[1]["constituency"]
    plan = plan_night(night_2024, recounts=True, recount_seats=[seat])
    recounted = {item.event["constituency"] for item in plan if item.event["type"] == "status"}
    assert seat in recounted
    assert PETERBOROUGH in recounted  # close enough on its own: a majority of 118


@pytest.mark.parametrize("seed", [0, 1, 2024])
def test_corrections_keep_the_winner(night_2024: list[dict[str, Any]], seed: int) -> None:
    plan = plan_night(night_2024, corrections=60, seed=seed)
    seen: dict[str, Planned] = {}
    corrected = 0
    for item in plan:
        event = item.event
        if event["type"] != "declaration":
            continue
        seat = event["constituency"]
        if seat not in seen:
            seen[seat] = item
            continue
        corrected += 1
        original = seen[seat]
        assert item.at == original.at + CORRECTION_DELAY
        assert event["revision"] > original.event["revision"]
        assert top(event) == top(original.event)
        votes = sorted((c["votes"] for c in event["candidates"]), reverse=True)
        assert votes[0] > votes[1] >= 0  # no tie for the win
        before = {(c["name"], c["party"]): c["votes"] for c in original.event["candidates"]}
        after = {(c["name"], c["party"]): c["votes"] for c in event["candidates"]}
        assert before.keys() == after.keys()
        changed = [key for key in before if before[key] != after[key]]
        assert len(changed) == 1
        assert 0 < abs(before[changed[0]] - after[changed[0]]) <= CORRECTION_MAX_CHANGE
        assert event["candidates"] == sorted(
            event["candidates"], key=lambda c: c["votes"], reverse=True
        )
        assert {k: v for k, v in event.items() if k not in ("candidates", "revision")} == {
            k: v for k, v in original.event.items() if k not in ("candidates", "revision")
        }
    assert corrected == 60


def test_corrections_are_reproducible(night_2024: list[dict[str, Any]]) -> None:
    def corrections(seed: int) -> list[dict[str, Any]]:
        plan = plan_night(night_2024, corrections=10, seed=seed)
        return [
            i.event for i in plan if i.event["type"] == "declaration" and i.event["revision"] > 1
        ]

    assert corrections(5) == corrections(5)
    assert corrections(5) != corrections(6)


def test_more_corrections_than_seats(night_2024: list[dict[str, Any]]) -> None:
    plan = plan_night(night_2024[:11], corrections=1000)
    assert sum(1 for i in plan if i.event["type"] == "declaration") == 20
    with pytest.raises(ValueError, match="corrections"):
        plan_night(night_2024, corrections=-1)


# --------------------------------------------------------------------------- small nights

T0 = "2024-07-04T22:00:00+01:00"


def decl(seat: str, at: str | None, *votes: int, **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "declaration",
        "constituency": seat,
        "candidates": [
            {"name": f"Candidate {n}", "party": f"P{n}", "votes": v} for n, v in enumerate(votes)
        ],
    }
    if at is not None:
        event["declared_at"] = at
    event.update(extra)
    return event


POLL = {"type": "exit_poll", "seats": {"P0": 2}, "published_at": T0}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("night", "expected"),
    [
        pytest.param(
            [POLL, decl("A", "2024-07-04T23:00:00+01:00", 10, 5), decl("B", None, 7, 3)],
            [("exit_poll", None, T0), ("declaration", "A", "23:00"), ("declaration", "B", "23:00")],
            id="untimed-follows-previous",
        ),
        pytest.param(
            [
                POLL,
                decl("A", "2024-07-05T01:00:00+01:00", 10, 5),
                decl("B", "2024-07-05T00:30:00+01:00", 7, 3),
            ],
            [("exit_poll", None, T0), ("declaration", "B", "00:30"), ("declaration", "A", "01:00")],
            id="sorted-by-time",
        ),
        pytest.param(
            [decl("A", "2024-07-04T23:00:00+00:00", 10, 5), POLL],
            [("exit_poll", None, T0), ("declaration", "A", "00:00")],
            id="offsets-compared",
        ),
        pytest.param(
            [decl("A", T0, 10, 5), POLL],
            [("exit_poll", None, T0), ("declaration", "A", "22:00")],
            id="poll-first-at-the-same-instant",
        ),
    ],
)
def test_times_and_order(night: list[dict[str, Any]], expected: list[tuple[str, Any, str]]) -> None:
    plan = plan_night(night)
    got = [(i.event["type"], i.event.get("constituency"), i.at) for i in plan]
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    for (_, _, when), (_, _, wanted) in zip(got, expected, strict=True):
        if len(wanted) == 5:
            assert when.astimezone(at(T0).tzinfo).strftime("%H:%M") == wanted
        else:
            assert when == at(wanted)


@pytest.mark.parametrize(
    ("declaration", "winner"),
    [
        pytest.param(decl("A", "2024-07-05T01:00:00+01:00", 5, 9, 2), "Candidate 1", id="top"),
        pytest.param(
            decl(
                "A",
                "2024-07-05T01:00:00+01:00",
                8,
                8,
                winner={"name": "Candidate 1", "party": "P1"},
            ),
            "Candidate 1",
            id="tie-with-winner",
        ),
        pytest.param(decl("A", "2024-07-05T01:00:00+01:00", 8, 8), None, id="open-tie"),
        pytest.param(decl("A", "2024-07-05T01:00:00+01:00", 4), "Candidate 0", id="unopposed"),
    ],
)
def test_flash_names_the_winner(declaration: dict[str, Any], winner: str | None) -> None:
    plan = plan_night([POLL, declaration], flashes=True)
    flashes = [i.event for i in plan if i.event["type"] == "flash"]
    if winner is None:
        assert flashes == []
    else:
        assert [f["winner"]["name"] for f in flashes] == [winner]
    check_invariants(plan)


def test_extras_never_before_the_exit_poll() -> None:
    # Declared two minutes after the poll, and close enough for a recount.
    night = [POLL, decl("A", "2024-07-04T22:02:00+01:00", 1000, 999)]
    plan = plan_night(night, flashes=True, recounts=True)
    assert [(i.event["type"], i.at) for i in plan] == [
        ("exit_poll", at(T0)),
        ("status", at(T0)),
        ("flash", at(T0)),
        ("declaration", at("2024-07-04T22:02:00+01:00")),
    ]
    assert [i.event.get("revision") for i in plan] == [None, 1, 2, 3]


def test_revisions_count_every_per_seat_event() -> None:
    night: list[dict[str, Any]] = [
        POLL,
        {"type": "status", "constituency": "A", "status": "counting", "revision": 40},
        decl("A", "2024-07-05T01:00:00+01:00", 10, 5),
        {"type": "retraction", "constituency": "A"},
        decl("A", None, 10, 6),
        decl("B", None, 3, 1),
    ]
    plan = plan_night(night)
    assert [(i.event.get("constituency"), i.event.get("revision")) for i in plan] == [
        (None, None),
        ("A", 1),
        ("A", 2),
        ("A", 3),
        ("A", 4),
        ("B", 1),
    ]


@pytest.mark.parametrize(
    "votes",
    [
        pytest.param((10, 9), id="one-apart"),
        pytest.param((10, 0), id="runner-up-on-zero"),
        pytest.param((5, 5, 1), id="tie-settled-by-winner"),
        pytest.param((100_000, 3, 2, 1), id="landslide"),
    ],
)
def test_corrections_of_tight_corners(votes: tuple[int, ...]) -> None:
    extra = {"winner": {"name": "Candidate 0", "party": "P0"}} if votes[0] == votes[1] else {}
    night = [POLL, decl("A", "2024-07-05T01:00:00+01:00", *votes, **extra)]
    for seed in range(30):
        plan = plan_night(night, corrections=1, seed=seed)
        correction = plan[-1].event
        assert correction["revision"] == 2
        new = sorted((c["votes"] for c in correction["candidates"]), reverse=True)
        assert new[0] == votes[0] > new[1] >= 0
        assert top(correction) == ("Candidate 0", "P0")


def test_a_single_candidate_is_never_corrected() -> None:
    night = [POLL, decl("A", "2024-07-05T01:00:00+01:00", 7), decl("B", None, 5, 4)]
    plan = plan_night(night, corrections=2)
    corrected = [i.event["constituency"] for i in plan if i.event.get("revision") == 2]
    assert corrected == ["B"]


# --------------------------------------------------------------------------- limits


@pytest.mark.parametrize("seats", [0, 1, 20, 649, 650, 1000])
def test_limit_plan(night_2024: list[dict[str, Any]], seats: int) -> None:
    plan = plan_night(night_2024, flashes=True, recounts=True, corrections=200, seed=4)
    limited = limit_plan(plan, seats)
    kept = declared_seats(limited)
    assert kept == declared_seats(plan)[:seats]
    assert limited[0].event["type"] == "exit_poll"
    assert {i.event["constituency"] for i in limited if "constituency" in i.event} == set(kept)
    check_invariants(limited)


def test_first_seats_then_plan(night_2024: list[dict[str, Any]]) -> None:
    events = first_seats(night_2024, 20)
    plan = plan_night(events, flashes=True, corrections=5, seed=1)
    assert len(declared_seats(plan)) == 20
    counts = Counter(i.event["type"] for i in plan)
    assert counts == {"exit_poll": 1, "flash": 20, "declaration": 25}
    check_invariants(plan)


# --------------------------------------------------------------------------- properties

BASE = datetime(2024, 7, 4, 21, 0, tzinfo=UTC)


@st.composite
def nights(draw: st.DrawFn) -> list[dict[str, Any]]:
    seats = draw(st.integers(min_value=1, max_value=12))
    events: list[dict[str, Any]] = []
    if draw(st.booleans()):
        minute = draw(st.integers(0, 120))
        events.append(
            {
                "type": "exit_poll",
                "seats": {"P0": 1},
                "published_at": (BASE + timedelta(minutes=minute)).isoformat(),
            }
        )
    for n in range(seats):
        votes = draw(st.lists(st.integers(0, 60), min_size=1, max_size=5))
        offset = draw(st.one_of(st.none(), st.integers(0, 600)))
        when = None if offset is None else (BASE + timedelta(minutes=offset)).isoformat()
        event = decl(f"S{n}", when, *votes)
        ranked = sorted(range(len(votes)), key=lambda i: votes[i], reverse=True)
        if len(votes) > 1 and votes[ranked[0]] == votes[ranked[1]] and draw(st.booleans()):
            event["winner"] = {"name": f"Candidate {ranked[1]}", "party": f"P{ranked[1]}"}
        events.insert(draw(st.integers(0, len(events))), event)
    return events


@settings(max_examples=150, deadline=None)
@given(
    night=nights(),
    flashes=st.booleans(),
    recounts=st.booleans(),
    corrections=st.integers(0, 15),
    seed=st.integers(0, 2**32),
)
def test_plan_properties(
    night: list[dict[str, Any]], flashes: bool, recounts: bool, corrections: int, seed: int
) -> None:
    plan = plan_night(night, flashes=flashes, recounts=recounts, corrections=corrections, seed=seed)
    check_invariants(plan)
    originals = {e["constituency"]: e for e in night if e["type"] == "declaration"}
    seen: set[str] = set()
    corrected = 0
    for item in plan:
        event = item.event
        if event["type"] != "declaration":
            continue
        if event["constituency"] not in seen:
            seen.add(event["constituency"])
        else:
            corrected += 1
            original = originals[event["constituency"]]
            assert top(event) == top(original)
            votes = [c["votes"] for c in event["candidates"]]
            assert min(votes) >= 0
            assert sum(votes) != sum(c["votes"] for c in original["candidates"])
            name, party = top(original)
            winner_votes = next(
                c["votes"] for c in event["candidates"] if (c["name"], c["party"]) == (name, party)
            )
            assert winner_votes == max(votes)
            if "winner" not in original:
                assert votes.count(winner_votes) == 1
    assert corrected <= corrections
