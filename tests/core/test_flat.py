"""Flattening states to stable keys for graphics systems."""

from __future__ import annotations

from typing import Any

from service.core.election import parse_election
from service.core.flat import CANDIDATE_SLOTS, flat_constituency, flat_latest, flat_national
from service.core.tally import DECLARATIONS, NATIONAL, Tally
from tests.core.builders import Desk, declaration, flash, tiny_definition, tiny_election

N1_KIW = declaration("N1", ("Ana", "KIW", 500), ("Ben", "TUI", 300), ("Cy", "MOA", 200))


def test_every_national_key_is_there_before_any_result_empty_where_there_is_no_value() -> None:
    election = tiny_election()
    flat = flat_national(election, Tally(election).state(NATIONAL), "0-0")

    assert flat["seq"] == "0-0"
    assert (flat["leader"], flat["leader_name"], flat["majority_party"]) == ("", "", "")
    assert (flat["overall_majority"], flat["working_majority"], flat["exit_poll_published_at"]) == (
        "",
        "",
        "",
    )
    assert (flat["KIW_name"], flat["KIW_colour"], flat["KIW_seats"]) == ("Kiwi Party", "#2E8B57", 0)
    assert flat["MOA_colour"] == ""  # the definition gives it none
    assert flat["KIW_exit_poll"] == flat["KIW_seats_to_working_majority"] == ""
    assert [flat[f"party{n}_code"] for n in (1, 2, 3)] == ["KIW", "MOA", "TUI"]  # then by code


def test_the_national_keys_stay_the_same_as_results_come_in() -> None:
    desk = Desk(tiny_election())
    before = flat_national(desk.election, desk.tally.state(NATIONAL), "0-0")

    desk.send(N1_KIW)
    desk.send(declaration("N2", ("Dora", "KIW", 600), ("Eli", "TUI", 480)))
    after = flat_national(desk.election, desk.tally.state(NATIONAL), "3-0")

    assert list(after) == list(before)
    assert (after["leader"], after["majority_party"], after["overall_majority"]) == (
        "KIW",
        "KIW",
        1,
    )
    assert (after["party1_code"], after["party1_seats"], after["party2_code"]) == ("KIW", 2, "TUI")


def test_a_lower_case_party_code_never_shadows_a_fixed_key() -> None:
    definition = tiny_definition()
    definition["parties"]["leader"] = {"name": "The Leader Party"}
    election = parse_election(definition)

    flat = flat_national(election, Tally(election).state(NATIONAL), "0-0")

    assert flat["leader_name"] == ""  # the national figure, not the party's name
    assert flat["leader_seats"] == 0


def test_a_seat_has_ten_candidate_slots_at_least_and_more_when_it_has_more() -> None:
    desk = Desk(tiny_election())
    people = [(f"Person {n}", ("KIW", "TUI", "MOA")[n % 3], 10 + n) for n in range(12)]
    desk.send(declaration("N1", *people))

    state = desk.tally.state("constituency:N1")
    flat = flat_constituency(desk.election, state, "1-0")
    awaiting = flat_constituency(desk.election, desk.tally.state("constituency:S1"), "0-0")

    assert flat["candidates"] == 12
    assert flat["cand12_name"] == "Person 0"  # fewest votes, last
    assert (flat["cand1_name"], flat["cand1_votes"], flat["cand1_party_name"]) == (
        "Person 11",
        21,
        "Moa Movement",
    )
    assert awaiting["candidates"] == awaiting["winner_name"] == awaiting["cand1_name"] == ""
    assert f"cand{CANDIDATE_SLOTS}_share" in awaiting
    assert f"cand{CANDIDATE_SLOTS + 1}_name" not in awaiting
    assert list(flat_constituency(desk.election, state, "1-0", slots=0))[-1] == "cand12_share"


def test_latest_is_the_entry_then_its_seat_and_empty_before_any() -> None:
    desk = Desk(tiny_election())
    nothing = flat_latest(desk.election, None, "0-0")
    desk.send(flash("N2", "Eli", "TUI"))
    entry: dict[str, Any] = desk.tally.state(DECLARATIONS)["recent"][-1]

    flat = flat_latest(desk.election, entry, entry["seq"])

    assert list(flat) == list(nothing)
    assert all(value == "" for key, value in nothing.items() if key != "seq")
    assert (flat["kind"], flat["headline"]) == ("flash", entry["headline"])
    assert (flat["winner_name"], flat["winner_party_name"], flat["result"]) == (
        "Eli",
        "Tui Alliance",
        "hold",
    )
    assert flat["majority"] == flat["cand1_name"] == ""  # a flash has no figures
