"""A planned night written out as PA Media XML files, for rehearsals and tests.

``python -m clients.feeder --format pa --out DIR`` uses this to drop a night into a folder at
the night's pace, the way PA's FTP drop fills up: a rush file for each flash, a recount file for
each recount, a result file for each declaration (a correction is the next revision), and a
state-of-parties file every 50 results and at the close. The files are made from the bundled
data with PA's own habits: its party abbreviations, its seat numbers (here simply the seat's
place in the definition), and names that differ from the definition's in the ways PA's do
(``&`` for ``and``, capitals) on some seats.
"""

from __future__ import annotations

import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from clients.night import Planned
from clients.pa.files import RECOUNT, RESULT, RUSH, STATE_OF_PARTIES
from clients.pa.mapping import PA_PARTIES
from service.core.election import Election, slugify

STATE_OF_PARTIES_EVERY = 50
_PA_ABBREVIATIONS = {code: abbreviation for abbreviation, code in PA_PARTIES.items()}


@dataclass(frozen=True, slots=True)
class PaOutput:
    at: datetime
    name: str
    content: bytes


def seat_numbers(election: Election) -> dict[str, str]:
    """Constituency id -> the PA number the writer gives it (its place in the definition)."""
    return {seat: str(n) for n, seat in enumerate(election.constituencies, start=1)}


class PaWriter:
    """Turns a plan (see :func:`clients.night.plan_night`) into PA files; pure."""

    def __init__(self, election: Election, *, vary_names: bool = True) -> None:
        self.election = election
        self.numbers = seat_numbers(election)
        self.vary_names = vary_names
        self.prefix = slugify(election.id).replace("-", "")

    def abbreviation(self, code: str) -> str:
        """PA's abbreviation for a party code (PA's ``Oth`` for the other party)."""
        if code == self.election.other_party:
            return "Oth"
        return _PA_ABBREVIATIONS.get(code, code)

    def seat_name(self, seat_id: str) -> str:
        name = self.election.constituencies[seat_id].name
        place = int(self.numbers[seat_id])
        if self.vary_names and place % 3 == 0:
            name = name.replace(" and ", " & ")
        if self.vary_names and place % 7 == 0:
            name = name.upper()
        return name

    def files(self, plan: Sequence[Planned]) -> list[PaOutput]:
        """Every file of the night, in the order (and at the moment) PA would send it."""
        return list(self._files(plan))

    def _files(self, plan: Sequence[Planned]) -> Iterator[PaOutput]:
        declarations = {
            item.event["constituency"]: item.event
            for item in plan
            if item.event.get("type") == "declaration"
        }
        revisions: dict[str, int] = {}
        declared: dict[str, dict[str, Any]] = {}
        at = plan[0].at if plan else datetime.now().astimezone()
        sent = 0
        for item in plan:
            event, at = item.event, item.at
            kind, seat = event.get("type"), event.get("constituency")
            if not isinstance(seat, str) or seat not in self.election.constituencies:
                continue  # an exit poll, or an event PA has no file for
            slug = slugify(self.election.constituencies[seat].name)
            if kind == "declaration":
                revisions[seat] = revisions.get(seat, 0) + 1
                first = seat not in declared
                declared[seat] = event
                name = f"{self.prefix}_result_{slug}_{revisions[seat]}.xml"
                yield PaOutput(at, name, self.result(event, revisions[seat], at))
                if first and len(declared) % STATE_OF_PARTIES_EVERY == 0:
                    sent += 1
                    yield self._state_of_parties(at, sent, declared)
            elif kind == "flash":
                rush = self.rush(event, declarations.get(seat), at)
                yield PaOutput(at, f"{self.prefix}_rush_{slug}.xml", rush)
            elif kind == "status" and event.get("status") == "recount":
                yield PaOutput(at, f"{self.prefix}_recount_{slug}.xml", self.recount(seat, at))
        if declared:
            yield self._state_of_parties(at, sent + 1, declared)

    def _state_of_parties(
        self, at: datetime, sent: int, declared: Mapping[str, Mapping[str, Any]]
    ) -> PaOutput:
        name = f"{self.prefix}_stateofparties_{sent:02d}_{len(declared)}.xml"
        return PaOutput(at, name, self.state_of_parties(declared, at))

    # ------------------------------------------------------------------ one file each

    def result(self, declaration: Mapping[str, Any], revision: int, at: datetime) -> bytes:
        seat_id = declaration["constituency"]
        seat = self.election.constituencies[seat_id]
        candidates = declaration["candidates"]
        winner = _winner(declaration)
        valid = sum(c["votes"] for c in candidates)
        ranked = sorted((c["votes"] for c in candidates), reverse=True)
        electorate = declaration.get("electorate", seat.electorate)
        root = ET.Element(RESULT, revision=str(revision))
        root.set("declarationTime", declaration.get("declared_at") or at.isoformat())
        constituency = ET.SubElement(
            self._election(root, at),
            "Constituency",
            number=self.numbers[seat_id],
            name=self.seat_name(seat_id),
            electorate=str(electorate),
            turnout=f"{100 * valid / electorate:.2f}" if electorate else "0",
            winningParty=self.abbreviation(winner["party"]),
            sittingParty=self.abbreviation(seat.previous),
            gainOrHold="hold" if winner["party"] == seat.previous else "gain",
            majority=str(ranked[0] - ranked[1] if len(ranked) > 1 else ranked[0]),
        )
        for candidate in candidates:
            elected = (candidate["name"], candidate["party"]) == (winner["name"], winner["party"])
            element = self._candidate(constituency, candidate, elected)
            party = element.find("Party")
            assert party is not None
            party.set("votes", str(candidate["votes"]))
            party.set(
                "percentageShare", f"{100 * candidate['votes'] / valid:.2f}" if valid else "0"
            )
        return _serialise(root)

    def rush(
        self, flash: Mapping[str, Any], declaration: Mapping[str, Any] | None, at: datetime
    ) -> bytes:
        seat_id = flash["constituency"]
        winner = flash["winner"]
        root = ET.Element(RUSH)
        constituency = ET.SubElement(
            self._election(root, at),
            "Constituency",
            number=self.numbers[seat_id],
            name=self.seat_name(seat_id),
            winningPartyAbbreviation=self.abbreviation(winner["party"]),
        )
        field = declaration["candidates"] if declaration is not None else [winner]
        for candidate in field:
            elected = (candidate["name"], candidate["party"]) == (winner["name"], winner["party"])
            self._candidate(constituency, candidate, elected)
        return _serialise(root)

    def recount(self, seat_id: str, at: datetime) -> bytes:
        root = ET.Element(RECOUNT)
        ET.SubElement(
            self._election(root, at),
            "Constituency",
            number=self.numbers[seat_id],
            name=self.seat_name(seat_id),
        )
        return _serialise(root)

    def state_of_parties(self, declared: Mapping[str, Mapping[str, Any]], at: datetime) -> bytes:
        """Seats, gains and losses over ``declared`` (seat -> its latest declaration)."""
        totals: dict[str, dict[str, int]] = {}
        for seat_id, declaration in declared.items():
            winner = _winner(declaration)["party"]
            previous = self.election.constituencies[seat_id].previous
            _count(totals, winner, "totalSeats")
            if winner != previous:
                _count(totals, winner, "gains")
                _count(totals, previous, "losses")
        root = ET.Element(
            STATE_OF_PARTIES,
            numberOfResults=str(len(declared)),
            totalNumberOfConstituencies=str(self.election.total_seats),
        )
        election = self._election(root, at)
        parties = ET.SubElement(election, "Parties")
        for code, figures in totals.items():
            party = ET.SubElement(parties, "Party", abbreviation=self.abbreviation(code))
            for attribute, value in figures.items():  # absent means 0, as in PA's files
                party.set(attribute, str(value))
        included = ET.SubElement(election, "ConstituenciesIncluded")
        for seat_id in declared:
            ET.SubElement(
                included, "Constituency", number=self.numbers[seat_id], name=self.seat_name(seat_id)
            )
        return _serialise(root)

    def _election(self, root: ET.Element, at: datetime) -> ET.Element:
        return ET.SubElement(
            root, "Election", name=self.election.name, date=at.date().isoformat(), type="G"
        )

    def _candidate(
        self, constituency: ET.Element, candidate: Mapping[str, Any], elected: bool
    ) -> ET.Element:
        first, _, surname = str(candidate["name"]).rpartition(" ")
        element = ET.SubElement(
            constituency,
            "Candidate",
            firstName=first,
            surname=surname,
            ballotName=str(candidate["name"]),
        )
        if elected:
            element.set("elected", "*")
        code = candidate["party"]
        party = self.election.parties.get(code)
        ET.SubElement(
            element,
            "Party",
            abbreviation=self.abbreviation(code),
            name=party.name if party is not None else code,
        )
        return element


