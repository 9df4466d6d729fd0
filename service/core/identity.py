"""When two spellings are one: names, candidates and times as the core compares them.

Feeds write one result in many ways: a name in Unicode NFC or NFD, with a doubled or a
trailing space; a time in UTC or with a local offset. The feed's own spelling is what is
shown; these keys are what is compared, so that a resend written another way is a repeat
rather than a correction, and one candidate written two ways is caught as listed twice.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.core.events import Candidate  # events imports this module


def name_key(name: str) -> str:
    """``name`` as compared: Unicode NFC, trimmed, each run of inner whitespace one space."""
    if _is_plain(name):
        return name
    return " ".join(unicodedata.normalize("NFC", name).split())


def candidate_key(name: str, party: str) -> tuple[str, str]:
    """Who a candidate is: the name compared regardless of case, and the party.

    Two candidates may share a name (two Greg Smiths, one Conservative, one Green), but the
    same name and party twice in one declaration is one candidate listed twice.
    """
    if _is_plain(name):
        return name.lower(), party  # for ASCII, casefold() is lower()
    folded = name_key(name).casefold()
    if not folded.isascii():
        # Folding can leave a letter decomposed (U+01F0 folds to j and a combining caron).
        folded = unicodedata.normalize("NFC", folded)
    return folded, party


def same_name(a: str | None, b: str | None) -> bool:
    """Whether two spellings are one name (case counts: it is shown)."""
    if a == b:
        return True
    if a is None or b is None:
        return False
    return name_key(a) == name_key(b)


def same_instant(a: str | None, b: str | None) -> bool:
    """Whether two ISO 8601 times are one instant (``01:00Z`` is ``02:00+01:00``).

    A time without an offset names no instant: it is the same only as the same local time.
    Both must be valid ISO 8601 (the decoder checks): ValueError otherwise.
    """
    if a == b:
        return True
    if a is None or b is None:
        return False
    return datetime.fromisoformat(a) == datetime.fromisoformat(b)


def same_candidates(a: tuple[Candidate, ...], b: tuple[Candidate, ...]) -> bool:
    """The same figures, place by place, names compared as ``identity.same_name`` says.

    Declarations list candidates in one fixed order (see ``Declaration.candidates``), so two
    writings of one result line up.
    """
    if a == b:
        return True
    return len(a) == len(b) and all(
        x.party == y.party and x.votes == y.votes and same_name(x.name, y.name)
        for x, y in zip(a, b, strict=True)
    )


def _is_plain(name: str) -> bool:
    """Whether ``name`` is its own ``name_key``, as nearly every name is: non-empty printable
    ASCII (whose only whitespace is the space), with no space doubled or at either end."""
    return (
        name.isascii()
        and name.isprintable()
        and name[:1] != " " != name[-1:]
        and "  " not in name
        and name != ""
    )
