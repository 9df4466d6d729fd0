"""One-line headlines for the declarations feed, written for a ticker."""

from __future__ import annotations

from service.core.election import Election
from service.core.shapes import ConstituencyState


def headline(
    election: Election, kind: str, seat: ConstituencyState, reason: str | None = None
) -> str:
    """``"Labour gain Peterborough from Conservative, majority 118"`` and its variants.

    ``seat`` is the constituency's new state; for a retraction, its state before.
    """
    name = seat["name"]
    if kind == "retraction":
        text = f"Result withdrawn in {name}"
        return f"{text}: {reason}" if reason else text
    winner = _party_name(election, seat["winner"]["party"])
    if seat["result"] == "gain":
        text = f"{winner} gain {name} from {_party_name(election, seat['gain_from'])}"
    else:
        text = f"{winner} hold {name}"
    if "majority" in seat:
        text += f", majority {seat['majority']:,}"
    if kind == "flash":
        return f"Flash: {text}, figures to follow"
    if kind == "correction":
        return f"Correction: {text}"
    return text


def _party_name(election: Election, code: str) -> str:
    party = election.parties.get(code)
    return party.name if party is not None else code
