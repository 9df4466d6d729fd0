"""Build the bundled election definitions and election nights from the Library CSVs.

Run ``python -m service.data.build`` from the repository root. It reads the cleaned House of
Commons Library results in ``shared/data`` (found beside the repository unless ``--source`` is
given) and writes, for each of 2024, 2019 and 2017:

* ``uk-YYYY.election.json``: the election definition (see DESIGN.md, "Election definition");
* ``uk-YYYY.night.jsonl``: the night as stream events, one JSON object per line: the exit poll,
  then one declaration per constituency in the order of the night.

The output is deterministic: the same input gives the same bytes on every run.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from service.data.elections import (
    ABSTAINING_PARTIES,
    ALIASES,
    ATTRIBUTION,
    BAD_ALT_TIMES_2024,
    NON_VOTING_SEATS,
    OTHER_PARTY,
    PARTIES,
    YEARS,
    Year,
)

SENTINEL_FILE = "ge2024_constituencies.csv"


class BuildError(Exception):
    """The source data is not as expected."""


def find_source() -> Path | None:
    """The ``shared/data`` folder beside the repository (or one of its ancestors), if any."""
    here = Path(__file__).resolve().parent
    for folder in (here, *here.parents):
        candidate = folder / "shared" / "data"
        if (candidate / SENTINEL_FILE).is_file():
            return candidate
    return None


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _timestamp(value: str, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BuildError(f"{where}: bad time {value!r}") from exc
    if moment.tzinfo is None:
        raise BuildError(f"{where}: time {value!r} has no UTC offset")
    return moment


def _declaration_time(row: dict[str, str], use_alt: bool) -> datetime:
    where = f"{row['code']} {row['name']}"
    alt = row.get("declaration_time_alt", "")
    if use_alt and alt and row["code"] not in BAD_ALT_TIMES_2024:
        return _timestamp(alt, where)
    return _timestamp(row["declaration_time"], where)


def _party(code: str, where: str) -> str:
    if code not in PARTIES:
        raise BuildError(f"{where}: unknown party code {code!r}")
    return code


def build_year(spec: Year, source: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return the election definition and the night's events for one year."""
    seats = _read_csv(source / f"ge{spec.year}_constituencies.csv")
    rows = _read_csv(source / f"ge{spec.year}_candidates.csv")
    seats.sort(key=lambda r: r["code"])

    known = {r["code"] for r in seats}
    if len(known) != len(seats):
        raise BuildError(f"{spec.year}: duplicate constituency codes")

    candidates: dict[str, list[dict[str, Any]]] = {code: [] for code in known}
    for row in rows:
        code = row["constituency_code"]
        if code not in candidates:
            raise BuildError(f"{spec.year}: candidate for unknown constituency {code}")
        votes = int(row["votes"])
        if votes < 0:
            raise BuildError(f"{spec.year} {code}: negative votes")
        candidates[code].append(
            {
                "name": row["candidate_name"],
                "party": _party(row["party_code"], f"{spec.year} {code}"),
                "votes": votes,
            }
        )

    used: set[str] = set()
    constituencies: list[dict[str, Any]] = []
    declarations: list[tuple[datetime, str, dict[str, Any]]] = []
    for seat in seats:
        code = seat["code"]
        where = f"{spec.year} {code} {seat['name']}"
        previous = _party(seat["previous_winner_party"], where)
        used.add(previous)
        electorate = int(seat["electorate"])
        constituencies.append(
            {
                "id": code,
                "name": seat["name"],
                "region": seat["region"],
                "nation": seat["nation"],
                "electorate": electorate,
                "previous": previous,
            }
        )

        field = candidates[code]
        if not field:
            raise BuildError(f"{where}: no candidates")
        # Keep the CSV's order (votes, highest first); a stable sort only guards against drift.
        field.sort(key=lambda c: -int(c["votes"]))
        pairs = Counter((c["name"], c["party"]) for c in field)
        twice = [pair for pair, n in pairs.items() if n > 1]
        if twice:
            raise BuildError(f"{where}: same candidate name and party twice: {twice}")
        used.update(c["party"] for c in field)
        top = field[0]
        if top["party"] != seat["winner_party"] or top["name"] != seat["winner_name"]:
            raise BuildError(f"{where}: top candidate is not the listed winner")

        moment = _declaration_time(seat, spec.use_alt_times)
        event: dict[str, Any] = {
            "type": "declaration",
            "constituency": code,
            "candidates": field,
            "declared_at": moment.isoformat(timespec="seconds"),
            "electorate": electorate,
        }
        if len(field) > 1 and field[1]["votes"] == top["votes"]:
            # A tie at the top: the service needs to be told who was elected.
            event["winner"] = {"name": seat["winner_name"], "party": seat["winner_party"]}
        declarations.append((moment, code, event))

    for party in spec.exit_poll:
        _party(party, f"{spec.year} exit poll")
    missing = set(spec.exit_poll) - used
    if missing:
        raise BuildError(f"{spec.year}: exit poll parties with no candidates: {sorted(missing)}")

    definition: dict[str, Any] = {
        "id": f"uk-{spec.year}",
        "name": spec.name,
        "attribution": ATTRIBUTION,
        "source": spec.source,
        "parties": {
            code: _party_entry(code, name, colour)
            for code, (name, colour) in PARTIES.items()
            if code in used or code == OTHER_PARTY
        },
        "constituencies": constituencies,
        "majority": len(constituencies) // 2 + 1,
        "other_party": OTHER_PARTY,
        "non_voting_seats": NON_VOTING_SEATS,
        "abstaining_parties": [code for code in ABSTAINING_PARTIES if code in used],
    }

    declarations.sort(key=lambda item: (item[0], item[1]))
    night: list[dict[str, Any]] = [
        {
            "type": "exit_poll",
            "seats": dict(spec.exit_poll),
            "published_at": spec.exit_poll_published_at,
        }
    ]
    night.extend(event for _, _, event in declarations)
    return definition, night


