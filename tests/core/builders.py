"""Small elections and events to test the core with.

The tiny election is deliberately not the UK: three seats, made-up party codes, accented area
names, no ``majority`` given (so it defaults to 2).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from functools import cache
from typing import Any

import orjson

from service import data
from service.core.decoding import validate_event
from service.core.election import Election, load_election, parse_election
from service.core.seq import Seq
from service.core.tally import Applied, Tally

TINY: dict[str, Any] = {
    "id": "freedonia-2031",
    "name": "Freedonia general election, 2031",
    "parties": {
        "KIW": {"name": "Kiwi Party", "colour": "#2E8B57"},
        "TUI": {"name": "Tui Alliance", "colour": "#1E90FF"},
        "MOA": {"name": "Moa Movement"},
    },
    "constituencies": [
        {
            "id": "N1",
            "name": "Nordhaven",
            "region": "Côte Nord",
            "nation": "Upland",
            "electorate": 1000,
            "previous": "KIW",
        },
        {
            "id": "N2",
            "name": "Südfeld",
            "region": "Côte Nord",
            "nation": "Upland",
            "electorate": 1200,
            "previous": "TUI",
        },
        {
            "id": "S1",
            "name": "Lowmere",
            "region": "Basse Vallée",
            "nation": "Lowland",
            "electorate": 800,
            "previous": "TUI",
        },
    ],
}


def tiny_definition() -> dict[str, Any]:
    """A fresh copy of the tiny definition, to change at will."""
    return copy.deepcopy(TINY)


def tiny_election() -> Election:
    return parse_election(tiny_definition(), source="tiny.election.json")


@cache
def bundled_election(name: str = "uk-2024") -> Election:
    return load_election(data.election_path(name))


@cache
def bundled_night(name: str = "uk-2024") -> tuple[bytes, ...]:
    """The night's lines as they would come off the stream, exit poll first."""
    lines = data.night_path(name).read_bytes().splitlines()
    return tuple(line for line in lines if line.strip())


def bundled_declarations(name: str = "uk-2024") -> list[dict[str, Any]]:
    """The night's declarations, decoded to plain dicts (a fresh copy each call)."""
    events = (orjson.loads(line) for line in bundled_night(name))
    return [event for event in events if event["type"] == "declaration"]


def declaration(seat: Any, *candidates: tuple[Any, Any, Any], **fields: Any) -> dict[str, Any]:
    """``declaration("N1", ("Ana", "KIW", 500), ("Ben", "TUI", 300), revision=2)``.

    The builders take any values, to make malformed events as easily as good ones.
    """
    return {
        "type": "declaration",
        "constituency": seat,
        "candidates": [
            {"name": name, "party": party, "votes": votes} for name, party, votes in candidates
        ],
        **fields,
    }


def flash(seat: Any, name: Any, party: Any, **fields: Any) -> dict[str, Any]:
    return {
        "type": "flash",
        "constituency": seat,
        "winner": {"name": name, "party": party},
        **fields,
    }


def status(seat: Any, value: Any, **fields: Any) -> dict[str, Any]:
    return {"type": "status", "constituency": seat, "status": value, **fields}


def retraction(seat: Any, **fields: Any) -> dict[str, Any]:
    return {"type": "retraction", "constituency": seat, **fields}


def exit_poll(seats: Any, **fields: Any) -> dict[str, Any]:
    return {"type": "exit_poll", "seats": seats, **fields}


class Desk:
    """A results desk feeding one tally: each ``send`` is the next stream entry."""

    def __init__(self, election: Election, first_ms: int = 1_720_148_400_000) -> None:
        self.election = election
        self.tally = Tally(election)
        self._ms = first_ms

    def next_seq(self) -> Seq:
        self._ms += 1
        return Seq(self._ms, 0)

    def send(self, document: dict[str, Any]) -> Applied:
        """Validate ``document`` as the next entry's event and apply it."""
        seq = self.next_seq()
        return self.tally.apply(seq, validate_event(document, self.election, str(seq)))

    def send_all(self, documents: list[dict[str, Any]]) -> list[Applied]:
        return [self.send(document) for document in documents]


def walk(value: Any, path: str = "$") -> Iterator[tuple[str, Any]]:
    """Every (path, value) in a JSON-like value, the value itself first."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, f"{path}[{index}]")
