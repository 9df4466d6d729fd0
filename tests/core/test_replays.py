"""Replaying the bundled election nights gives the published results."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Mapping
from functools import cache
from typing import Any

import json_merge_patch
import pytest

from service.core.decoding import decode_event
from service.core.seq import Seq
from service.core.tally import (
    DECLARATIONS,
    LOG_CHANNELS,
    NATIONAL,
    Change,
    Tally,
    constituency_channel,
)
from tests.core.builders import bundled_election, bundled_night

MAIN_2024 = {"LAB", "SPK", "CON", "LD", "SNP", "SF"}


@cache
def replay(name: str) -> tuple[Tally, tuple[Change, ...]]:
    """The night applied entry by entry, as the service would; shared, so treat as read-only."""
    election = bundled_election(name)
    tally = Tally(election)
    changes: list[Change] = []
    for number, line in enumerate(bundled_night(name), start=1):
        seq = Seq(1_720_130_400_000 + number, 0)
        changes += tally.apply(seq, decode_event(line, election, str(seq))).changes
    return tally, tuple(changes)


def national(name: str) -> Mapping[str, Any]:
    return replay(name)[0].state(NATIONAL)


@pytest.mark.parametrize(
    ("party", "seats", "net"),
    [
        ("LAB", 411, 211),
        ("SPK", 1, 0),
        ("CON", 121, -251),
        ("LD", 72, 64),
        ("SNP", 9, -39),
        ("SF", 7, 0),
    ],
)
def test_the_2024_night_gives_each_main_party_its_seats_and_net_change(
    party: str, seats: int, net: int
) -> None:
    entry = national("uk-2024")["parties"][party]

    assert (entry["seats"], entry["net"]) == (seats, net)
    assert entry["gains"] - entry["losses"] == net
    assert entry["seats_to_majority"] == max(0, 326 - seats)


def test_the_2024_night_gives_the_other_parties_29_seats_and_15_more() -> None:
    parties = national("uk-2024")["parties"]
    others = [entry for code, entry in parties.items() if code not in MAIN_2024]

    assert sum(entry["seats"] for entry in others) == 29
    assert sum(entry["net"] for entry in others) == 15


def test_the_2024_night_ends_with_a_labour_majority_and_every_seat_declared() -> None:
    state = national("uk-2024")

    assert state["majority"] == 326
    assert state["declared"] == 650
    assert state["seats_to_declare"] == 0
    assert state["leader"] == "LAB"
    assert state["majority_party"] == "LAB"
    assert state["seats_to_majority"] == 0
    assert state["exit_poll"]["seats"]["LAB"] == 410
    assert state["exit_poll"]["published_at"] == "2024-07-04T22:00:00+01:00"


def test_the_2024_shares_are_of_all_valid_votes() -> None:
    parties = national("uk-2024")["parties"]

    assert parties["LAB"]["share"] == pytest.approx(33.7, abs=0.1)
    assert sum(entry["share"] for entry in parties.values()) == pytest.approx(100, abs=0.1)


@pytest.mark.parametrize(
    ("seat", "winner", "result", "majority"),
    [
        ("E14001425", "Andrew Pakes", "gain", 118),  # Peterborough
        ("E14001401", "Sam Carling", "gain", 39),  # North West Cambridgeshire
        ("E14001360", "Greg Smith", "hold", 5872),  # Mid Buckinghamshire
    ],
)
def test_the_2024_night_gives_the_close_seats_their_published_majorities(
    seat: str, winner: str, result: str, majority: int
) -> None:
    state = replay("uk-2024")[0].state(constituency_channel(seat))

    assert state["winner"]["name"] == winner
    assert state["result"] == result
    assert state["majority"] == majority
    assert state["status"] == "declared"
    assert state["corrections"] == 0
    if result == "gain":
        assert state["gain_from"] == "CON"


def test_the_2024_night_announces_650_declarations_in_order() -> None:
    tally, changes = replay("uk-2024")
    announced = [c for c in changes if c.channel == DECLARATIONS]

    assert len(announced) == 650
    assert {c.event["kind"] for c in announced if c.event is not None} == {"declaration"}
    assert [c.prev for c in announced[1:]] == [c.seq for c in announced[:-1]]
    first = announced[0].event
    assert first is not None
    assert first["headline"] == "Labour hold Houghton and Sunderland South, majority 7,169"
    assert len(tally.state(DECLARATIONS)["recent"]) >= 20


def test_the_2024_replay_equals_a_recomputation() -> None:
    tally, _ = replay("uk-2024")

    assert tally.recompute() == {
        channel: tally.state(channel) for channel in tally.channels() if channel not in LOG_CHANNELS
    }


def test_the_2024_regions_and_nations_add_up_to_the_national_seats() -> None:
    tally, _ = replay("uk-2024")
    election = bundled_election("uk-2024")
    seats = {code: entry["seats"] for code, entry in national("uk-2024")["parties"].items()}

    for prefix, areas in (("region", election.regions), ("nation", election.nations)):
        total: Counter[str] = Counter()
        for slug in areas:
            for code, entry in tally.state(f"{prefix}:{slug}")["parties"].items():
                total[code] += entry["seats"]
        assert dict(total) == seats
    assert tally.state("nation:scotland")["parties"]["SNP"]["seats"] == 9
    assert tally.state("region:london")["declared"] == 75


def test_the_2017_night_leaves_the_conservatives_9_short() -> None:
    state = national("uk-2017")

    assert state["parties"]["CON"]["seats"] == 317
    assert state["parties"]["LAB"]["seats"] == 262
    assert state["leader"] == "CON"
    assert state["seats_to_majority"] == 9
    assert "majority_party" not in state
    assert state["declared"] == 650


def test_the_2019_night_gives_the_conservatives_365() -> None:
    state = national("uk-2019")

    assert state["parties"]["CON"]["seats"] == 365
    assert state["parties"]["LAB"]["seats"] == 202
    assert state["majority_party"] == "CON"
    assert state["seats_to_majority"] == 0


def national_after_each_change(name: str) -> list[Mapping[str, Any]]:
    """The national state after each of its changes in the replay, as a client holds it."""
    tally, changes = replay(name)
    state = copy.deepcopy(Tally(bundled_election(name)).state(NATIONAL))
    states = [copy.deepcopy(state)]
    for change in changes:
        if change.channel == NATIONAL:
            state = json_merge_patch.merge(state, copy.deepcopy(change.patch))
            states.append(copy.deepcopy(state))
    assert state == tally.state(NATIONAL)
    return states


def test_the_2024_working_majority_is_324_until_sinn_fein_wins_a_seat_and_320_at_the_end() -> None:
    states = national_after_each_change("uk-2024")

    before_sinn_fein = [s for s in states if s["parties"]["SF"]["seats"] == 0]
    assert before_sinn_fein
    assert {s["working_majority"] for s in before_sinn_fein} == {324}
    for state in states:
        assert state["working_majority"] == (650 - 4 - state["parties"]["SF"]["seats"]) // 2 + 1
    assert states[-1]["working_majority"] == 320


def test_the_2024_night_ends_with_labours_overall_majority_of_172() -> None:
    state = national("uk-2024")
    parties = state["parties"]

    assert parties["LAB"]["overall_majority"] == 172
    assert [code for code, entry in parties.items() if "overall_majority" in entry] == ["LAB"]
    assert parties["LAB"]["seats_to_working_majority"] == 0
    assert parties["CON"]["seats_to_working_majority"] == 320 - 121


def test_the_2024_overall_majority_appears_with_the_majority_party_and_follows_its_seats() -> None:
    for state in national_after_each_change("uk-2024"):
        leading = state.get("majority_party")
        for code, entry in state["parties"].items():
            assert ("overall_majority" in entry) == (code == leading)
            assert entry["seats_to_working_majority"] == max(
                0, state["working_majority"] - entry["seats"]
            )
        if leading is not None:
            seats = state["parties"][leading]["seats"]
            assert state["parties"][leading]["overall_majority"] == seats - (650 - seats)


def test_the_2019_night_gives_a_working_majority_of_320_and_the_conservatives_80() -> None:
    state = national("uk-2019")

    assert state["working_majority"] == 320
    assert state["parties"]["SF"]["seats"] == 7
    assert state["parties"]["CON"]["overall_majority"] == 80
    assert state["parties"]["CON"]["seats_to_working_majority"] == 0


def test_the_2017_night_leaves_no_party_at_the_working_majority() -> None:
    state = national("uk-2017")

    assert state["working_majority"] == 320
    assert state["parties"]["CON"]["seats_to_working_majority"] == 3
    assert all(entry["seats_to_working_majority"] > 0 for entry in state["parties"].values())
    assert not any("overall_majority" in entry for entry in state["parties"].values())


@pytest.mark.parametrize("name", ["uk-2019", "uk-2017"])
def test_the_earlier_replays_equal_a_recomputation(name: str) -> None:
    tally, _ = replay(name)

    assert tally.recompute() == {
        channel: tally.state(channel) for channel in tally.channels() if channel not in LOG_CHANNELS
    }