def write_night_files(
    outputs: Sequence[PaOutput],
    out: Path,
    *,
    speed: float,
    max_gap: float,
    sleep: Callable[[float], bool],
    on_file: Callable[[PaOutput], None] = lambda output: None,
) -> int:
    """Write the files into ``out`` at the night's pace; each appears whole (renamed into place).

    ``sleep(seconds)`` waits and returns False when asked to stop. Returns how many were written.
    """
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    due = 0.0
    previous = outputs[0].at if outputs else None
    written = 0
    for output in outputs:
        if previous is not None and speed > 0:
            wait = max(0.0, (output.at - previous).total_seconds()) / speed
            due += min(wait, max_gap) if max_gap > 0 else wait
        previous = output.at
        if not sleep(start + due - time.monotonic()):
            break
        partial = out / f".{output.name}.part"
        partial.write_bytes(output.content)
        os.replace(partial, out / output.name)
        written += 1
        on_file(output)
    return written


def _winner(declaration: Mapping[str, Any]) -> dict[str, Any]:
    named = declaration.get("winner")
    if isinstance(named, dict):
        return {"name": named["name"], "party": named["party"]}
    top = max(declaration["candidates"], key=lambda c: c["votes"])
    return {"name": top["name"], "party": top["party"]}


def _count(totals: dict[str, dict[str, int]], party: str, field: str) -> None:
    figures = totals.setdefault(party, {})
    figures[field] = figures.get(field, 0) + 1


def _serialise(root: ET.Element) -> bytes:
    ET.indent(root)
    content: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return content + b"\n"
