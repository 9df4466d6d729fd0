"""The shape of every channel's state and log entry, as the core builds them.

DESIGN.md ("State") and service/asyncapi.yaml describe the same shapes for clients; these are
the ones the code holds itself to. A state never holds None: a field with no value is left
out (``NotRequired``), because in a merge patch null means "remove". A merge patch is a
partial state with nulls in it, so it stays a plain ``Patch``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

Patch = dict[str, Any]
"""An RFC 7386 merge patch from one state to the next: a partial JSON object, null removes."""

JsonObject = Mapping[str, Any]
"""Any channel's state or log entry, for code that serves every channel alike (read-only)."""


class PartyFigures(TypedDict):
    """A party's counts over a set of seats: a region's or nation's party entry."""

    seats: int
    gains: int
    losses: int
    net: int
    votes: int
    share: float


class NationalParty(PartyFigures):
    name: str
    seats_to_majority: int
    seats_to_working_majority: NotRequired[int]
    """Only where the definition gives a working majority."""
    overall_majority: NotRequired[int]
    """Only on the majority party's entry."""


class ExitPollState(TypedDict):
    seats: dict[str, int]
    published_at: str
    embargo_until: NotRequired[str]
    """Kept from the event; the service withholds the exit poll until then."""


class FeedCheckState(TypedDict):
    source: str
    results: int
    agrees: bool
    differences: dict[str, dict[str, list[int]]]
    """Party code -> figure -> ``[feed's, ours]``, for each figure that disagrees."""


class NationalFigures(TypedDict):
    """The national state but its parties: built first, the parties added last."""

    election: str
    total_seats: int
    majority: int
    working_majority: NotRequired[int]
    declared: int
    seats_to_declare: int
    leader: NotRequired[str]
    seats_to_majority: NotRequired[int]
    """The leader's; absent with it."""
    majority_party: NotRequired[str]
    exit_poll: NotRequired[ExitPollState]
    feed_check: NotRequired[FeedCheckState]


class NationalState(NationalFigures):
    parties: dict[str, NationalParty]


class AreaState(TypedDict):
    """A region's or nation's state: no majority fields, a majority is national."""

    name: str
    slug: str
    total_seats: int
    declared: int
    seats_to_declare: int
    constituencies: list[str]
    parties: dict[str, PartyFigures]


class Winner(TypedDict):
    name: str
    party: str


class CandidateShare(TypedDict):
    name: str
    party: str
    votes: int
    share: float


class ConstituencyState(TypedDict):
    """A seat's state: the definition's fields and its status, then its result if any."""

    id: str
    name: str
    region: str
    nation: str
    electorate: int
    previous: str
    status: str
    winner: NotRequired[Winner]
    result: NotRequired[str]
    """``gain`` or ``hold``."""
    gain_from: NotRequired[str]
    majority: NotRequired[int]
    turnout: NotRequired[float]
    valid_votes: NotRequired[int]
    candidates: NotRequired[list[CandidateShare]]
    declared_at: NotRequired[str]
    corrections: NotRequired[int]
    """With a winner only."""


class DeclarationEntry(TypedDict):
    seq: str
    kind: str
    """``declaration``, ``flash``, ``correction`` or ``retraction``."""
    headline: str
    constituency: ConstituencyState
    reason: NotRequired[str]


class DeclarationsLog(TypedDict):
    recent: list[DeclarationEntry]


class PostState(TypedDict):
    id: str
    seq: str
    title: str
    body: str
    published_at: str
    author: NotRequired[str]
    role: NotRequired[str]
    constituencies: NotRequired[list[str]]


class PostEntry(TypedDict):
    seq: str
    kind: str
    """``post``, ``replacement`` or ``withdrawal``."""
    post: PostState


class PostsLog(TypedDict):
    recent: list[PostState]
