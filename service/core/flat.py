"""States flattened to stable keys, for graphics systems that bind a field to a key.

Graphics systems (CasparCG templates, data-driven character generators, spreadsheets) take
one level of key -> text. Every key a document can have is always present, with ``""`` when
it has no value yet (no winner, no exit poll), so that a field bound to a key is cleared
rather than left showing the previous seat's figures. Keys come in a fixed order; party keys
follow the definition's order. The fixed keys are lower case; party keys begin with the
party's code (``LAB_seats``) and candidate keys with ``cand<n>_`` (``cand1_name``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.core.election import Election

FlatValue = str | int | float
Flat = dict[str, FlatValue]

CANDIDATE_SLOTS = 10
"""Candidate keys (``cand1_`` to ``cand10_``) that are always present; a seat with more
candidates has more."""

PARTY_FIELDS = (
    "seats",
    "gains",
    "losses",
    "net",
    "votes",
    "share",
    "seats_to_majority",
    "seats_to_working_majority",
)
RANKED_FIELDS = ("code", "name", "colour", "seats", "net", "votes", "share")
CANDIDATE_FIELDS = ("name", "party", "party_name", "colour", "votes", "share")


def flat_national(election: Election, state: Mapping[str, Any], seq: str) -> Flat:
    """The national state (as the caller may see it: embargo applied) flattened.

    Parties come twice: by code (``LAB_seats``), and ranked by seats then votes then code,
    as the leader is chosen (``party1_name``, ``party1_seats``).
    """
    parties: Mapping[str, Any] = state["parties"]
    exit_poll: Mapping[str, Any] = state.get("exit_poll", {})
    projected: Mapping[str, int] = exit_poll.get("seats", {})
    leader = state.get("leader", "")
    majority_party = state.get("majority_party", "")
    flat: Flat = {
        "seq": seq,
        "election": state["election"],
        "election_name": election.name,
        "total_seats": state["total_seats"],
        "majority": state["majority"],
        "working_majority": state.get("working_majority", ""),
        "declared": state["declared"],
        "seats_to_declare": state["seats_to_declare"],
        "leader": leader,
        "leader_name": _party_name(election, leader),
        "seats_to_majority": state.get("seats_to_majority", ""),
        "majority_party": majority_party,
        "majority_party_name": _party_name(election, majority_party),
        "overall_majority": (parties[majority_party]["overall_majority"] if majority_party else ""),
        "exit_poll_published_at": exit_poll.get("published_at", ""),
    }
    for code, entry in parties.items():
        _put(flat, f"{code}_name", entry["name"])
        _put(flat, f"{code}_colour", _colour(election, code))
        for field in PARTY_FIELDS:
            _put(flat, f"{code}_{field}", entry.get(field, ""))
        _put(flat, f"{code}_exit_poll", projected.get(code, ""))
    ranked = sorted(parties, key=lambda c: (-parties[c]["seats"], -parties[c]["votes"], c))
    for rank, code in enumerate(ranked, start=1):
        entry = parties[code]
        values = (code, entry["name"], _colour(election, code), *_ranked_figures(entry))
        for field, value in zip(RANKED_FIELDS, values, strict=True):
            _put(flat, f"party{rank}_{field}", value)
    return flat


def flat_constituency(
    election: Election, state: Mapping[str, Any], seq: str, slots: int = CANDIDATE_SLOTS
) -> Flat:
    """A constituency's state flattened; ``slots`` candidate keys at least."""
    flat: Flat = {"seq": seq}
    _seat(flat, election, state, slots)
    return flat


def flat_latest(
    election: Election, entry: Mapping[str, Any] | None, seq: str, slots: int = CANDIDATE_SLOTS
) -> Flat:
    """The latest declarations entry (declaration, flash, correction or retraction)
    flattened: what happened, then its seat's keys as ``flat_constituency`` gives them.
    Before the first, every key is there, empty."""
    flat: Flat = {
        "seq": seq,
        "kind": "" if entry is None else entry["kind"],
        "headline": "" if entry is None else entry["headline"],
        "reason": "" if entry is None else entry.get("reason", ""),
    }
    _seat(flat, election, {} if entry is None else entry["constituency"], slots)
    return flat


def _seat(flat: Flat, election: Election, state: Mapping[str, Any], slots: int) -> None:
    winner: Mapping[str, str] = state.get("winner", {})
    winner_party = winner.get("party", "")
    previous = state.get("previous", "")
    gain_from = state.get("gain_from", "")
    flat.update(
        {
            "id": state.get("id", ""),
            "name": state.get("name", ""),
            "region": state.get("region", ""),
            "nation": state.get("nation", ""),
            "electorate": state.get("electorate", ""),
            "status": state.get("status", ""),
            "previous": previous,
            "previous_name": _party_name(election, previous),
            "winner_name": winner.get("name", ""),
            "winner_party": winner_party,
            "winner_party_name": _party_name(election, winner_party),
            "winner_colour": _colour(election, winner_party),
            "result": state.get("result", ""),
            "gain_from": gain_from,
            "gain_from_name": _party_name(election, gain_from),
            "majority": state.get("majority", ""),
            "turnout": state.get("turnout", ""),
            "valid_votes": state.get("valid_votes", ""),
            "declared_at": state.get("declared_at", ""),
            "corrections": state.get("corrections", ""),
        }
    )
    candidates: list[Mapping[str, Any]] = state.get("candidates", [])
    flat["candidates"] = len(candidates) if "candidates" in state else ""
    for number in range(1, max(slots, len(candidates)) + 1):
        values: tuple[FlatValue, ...] = ("",) * len(CANDIDATE_FIELDS)
        if number <= len(candidates):
            c = candidates[number - 1]
            party = c["party"]
            values = (
                c["name"],
                party,
                _party_name(election, party),
                _colour(election, party),
                c["votes"],
                c["share"],
            )
        for field, value in zip(CANDIDATE_FIELDS, values, strict=True):
            flat[f"cand{number}_{field}"] = value


def _ranked_figures(entry: Mapping[str, Any]) -> tuple[FlatValue, ...]:
    return (entry["seats"], entry["net"], entry["votes"], entry["share"])


def _put(flat: Flat, key: str, value: FlatValue) -> None:
    """A party key, unless a fixed key already has the name (a lower-case party code such
    as ``leader`` would shadow ``leader_name``): the fixed key wins, as documented."""
    flat.setdefault(key, value)


def _party_name(election: Election, code: str) -> str:
    party = election.parties.get(code)
    return "" if not code else party.name if party is not None else code


def _colour(election: Election, code: str) -> str:
    party = election.parties.get(code)
    return party.colour or "" if party is not None else ""
