"""Checks on the bundled election definitions and nights in service/data.

These read the generated files with the standard json module only; no Redis is needed.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from service import data
from service.data import build

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "service" / "data"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
NAMES = ["uk-2017", "uk-2019", "uk-2024"]


def load_definition(name: str) -> dict[str, Any]:
    with (DATA_DIR / f"{name}.election.json").open(encoding="utf-8") as f:
        result: dict[str, Any] = json.load(f)
    return result


def load_night(name: str) -> list[dict[str, Any]]:
    with (DATA_DIR / f"{name}.night.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def declarations(name: str) -> list[dict[str, Any]]:
    return [e for e in load_night(name) if e["type"] == "declaration"]


def top_counts(name: str) -> Counter[str]:
    return Counter(d["candidates"][0]["party"] for d in declarations(name))


def test_available_and_paths() -> None:
    assert data.available() == NAMES
    for name in NAMES:
        assert data.election_path(name).is_file()
        assert data.night_path(name).is_file()
    assert data.election_path() == DATA_DIR.resolve() / "uk-2024.election.json"
    assert data.night_path() == DATA_DIR.resolve() / "uk-2024.night.jsonl"
    with pytest.raises(ValueError):
        data.election_path("uk-1997")


@pytest.mark.parametrize("name", NAMES)
def test_definition_shape(name: str) -> None:
    definition = load_definition(name)
    assert definition["id"] == name
    assert "Open Parliament Licence v3.0" in definition["attribution"]
    assert "\n" not in definition["source"]
    seats = definition["constituencies"]
    assert len(seats) == 650
    ids = [s["id"] for s in seats]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert definition["majority"] == len(seats) // 2 + 1 == 326
    for seat in seats:
        assert set(seat) == {"id", "name", "region", "nation", "electorate", "previous"}
        assert isinstance(seat["electorate"], int) and seat["electorate"] > 0
    for party in definition["parties"].values():
        assert party["name"]
        assert len(party["colour"]) == 7 and party["colour"].startswith("#")


@pytest.mark.parametrize("name", NAMES)
def test_every_party_is_defined(name: str) -> None:
    parties = load_definition(name)["parties"]
    night = load_night(name)
    used = {s["previous"] for s in load_definition(name)["constituencies"]}
    used |= {c["party"] for d in declarations(name) for c in d["candidates"]}
    assert set(parties) == used
    assert set(night[0]["seats"]) <= set(parties)


@pytest.mark.parametrize("name", NAMES)
def test_night_covers_every_seat_once(name: str) -> None:
    night = load_night(name)
    assert night[0]["type"] == "exit_poll"
    assert sum(night[0]["seats"].values()) == 650
    assert all(e["type"] == "declaration" for e in night[1:])
    declared = [d["constituency"] for d in night[1:]]
    assert sorted(declared) == sorted(s["id"] for s in load_definition(name)["constituencies"])
    assert len(set(declared)) == len(declared)


@pytest.mark.parametrize("name", NAMES)
def test_night_is_in_time_order(name: str) -> None:
    decls = declarations(name)
    keys = [(datetime.fromisoformat(d["declared_at"]), d["constituency"]) for d in decls]
    assert all(k[0].tzinfo is not None for k in keys)
    assert keys == sorted(keys)
    exit_poll = datetime.fromisoformat(load_night(name)[0]["published_at"])
    assert exit_poll < keys[0][0]


@pytest.mark.parametrize("name", NAMES)
def test_declarations_are_valid(name: str) -> None:
    electorates = {s["id"]: s["electorate"] for s in load_definition(name)["constituencies"]}
    for d in declarations(name):
        candidates = d["candidates"]
        assert "revision" not in d
        assert d["electorate"] == electorates[d["constituency"]]
        votes = [c["votes"] for c in candidates]
        assert all(isinstance(v, int) and v >= 0 for v in votes)
        assert votes == sorted(votes, reverse=True)
        pairs = [(c["name"], c["party"]) for c in candidates]
        assert len(set(pairs)) == len(pairs)
        tied = len(votes) > 1 and votes[0] == votes[1]
        assert tied == ("winner" in d)


def test_2024_results() -> None:
    assert top_counts("uk-2024") == {
        "LAB": 411, "CON": 121, "LD": 72, "SNP": 9, "SF": 7, "IND": 6, "DUP": 5,
        "RUK": 5, "GRN": 4, "PC": 4, "SDLP": 2, "APNI": 1, "UUP": 1, "TUV": 1, "SPK": 1,
    }  # fmt: skip
    previous = Counter(s["previous"] for s in load_definition("uk-2024")["constituencies"])
    assert previous == {
        "CON": 372, "LAB": 200, "SNP": 48, "LD": 8, "DUP": 8, "SF": 7,
        "PC": 2, "SDLP": 2, "GRN": 1, "APNI": 1, "SPK": 1,
    }  # fmt: skip
    peterborough = next(d for d in declarations("uk-2024") if d["constituency"] == "E14001425")
    assert peterborough["candidates"][:2] == [
        {"name": "Andrew Pakes", "party": "LAB", "votes": 13418},
        {"name": "Paul Bristow", "party": "CON", "votes": 13300},
    ]
    seats = {s["id"]: s["name"] for s in load_definition("uk-2024")["constituencies"]}
    first = [seats[d["constituency"]] for d in declarations("uk-2024")[:3]]
    assert first == ["Houghton and Sunderland South", "Blyth and Ashington", "Sunderland Central"]


def test_2019_and_2017_results() -> None:
    assert top_counts("uk-2019")["CON"] == 365
    assert top_counts("uk-2019")["LAB"] == 202
    assert top_counts("uk-2017")["CON"] == 317
    assert top_counts("uk-2017")["LAB"] == 262


def test_build_reproduces_bundled_files(tmp_path: Path) -> None:
    if not (SHARED_DATA / "ge2024_constituencies.csv").is_file():
        pytest.skip(f"source data not found at {SHARED_DATA} (shared/ beside the repository)")
    written = build.build(SHARED_DATA, tmp_path)
    assert sorted(p.name for p in written) == sorted(
        f"{name}{suffix}" for name in NAMES for suffix in (".election.json", ".night.jsonl")
    )
    for path in written:
        assert path.read_bytes() == (DATA_DIR / path.name).read_bytes(), path.name
