"""PA's seats and parties onto the election definition, and PA records into stream events.

Seats are found by PA's number through a ``--map`` file when one is given, else by name after
folding case, accents, ``&``/``and``, punctuation and spacing; a number once seen beside a name
is remembered, so a recount file that gives only the number still maps. Parties are found by
the definition's codes and ``aliases``, then PA's usual abbreviations (:data:`PA_PARTIES`), then
the definition's ``other_party``. Anything else raises :class:`UnmappedError`: nothing is guessed.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from clients.pa.files import (
    PaCandidate,
    PaFile,
    PaFileError,
    PaRecount,
    PaResult,
    PaRush,
    PaSeat,
    PaStateOfParties,
)
from service.core.election import Election

SOURCE = "PA"
RECOUNT_NOTE = "Recount (PA)"

#: PA Media's abbreviations for the parties of UK general elections -> the usual codes.
PA_PARTIES: Mapping[str, str] = {
    "Lab": "LAB",
    "C": "CON",
    "LD": "LD",
    "SNP": "SNP",
    "PC": "PC",
    "Green": "GRN",
    "Reform": "RUK",
    "UKIP": "UKIP",
    "SF": "SF",
    "DUP": "DUP",
    "SDLP": "SDLP",
    "Alliance": "APNI",
    "UUP": "UUP",
    "TUV": "TUV",
    "Ind": "IND",
    "Speaker": "SPK",
}


class UnmappedError(PaFileError):
    """A seat or party that the definition (and the map) cannot place."""


class MapFileError(ValueError):
    """A ``--map`` file that cannot be used; the message names the file and line."""


def fold_name(name: str) -> str:
    """``"Ynys Môn"`` -> ``"ynys mon"``; ``"Richmond & Northallerton"`` -> ``"... and ..."``."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = text.casefold().replace("&", " and ")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def read_seat_map(path: Path, election: Election) -> dict[str, str]:
    """A CSV of PA number -> constituency id (header ``number,id``); raises MapFileError."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise MapFileError(f"{path}: cannot read: {exc}") from exc
    rows = csv.DictReader(text.splitlines())
    if rows.fieldnames is None or not {"number", "id"} <= set(rows.fieldnames):
        raise MapFileError(f"{path}: the first line must be the header 'number,id'")
    numbers: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        number, seat = (row.get("number") or "").strip(), (row.get("id") or "").strip()
        if not number or seat not in election.constituencies:
            raise MapFileError(f"{path}:{line}: {seat!r} is not a constituency of {election.id}")
        if numbers.setdefault(number, seat) != seat:
            raise MapFileError(f"{path}:{line}: number {number} is mapped twice")
    return numbers


@dataclass(frozen=True, slots=True)
class Mapped:
    """The stream event for one file, and the PA abbreviations counted as the other party."""

    event: dict[str, Any]
    others: frozenset[str]


class Mapper:
    def __init__(self, election: Election, numbers: Mapping[str, str] | None = None) -> None:
        self.election = election
        self._numbers = dict(numbers or {})
        self._fixed_numbers = numbers is not None
        self._names: dict[str, str | None] = {}
        for seat in election.constituencies.values():
            folded = fold_name(seat.name)
            # Two seats with one folded name map neither: that needs a --map.
            self._names[folded] = None if folded in self._names else seat.id

    def seat(self, seat: PaSeat) -> str:
        """The constituency id for a PA seat; raises UnmappedError."""
        if self._fixed_numbers and seat.number is not None:
            if seat.number not in self._numbers:
                raise UnmappedError(f"{seat}: number {seat.number} is not in the --map file")
            return self._numbers[seat.number]
        if seat.name is None:
            # Without a map the name decides; a number alone only maps once seen beside one.
            if seat.number is None or seat.number not in self._numbers:
                raise UnmappedError(f"{seat}: no name, and the number was not seen before")
            return self._numbers[seat.number]
        folded = fold_name(seat.name)
        if folded not in self._names:
            raise UnmappedError(f"{seat}: no constituency of {self.election.id} by that name")
        found = self._names[folded]
        if found is None:
            raise UnmappedError(f"{seat}: more than one constituency has that name; use --map")
        if seat.number is not None:
            self._numbers.setdefault(seat.number, found)
        return found

    def learn(self, seat: PaSeat) -> None:
        """Remember the seat's number if its name maps; never raises."""
        if seat.number is not None and seat.name is not None and not self._fixed_numbers:
            try:
                self.seat(seat)
            except UnmappedError:
                pass

    def party(self, abbreviation: str, where: object) -> tuple[str, bool]:
        """The party code, and whether it is the definition's other party standing in."""
        election = self.election
        code = election.party_code(abbreviation)
        if code is None and PA_PARTIES.get(abbreviation) in election.parties:
            code = PA_PARTIES[abbreviation]
        if code is not None:
            return election.parties[code].code, False
        if election.other_party is not None:
            return election.other_party, True
        raise UnmappedError(
            f"{where}: party {abbreviation!r} is not in {election.id} and it names no other_party"
        )

    def to_event(self, pa: PaFile) -> Mapped:
        """The stream event (canonical codes and ids) for one file; raises UnmappedError."""
        if isinstance(pa, PaResult):
            return self._declaration(pa)
        if isinstance(pa, PaRush):
            return self._flash(pa)
        if isinstance(pa, PaRecount):
            seat = self.seat(pa.seat)
            status = {"type": "status", "constituency": seat, "status": "recount"}
            return Mapped({**status, "note": RECOUNT_NOTE}, frozenset())
        return self._state_of_parties(pa)

    def _candidates(
        self, seat: PaSeat, candidates: tuple[PaCandidate, ...], others: set[str]
    ) -> list[tuple[PaCandidate, str]]:
        mapped: list[tuple[PaCandidate, str]] = []
        for candidate in candidates:
            code, other = self.party(candidate.party, seat)
            if other:
                others.add(candidate.party)
            mapped.append((candidate, code))
        return mapped

    def _declaration(self, pa: PaResult) -> Mapped:
        seat_id = self.seat(pa.seat)
        others: set[str] = set()
        candidates = self._candidates(pa.seat, pa.candidates, others)
        event: dict[str, Any] = {
            "type": "declaration",
            "constituency": seat_id,
            "candidates": [{"name": c.name, "party": p, "votes": c.votes} for c, p in candidates],
            "revision": pa.revision,
        }
        if pa.declared_at is not None:
            try:
                datetime.fromisoformat(pa.declared_at)
            except ValueError:
                raise UnmappedError(
                    f"{pa.seat}: declarationTime {pa.declared_at!r} is not an ISO 8601 time"
                ) from None
            event["declared_at"] = pa.declared_at
        if pa.electorate is not None:
            event["electorate"] = pa.electorate
        top = max(c.votes or 0 for c, _ in candidates)
        if sum(1 for c, _ in candidates if c.votes == top) > 1:
            # A tie settled by lot: only the file's elected="*" says who won.
            elected = [(c, p) for c, p in candidates if c.elected and c.votes == top]
            if len(elected) != 1:
                raise UnmappedError(
                    f"{pa.seat}: a tie on {top} votes with {len(elected)} of the tied elected"
                )
            event["winner"] = {"name": elected[0][0].name, "party": elected[0][1]}
        return Mapped(event, frozenset(others))

    def _flash(self, pa: PaRush) -> Mapped:
        seat_id = self.seat(pa.seat)
        others: set[str] = set()
        elected = [(c, p) for c, p in self._candidates(pa.seat, pa.candidates, others) if c.elected]
        if len(elected) != 1:
            raise UnmappedError(
                f"{pa.seat}: a rush must mark one candidate elected, not {len(elected)}"
            )
        ((candidate, party),) = elected
        winner = {"name": candidate.name, "party": party}
        event = {"type": "flash", "constituency": seat_id, "winner": winner}
        return Mapped(event, frozenset(others & {candidate.party}))

    def _state_of_parties(self, pa: PaStateOfParties) -> Mapped:
        seats = [self.seat(seat) for seat in pa.seats]
        if len(set(seats)) != len(seats):
            raise UnmappedError("state of parties: a constituency is included twice")
        others: set[str] = set()
        parties: dict[str, dict[str, int]] = {}
        for totals in pa.parties:
            code, other = self.party(totals.party, "state of parties")
            if other:
                others.add(totals.party)
            figures = parties.setdefault(code, {"seats": 0, "gains": 0, "losses": 0})
            figures["seats"] += totals.seats
            figures["gains"] += totals.gains
            figures["losses"] += totals.losses
        event = {
            "type": "state_of_parties",
            "source": SOURCE,
            "constituencies": seats,
            "parties": parties,
        }
        return Mapped(event, frozenset(others))
