"""Stream events as the core takes them: one record type per event, and the checker that
decoding (service.core.decoding) refuses bad ones with.

Each rejection is an InvalidEvent whose message is one line naming the stream entry and the
field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeGuard

from service.core.election import Election

STATUSES = ("counting", "recount", "awaiting")

MAX_VOTES = 10**12
"""The most votes one seat can count, all candidates together.

More than there are people, and small enough that every total the tally keeps fits the
64-bit integers of JSON encoders (and, up to 9,000 seats, the 2**53 of JavaScript clients):
a feed that sends 2**64 - 1 votes is refused here rather than failing when sent on.
"""


TEXT_MAX = 300
"""The longest name (a candidate's, a winner's), status note, retraction reason or feed
source, in characters: each is shown on one line, and unbounded it would make every message
that carries it as large as the feed liked."""
CANDIDATES_MAX = 200
"""The most candidates one declaration may list (the longest ballots known hold under 200:
Nizamabad, India, 2019, had 185)."""


REASON_MAX = 500
"""The longest reason kept whole, in characters; a longer one (it quotes a feed's value) is
cut, so that one huge value does not make a huge log line, rejected entry or HTTP answer."""


POST_ID_MAX = 128
POST_TITLE_MAX = 300
POST_BODY_MAX = 10_000
POST_NAME_MAX = 120
"""The longest ``author`` or ``role`` of a post, in characters."""
POST_SEATS_MAX = 200
"""The most constituencies one post may be about."""


FIGURES = ("seats", "gains", "losses")
"""What a ``state_of_parties`` gives for each party, in the order they are compared."""


class InvalidEvent(ValueError):
    """An event that must be rejected; ``str(exc)`` is the one-line reason."""


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str
    party: str
    votes: int


@dataclass(frozen=True, slots=True)
class Declaration:
    constituency: str
    candidates: tuple[Candidate, ...]
    """The elected candidate first, then by votes, highest first; equal votes in one fixed
    order (by ``identity.candidate_key``), whatever the feed's."""
    winner: Candidate
    declared_at: str | None = None
    electorate: int | None = None
    revision: int | None = None


@dataclass(frozen=True, slots=True)
class Flash:
    constituency: str
    winner_name: str
    winner_party: str
    revision: int | None = None


@dataclass(frozen=True, slots=True)
class StatusChange:
    constituency: str
    status: str
    note: str | None = None
    revision: int | None = None


@dataclass(frozen=True, slots=True)
class Retraction:
    constituency: str
    reason: str | None = None
    revision: int | None = None


@dataclass(frozen=True, slots=True)
class ExitPoll:
    seats: tuple[tuple[str, int], ...]
    published_at: str | None = None
    embargo_until: str | None = None


@dataclass(frozen=True, slots=True)
class PartyFigures:
    """One party's running totals as a feed counts them."""

    code: str
    seats: int
    gains: int
    losses: int


@dataclass(frozen=True, slots=True)
class StateOfParties:
    """A feed's own totals over the seats it lists, kept as a check on ours."""

    source: str
    constituencies: tuple[str, ...]
    """In the feed's order; each once."""
    parties: tuple[PartyFigures, ...]
    """Only the parties the feed lists; any other counts as none of everything."""


@dataclass(frozen=True, slots=True)
class Post:
    """A live-coverage post, or (``withdrawn``) the withdrawal of the post with its ``id``."""

    id: str
    title: str = ""
    body: str = ""
    """Plain text; line breaks are ``\\n`` (a feed's ``\\r\\n`` and ``\\r`` are taken as one)."""
    author: str | None = None
    role: str | None = None
    published_at: str | None = None
    constituencies: tuple[str, ...] = ()
    """Ids of the seats it is about, in the feed's order, each once."""
    withdrawn: bool = False


Event = Declaration | Flash | StatusChange | Retraction | ExitPoll | StateOfParties | Post
SeatEvent = Declaration | Flash | StatusChange | Retraction


class Checker:
    __slots__ = ("election", "entry")

    def __init__(self, election: Election, entry: str) -> None:
        self.election = election
        self.entry = entry

    def fail(self, message: str) -> InvalidEvent:
        return InvalidEvent(_one_line(f"entry {self.entry}: {message}"))

    def text(self, document: dict[str, Any], field: str, where: str = "") -> str:
        value = document.get(field)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{where}'{field}' must be a non-empty string")
        return value

    def optional_text(self, document: dict[str, Any], field: str) -> str | None:
        value = document.get(field)
        if value is not None and not isinstance(value, str):
            raise self.fail(f"'{field}' must be a string")
        return value

    def optional_int(self, document: dict[str, Any], field: str, where: str = "") -> int | None:
        value = document.get(field)
        if value is not None and (not is_int(value) or value < 0):
            raise self.fail(f"{where}'{field}' must be a non-negative integer")
        return value

    def timestamp(self, document: dict[str, Any], field: str) -> str | None:
        value = self.optional_text(document, field)
        if value is not None:
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise self.fail(f"'{field}' is not an ISO 8601 time: {value!r}") from None
        return value

    def constituency(self, document: dict[str, Any]) -> str:
        seat = self.text(document, "constituency")
        known = self.election.constituencies.get(seat)
        if known is None:
            raise self.fail(f"unknown constituency {seat!r}")
        return known.id  # the definition's own string, as with party codes

    def party(self, document: dict[str, Any], where: str) -> str:
        """The party's code, also when the event names it by one of its aliases."""
        party = self.text(document, "party", where)
        code = self.election.party_code(party)
        if code is None:
            raise self.fail(f"{where}unknown party {party!r}")
        return self.election.parties[code].code


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def kind_of(value: object) -> str:
    kinds = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


def _one_line(reason: str) -> str:
    """The reason with line breaks and other control characters escaped, and cut at
    REASON_MAX characters.

    Names in a reason come from the feed as they are; a reason must stay one line.
    """
    whole = len(reason)
    reason = reason[:REASON_MAX]  # before escaping, which costs a step per character
    if not reason.isprintable():
        reason = "".join(
            c if c.isprintable() else c.encode("unicode_escape").decode() for c in reason
        )
    if whole > REASON_MAX or len(reason) > REASON_MAX:
        reason = f"{reason[:REASON_MAX]}... (cut: {whole:,} characters)"
    return reason
