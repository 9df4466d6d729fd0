"""Election definitions: loading and validating them.

A definition names the parties, the constituencies (with the party that held each before)
and the majority. Nothing here assumes a country, a seat count or party codes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import orjson


class ElectionError(ValueError):
    """A definition file that cannot be used; the message names the file, entry and field."""


_Fail = Callable[[str], ElectionError]


@dataclass(frozen=True, slots=True)
class Party:
    code: str
    name: str
    colour: str | None = None


@dataclass(frozen=True, slots=True)
class Constituency:
    id: str
    name: str
    region: str
    nation: str
    electorate: int
    previous: str
    region_slug: str
    nation_slug: str


@dataclass(frozen=True, slots=True)
class Area:
    """A region or a nation: a named group of constituencies."""

    slug: str
    name: str
    constituencies: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Election:
    id: str
    name: str
    parties: Mapping[str, Party]
    constituencies: Mapping[str, Constituency]
    majority: int
    regions: Mapping[str, Area]
    nations: Mapping[str, Area]
    attribution: str | None = None
    """The data's licence attribution, which displays must show (e.g. the OPL's)."""
    non_voting_seats: int | None = None
    """Seats whose members do not vote (a Speaker and deputies); None when not given."""
    abstaining_parties: tuple[str, ...] | None = None
    """Parties whose members do not take their seats; None when not given."""

    @property
    def total_seats(self) -> int:
        return len(self.constituencies)

    @property
    def has_working_majority(self) -> bool:
        """The definition says who does not vote, so a working majority can be counted."""
        return self.non_voting_seats is not None or self.abstaining_parties is not None


def slugify(name: str) -> str:
    """``"East of England"`` -> ``"east-of-england"``; accents are folded to ASCII."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")


def load_election(path: str | Path) -> Election:
    """Read and validate a definition file; raises ElectionError naming the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ElectionError(f"{path}: cannot read election definition: {exc.strerror}") from exc
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ElectionError(f"{path}: not valid JSON: {exc}") from exc
    return parse_election(document, source=str(path))


def parse_election(document: Any, *, source: str = "<definition>") -> Election:
    """Validate a decoded definition; raises ElectionError naming ``source``, entry and field."""

    def fail(message: str) -> ElectionError:
        return ElectionError(f"{source}: {message}")

    if not isinstance(document, dict):
        raise fail("the definition must be a JSON object")
    election_id = _text(document, "id", fail, "definition")
    name = _text(document, "name", fail, "definition")

    raw_parties = document.get("parties")
    if not isinstance(raw_parties, dict) or not raw_parties:
        raise fail("'parties' must be a non-empty object of party code -> {name, colour}")
    parties: dict[str, Party] = {}
    for code, entry in raw_parties.items():
        where = f"party {code!r}"
        if not isinstance(entry, dict):
            raise fail(f"{where} must be an object with a 'name'")
        colour = entry.get("colour")
        if colour is not None and not isinstance(colour, str):
            raise fail(f"{where}: 'colour' must be a string like '#E4003B'")
        parties[code] = Party(code, _text(entry, "name", fail, where), colour)

    raw_seats = document.get("constituencies")
    if not isinstance(raw_seats, list) or not raw_seats:
        raise fail("'constituencies' must be a non-empty list")
    constituencies: dict[str, Constituency] = {}
    for index, entry in enumerate(raw_seats):
        where = f"constituency {index}"
        if not isinstance(entry, dict):
            raise fail(f"{where} must be an object")
        seat_id = _text(entry, "id", fail, where)
        where = f"constituency {index} ({seat_id})"
        if seat_id in constituencies:
            raise fail(f"{where}: duplicate constituency id")
        electorate = entry.get("electorate")
        if not _is_int(electorate) or electorate < 0:
            raise fail(f"{where}: 'electorate' must be a non-negative integer")
        previous = _text(entry, "previous", fail, where)
        if previous not in parties:
            raise fail(f"{where}: 'previous' party {previous!r} is not in 'parties'")
        region = _text(entry, "region", fail, where)
        nation = _text(entry, "nation", fail, where)
        constituencies[seat_id] = Constituency(
            id=seat_id,
            name=_text(entry, "name", fail, where),
            region=region,
            nation=nation,
            electorate=electorate,
            previous=previous,
            region_slug=slugify(region),
            nation_slug=slugify(nation),
        )

    total = len(constituencies)
    majority = document.get("majority", total // 2 + 1)
    if not _is_int(majority) or not 0 < majority <= total:
        raise fail(f"'majority' must be an integer from 1 to {total} (the number of seats)")

    attribution = document.get("attribution")
    if attribution is not None and not isinstance(attribution, str):
        raise fail("'attribution' must be a string")
    non_voting = document.get("non_voting_seats")
    if non_voting is not None and (not _is_int(non_voting) or not 0 <= non_voting < total):
        raise fail(f"'non_voting_seats' must be an integer from 0 to {total - 1}")
    abstaining = _abstaining_parties(document.get("abstaining_parties"), parties, fail)
    return Election(
        id=election_id,
        name=name,
        parties=parties,
        constituencies=constituencies,
        majority=majority,
        regions=_areas(constituencies.values(), "region", fail),
        nations=_areas(constituencies.values(), "nation", fail),
        attribution=attribution,
        non_voting_seats=non_voting,
        abstaining_parties=abstaining,
    )


def _abstaining_parties(
    value: object, parties: Mapping[str, Party], fail: _Fail
) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(code, str) for code in value):
        raise fail("'abstaining_parties' must be a list of party codes")
    for code in value:
        if code not in parties:
            raise fail(f"'abstaining_parties': party {code!r} is not in 'parties'")
    if len(set(value)) != len(value):
        raise fail("'abstaining_parties' names a party twice")
    return tuple(value)


def _areas(seats: Iterable[Constituency], field: str, fail: _Fail) -> dict[str, Area]:
    names: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    for seat in seats:
        name = getattr(seat, field)
        slug = getattr(seat, f"{field}_slug")
        if not slug:
            raise fail(f"constituency {seat.id}: {field} {name!r} has no letters or digits")
        if names.setdefault(slug, name) != name:
            raise fail(f"{field}s {names[slug]!r} and {name!r} have the same slug {slug!r}")
        members.setdefault(slug, []).append(seat.id)
    return {slug: Area(slug, names[slug], tuple(ids)) for slug, ids in sorted(members.items())}


def _text(entry: dict[str, Any], field: str, fail: _Fail, where: str) -> str:
    value = entry.get(field)
    if not isinstance(value, str) or not value.strip():
        raise fail(f"{where}: '{field}' must be a non-empty string")
    return value


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
