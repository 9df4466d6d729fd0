"""The bundled election definitions and election nights (see README.md in this folder)."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
_ELECTION_SUFFIX = ".election.json"
_NIGHT_SUFFIX = ".night.jsonl"

__all__ = ["available", "election_path", "night_path"]


def available() -> list[str]:
    """Names of the bundled elections, sorted, e.g. ``["uk-2017", "uk-2019", "uk-2024"]``."""
    return sorted(p.name.removesuffix(_ELECTION_SUFFIX) for p in _HERE.glob(f"*{_ELECTION_SUFFIX}"))


def _bundled(name: str, suffix: str) -> Path:
    if name not in available():
        raise ValueError(f"no bundled election {name!r}; bundled: {', '.join(available())}")
    return _HERE / f"{name}{suffix}"


def election_path(name: str = "uk-2024") -> Path:
    """Path of a bundled election definition (``<name>.election.json``)."""
    return _bundled(name, _ELECTION_SUFFIX)


def night_path(name: str = "uk-2024") -> Path:
    """Path of a bundled election night, one stream event per line (``<name>.night.jsonl``)."""
    return _bundled(name, _NIGHT_SUFFIX)
