"""PA Media's election XML files, read into plain records.

PA delivers one XML document a file; the root element says what it is. Parsing goes through
defusedxml, so a file with entity declarations (billion laughs) or external entities is refused
before anything is expanded or fetched. Nothing here knows the election definition: mapping PA's
seat numbers, names and party abbreviations onto it is :mod:`clients.pa.mapping`'s work.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

import defusedxml
import defusedxml.ElementTree as SafeET

RESULT = "FirstPastThePostResult"
RUSH = "FirstPastThePostRush"
RECOUNT = "Recount"
STATE_OF_PARTIES = "FirstPastThePostStateOfParties"
ROOTS = (RESULT, RUSH, RECOUNT, STATE_OF_PARTIES)


class PaFileError(ValueError):
    """A file that cannot be used; ``str(exc)`` is the one-line reason kept beside it."""


@dataclass(frozen=True, slots=True)
class PaSeat:
    """A constituency as PA names it: its own number and the name it prints."""

    number: str | None
    name: str | None

    def __str__(self) -> str:
        return f"constituency {self.number or '?'} ({self.name or 'no name'})"


@dataclass(frozen=True, slots=True)
class PaCandidate:
    name: str
    party: str
    """PA's abbreviation, as written in the file."""
    votes: int | None
    elected: bool


@dataclass(frozen=True, slots=True)
class PaResult:
    seat: PaSeat
    revision: int
    declared_at: str | None
    electorate: int | None
    candidates: tuple[PaCandidate, ...]


@dataclass(frozen=True, slots=True)
class PaRush:
    seat: PaSeat
    candidates: tuple[PaCandidate, ...]
    winning_party: str | None


@dataclass(frozen=True, slots=True)
class PaRecount:
    seat: PaSeat


@dataclass(frozen=True, slots=True)
class PaPartyTotals:
    party: str
    seats: int
    gains: int
    losses: int


@dataclass(frozen=True, slots=True)
class PaStateOfParties:
    results: int
    parties: tuple[PaPartyTotals, ...]
    seats: tuple[PaSeat, ...]


PaFile = PaResult | PaRush | PaRecount | PaStateOfParties


def parse_pa(content: bytes) -> PaFile:
    """Read one PA file; raises PaFileError with the reason (hostile, malformed, incomplete)."""
    try:
        root = SafeET.fromstring(content, forbid_dtd=False)
    except defusedxml.DefusedXmlException as exc:
        raise PaFileError(f"hostile XML refused: {type(exc).__name__} ({exc})") from None
    except ET.ParseError as exc:
        raise PaFileError(f"malformed XML: {exc}") from None
    if root.tag == RESULT:
        return _result(root)
    if root.tag == RUSH:
        return _rush(root)
    if root.tag == RECOUNT:
        return PaRecount(_seat(_one(root, "Constituency")))
    if root.tag == STATE_OF_PARTIES:
        return _state_of_parties(root)
    raise PaFileError(f"unknown root element <{root.tag}> (expected one of {', '.join(ROOTS)})")


def _result(root: ET.Element) -> PaResult:
    revision = _int(root, "revision", default=1)
    if revision < 1:
        raise PaFileError(f"<{root.tag}> revision must be 1 or more, not {revision}")
    seat_element = _one(root, "Constituency")
    candidates = _candidates(seat_element, with_votes=True)
    if not candidates:
        raise PaFileError(f"{_seat(seat_element)}: a result with no <Candidate>")
    return PaResult(
        seat=_seat(seat_element),
        revision=revision,
        declared_at=root.get("declarationTime") or None,
        electorate=_int(seat_element, "electorate") if seat_element.get("electorate") else None,
        candidates=candidates,
    )


def _rush(root: ET.Element) -> PaRush:
    seat_element = _one(root, "Constituency")
    return PaRush(
        seat=_seat(seat_element),
        candidates=_candidates(seat_element, with_votes=False),
        winning_party=seat_element.get("winningPartyAbbreviation") or None,
    )


def _state_of_parties(root: ET.Element) -> PaStateOfParties:
    parties = tuple(
        PaPartyTotals(
            party=_text(element, "abbreviation"),
            seats=_int(element, "totalSeats", default=0),
            gains=_int(element, "gains", default=0),
            losses=_int(element, "losses", default=0),
        )
        for element in root.iterfind(".//Parties/Party")
    )
    seats = tuple(_seat(e) for e in root.iterfind(".//ConstituenciesIncluded/Constituency"))
    return PaStateOfParties(
        results=_int(root, "numberOfResults", default=len(seats)), parties=parties, seats=seats
    )


def _candidates(seat: ET.Element, *, with_votes: bool) -> tuple[PaCandidate, ...]:
    found: list[PaCandidate] = []
    for number, element in enumerate(seat.iterfind("Candidate"), start=1):
        party = element.find("Party")
        if party is None:
            raise PaFileError(f"{_seat(seat)}: candidate {number} has no <Party>")
        first = (element.get("firstName") or "").strip()
        surname = (element.get("surname") or "").strip()
        name = " ".join(part for part in (first, surname) if part)
        name = name or (element.get("ballotName") or "").strip()
        if not name:
            raise PaFileError(f"{_seat(seat)}: candidate {number} has no name")
        found.append(
            PaCandidate(
                name=name,
                party=_text(party, "abbreviation"),
                votes=_int(party, "votes") if with_votes else None,
                elected=(element.get("elected") or "").strip() == "*",
            )
        )
    return tuple(found)


def _seat(element: ET.Element) -> PaSeat:
    number = (element.get("number") or "").strip() or None
    name = (element.get("name") or "").strip() or None
    if number is None and name is None:
        raise PaFileError("a <Constituency> with neither a number nor a name")
    return PaSeat(number, name)


def _one(root: ET.Element, tag: str) -> ET.Element:
    found = root.find(f".//{tag}")
    if found is None:
        raise PaFileError(f"<{root.tag}> has no <{tag}>")
    return found


def _text(element: ET.Element, attribute: str) -> str:
    value = (element.get(attribute) or "").strip()
    if not value:
        raise PaFileError(f"<{element.tag}> has no {attribute!r}")
    return value


def _int(element: ET.Element, attribute: str, default: int | None = None) -> int:
    raw = element.get(attribute)
    if raw is None or not raw.strip():
        if default is None:
            raise PaFileError(f"<{element.tag}> has no {attribute!r}")
        return default
    text = raw.strip()
    if not text.isascii() or not text.isdigit():
        raise PaFileError(f"<{element.tag}> {attribute}={raw!r} is not a whole number")
    return int(text)