def _party_entry(code: str, name: str, colour: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "colour": colour}
    if code in ALIASES:
        entry["aliases"] = list(ALIASES[code])
    return entry


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def render_definition(definition: dict[str, Any]) -> str:
    """The definition as JSON: one key per line, one party or constituency per line."""
    lines = ["{"]
    items = list(definition.items())
    for index, (key, value) in enumerate(items):
        comma = "," if index < len(items) - 1 else ""
        if key == "parties":
            lines.append(f" {_dumps(key)}: {{")
            parties = list(value.items())
            for i, (code, party) in enumerate(parties):
                sep = "," if i < len(parties) - 1 else ""
                lines.append(f"  {_dumps(code)}: {_dumps(party)}{sep}")
            lines.append(f" }}{comma}")
        elif key == "constituencies":
            lines.append(f" {_dumps(key)}: [")
            for i, seat in enumerate(value):
                sep = "," if i < len(value) - 1 else ""
                lines.append(f"  {_dumps(seat)}{sep}")
            lines.append(f" ]{comma}")
        else:
            lines.append(f" {_dumps(key)}: {_dumps(value)}{comma}")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    if json.loads(text) != definition:  # the hand layout must still be exactly the data
        raise BuildError("definition did not survive its own layout")
    return text


def render_night(night: list[dict[str, Any]]) -> str:
    """The night as JSON Lines."""
    return "".join(_dumps(event) + "\n" for event in night)


def _write(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def build(source: Path, out: Path) -> list[Path]:
    """Build every bundled year from ``source`` into ``out``; return the files written."""
    built = [(spec, *build_year(spec, source)) for spec in YEARS]  # read everything first
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for spec, definition, night in built:
        election_file = out / f"uk-{spec.year}.election.json"
        night_file = out / f"uk-{spec.year}.night.jsonl"
        _write(election_file, render_definition(definition))
        _write(night_file, render_night(night))
        written += [election_file, night_file]
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.data.build",
        description="Regenerate the bundled election definitions and nights (2024, 2019, 2017).",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="folder holding geYYYY_constituencies.csv and geYYYY_candidates.csv "
        "(default: the shared/data folder beside the repository)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="folder to write into (default: service/data)",
    )
    args = parser.parse_args(argv)
    source: Path | None = args.source if args.source is not None else find_source()
    if source is None:
        parser.error("could not find shared/data beside the repository; pass --source DIR")
    try:
        written = build(source, args.out)
    except (BuildError, OSError, KeyError, ValueError) as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
