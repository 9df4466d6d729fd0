"""The tally: the whole election's state, and what each event changes.

Pure: no I/O. Call ``apply(seq, event)`` once per stream entry, in stream order; it returns
the per-channel changes (a JSON Merge Patch per state channel, an event on the logs,
``declarations`` and ``posts``), each stamped with the entry's seq and the seq of the
channel's previous change.

A reader catching up with a long stream before anyone listens applies with ``quiet=True``
and calls ``settle()`` at the end: the same states and seqs, for a fraction of the work.

Longer than the other modules on purpose: ``Tally`` is the one place where an event meets
the state, and every event kind's effect, the channel seqs and the quiet catch-up must be
read together to see that incremental state equals recomputation. What can stand alone
already does (records, totals, states, headline, majorities, feed_check, posts).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import NamedTuple

import json_merge_patch

from service.core.election import Area, Constituency, Election
from service.core.events import (
    Declaration,
    Event,
    ExitPoll,
    Flash,
    InvalidEvent,
    Post,
    Retraction,
    SeatEvent,
    StateOfParties,
    StatusChange,
)
from service.core.feed_check import check_patch, feed_check
from service.core.headline import headline
from service.core.posts import POSTS, PostLog
from service.core.records import SeatRecord, vote_moves
from service.core.seq import ZERO, Entries, Seq
from service.core.shapes import (
    AreaState,
    ConstituencyState,
    DeclarationEntry,
    DeclarationsLog,
    ExitPollState,
    FeedCheckState,
    JsonObject,
    NationalState,
    Patch,
    PostEntry,
    PostsLog,
    PostState,
)
from service.core.states import (
    area_state,
    constituency_state,
    iso_from_ms,
    national_state,
    update_area,
    update_national,
)
from service.core.totals import Totals

NATIONAL = "national"
DECLARATIONS = "declarations"
LOG_CHANNELS = frozenset({DECLARATIONS, POSTS})
"""Channels that are logs of events, not states: nothing on them may be dropped."""
RECENT_DECLARATIONS = 50
KEPT_FROM_QUIET = 1000
"""Entries of each log made by quiet applies that ``settle`` returns as changes, so that a
restarted instance can still serve clients resuming a log with ``since``."""


@dataclass(frozen=True, slots=True)
class Change:
    """One message's worth of change on one channel.

    State channels carry ``patch`` (RFC 7386, from the state at ``prev`` to the state at
    ``seq``); the log channels (``LOG_CHANNELS``) carry ``event``.
    """

    channel: str
    seq: Seq
    prev: Seq
    patch: Patch | None = None
    event: JsonObject | None = None
    """A ``DeclarationEntry`` on ``declarations``, a ``PostEntry`` on ``posts``."""


@dataclass(frozen=True, slots=True)
class Applied:
    """What one event did: its changes, or ``stale`` when its revision was not new."""

    changes: tuple[Change, ...] = ()
    stale: bool = False
    feed_check: FeedCheckState | None = None
    """A ``state_of_parties``'s check, even when it changed nothing: for the service to log
    and count a disagreement. Treat it as read-only."""


_STALE = Applied(stale=True)
_NOTHING = Applied()


def constituency_channel(seat_id: str) -> str:
    return f"constituency:{seat_id}"


@dataclass(frozen=True, slots=True)
class _Route:
    """Where one seat's result goes: its channels, and its region's and nation's totals."""

    seat: Constituency
    channel: str
    region: Area
    region_channel: str
    region_totals: Totals
    nation: Area
    nation_channel: str
    nation_totals: Totals


class _States(NamedTuple):
    """Every state channel's state, by the shape it has."""

    national: NationalState
    areas: dict[str, AreaState]
    """By channel: the regions', then the nations'."""
    seats: dict[str, ConstituencyState]
    """By channel."""

    def by_channel(self) -> dict[str, JsonObject]:
        """Channel -> state, national first, then the regions, nations and seats."""
        return {NATIONAL: self.national, **self.areas, **self.seats}


class _Unshown(NamedTuple):
    """A declarations entry of a quiet apply: what ``settle`` needs to write it.

    A named tuple rather than a frozen dataclass: one is made for every quiet declaration,
    and it is several times quicker to make.
    """

    seq: Seq
    prev: Seq
    kind: str
    seat: Constituency
    before: SeatRecord
    after: SeatRecord
    reason: str | None


class Tally:
    """The state of one election, advanced one stream entry at a time."""

    def __init__(self, election: Election) -> None:
        self.election = election
        self.seq = ZERO
        self.entries = Entries()
        """Every entry read (applied, stale or refused): the seqs a client may resume from."""
        parties = tuple(election.parties)
        self._seats: dict[str, SeatRecord] = dict.fromkeys(election.constituencies, SeatRecord())
        self._national = Totals(parties)
        self._regions = {slug: Totals(parties) for slug in election.regions}
        self._nations = {slug: Totals(parties) for slug in election.nations}
        self._exit_poll: ExitPollState | None = None
        self._feed_check: FeedCheckState | None = None
        self._recent: deque[DeclarationEntry] = deque(maxlen=RECENT_DECLARATIONS)
        self._unshown: deque[_Unshown] = deque(maxlen=KEPT_FROM_QUIET)
        self._posts = PostLog()
        self._quiet_posts: deque[Change] = deque(maxlen=KEPT_FROM_QUIET)
        self._unsettled = False
        self._routes = {
            seat_id: _Route(
                seat=seat,
                channel=constituency_channel(seat_id),
                region=election.regions[seat.region_slug],
                region_channel=f"region:{seat.region_slug}",
                region_totals=self._regions[seat.region_slug],
                nation=election.nations[seat.nation_slug],
                nation_channel=f"nation:{seat.nation_slug}",
                nation_totals=self._nations[seat.nation_slug],
            )
            for seat_id, seat in election.constituencies.items()
        }
        self._states = self._compute_states()
        self._channel_seqs: dict[str, Seq] = dict.fromkeys(self._states.by_channel(), ZERO)
        self._channel_seqs[DECLARATIONS] = ZERO
        self._channel_seqs[POSTS] = ZERO

    # --- reading -------------------------------------------------------------------------

    def channels(self) -> Iterator[str]:
        """Every channel name: national, the logs, and one per seat, region and nation."""
        yield from self._channel_seqs

    def has_channel(self, channel: str) -> bool:
        return channel in self._channel_seqs

    def state(self, channel: str) -> JsonObject:
        """The channel's current state (a snapshot's data). Treat it as read-only.

        Raises KeyError for an unknown channel.
        """
        if channel == DECLARATIONS:
            return self.declarations()
        if channel == POSTS:
            return self.posts()
        if channel == NATIONAL:
            return self._states.national
        area = self._states.areas.get(channel)
        if area is not None:
            return area
        return self._states.seats[channel]

    def national(self) -> NationalState:
        """The national state; as ``state(NATIONAL)``, in its own shape. Treat it as read-only."""
        return self._states.national

    def declarations(self) -> DeclarationsLog:
        """The declarations log's snapshot, as ``state(DECLARATIONS)``."""
        return {"recent": list(self._recent)}

    def posts(self) -> PostsLog:
        """The posts log's snapshot, as ``state(POSTS)``."""
        return {"recent": self._posts.recent()}

    def posts_about(self, seat_id: str) -> list[PostState]:
        """Every current post about the constituency, oldest first (none for an unknown id)."""
        return self._posts.about(seat_id)

    def channel_seq(self, channel: str) -> Seq:
        """The seq of the channel's last change (``ZERO`` before any); KeyError if unknown."""
        return self._channel_seqs[channel]

    def recompute(self) -> dict[str, JsonObject]:
        """Every state channel computed afresh from the seat records, ignoring running totals.

        For checking: it must always equal the incrementally kept states (after quiet
        applies, once settled).
        """
        return self._compute_states(fresh=True).by_channel()

    # --- advancing -----------------------------------------------------------------------

    def apply(self, seq: Seq, event: Event, *, quiet: bool = False) -> Applied:
        """Apply the event of stream entry ``seq``.

        Entries must come in stream order: a seq not above the last applied one raises
        ValueError (a programmer error: the reader applied an entry twice). Raises
        InvalidEvent when the event conflicts with the seat's state; then nothing changes.

        ``quiet`` applies without building patches or states, for catching up when no one
        listens: the result carries no changes (``stale`` as ever), and ``state()`` answers
        as before the quiet applies until ``settle()`` is called, which must come before the
        next normal apply (RuntimeError otherwise). Seqs, ``channel_seq`` and the records
        advance as in a normal apply, so that after ``settle()`` nothing tells the two apart.
        """
        if self._unsettled and not quiet:
            raise RuntimeError("call settle() after quiet applies, before a normal one")
        if seq <= self.seq:
            raise ValueError(f"entry {seq} is not after the last applied entry {self.seq}")
        # The position advances even when the event is refused: it has been read.
        self.seq = seq
        self.entries.add(seq)
        if quiet:
            self._unsettled = True
        if isinstance(event, ExitPoll):
            return self._apply_exit_poll(seq, event, quiet)
        if isinstance(event, StateOfParties):
            return self._apply_state_of_parties(seq, event, quiet)
        if isinstance(event, Post):
            return self._apply_post(seq, event, quiet)
        return self._apply_seat_event(seq, event, quiet)

    def skip(self, seq: Seq) -> None:
        """Stream entry ``seq`` was read but holds no event (it was rejected): the position
        advances, and nothing else changes."""
        if seq <= self.seq:
            raise ValueError(f"entry {seq} is not after the last applied entry {self.seq}")
        self.seq = seq
        self.entries.add(seq)

    def settle(self) -> tuple[Change, ...]:
        """Build every state afresh from the records and totals, after quiet applies.

        Afterwards the states, the channel seqs and the declarations log are what normal
        applies of the same events would have left, and normal applies may follow. Cheap
        enough (one build of every state) to call when in doubt.

        Returns the log changes of the last quiet applies (up to ``KEPT_FROM_QUIET`` of each
        log, in seq order), as normal applies would have returned them: not to send, but
        for a history that clients can resume the logs from.
        """
        for totals in (self._national, *self._regions.values(), *self._nations.values()):
            totals.settle()
        self._states = self._compute_states()
        changes = []
        for entry in self._unshown:
            before = constituency_state(entry.seat, entry.before)
            after = constituency_state(entry.seat, entry.after)
            data = self._entry(entry.seq, entry.kind, after, before, entry.reason)
            self._recent.append(data)
            changes.append(Change(DECLARATIONS, entry.seq, entry.prev, event=data))
        self._unshown.clear()
        posts, self._quiet_posts = self._quiet_posts, deque(maxlen=KEPT_FROM_QUIET)
        self._unsettled = False
        return tuple(heapq.merge(changes, posts, key=attrgetter("seq")))

    def _apply_post(self, seq: Seq, event: Post, quiet: bool) -> Applied:
        data = self._posts.apply(seq, event)
        if data is None:
            return _NOTHING
        change = self._stamp_event(POSTS, seq, data)
        if quiet:
            # Cheap enough to build as a normal apply does: kept for settle() to return.
            self._quiet_posts.append(change)
            return _NOTHING
        return Applied((change,))

    def _apply_exit_poll(self, seq: Seq, event: ExitPoll, quiet: bool) -> Applied:
        previous = self._exit_poll
        self._exit_poll = {
            "seats": dict(event.seats),
            "published_at": event.published_at or iso_from_ms(seq.ms),
        }
        if event.embargo_until is not None:
            # Kept in the state: the service withholds the exit poll from clients without
            # embargo rights until then (the tally itself knows no clocks).
            self._exit_poll["embargo_until"] = event.embargo_until
        if quiet:
            # The national state's exit poll is always equal to the last one applied.
            if self._exit_poll != previous:
                self._channel_seqs[NATIONAL] = seq
            return _NOTHING
        national = self._states.national
        current = national.get("exit_poll")
        if current is None:
            patch: Patch = {"exit_poll": self._exit_poll}
        elif current != self._exit_poll:
            patch = {"exit_poll": json_merge_patch.create_patch(current, self._exit_poll)}
        else:
            return _NOTHING
        # Rare, and free-form (a new poll may drop a party): the library applies it.
        json_merge_patch.merge(national, patch)
        return Applied((self._stamp(NATIONAL, seq, patch),))

    def _apply_state_of_parties(self, seq: Seq, event: StateOfParties, quiet: bool) -> Applied:
        # Computed once, at the event: see service.core.feed_check for why it is not
        # re-evaluated when those seats change later.
        check = feed_check(self.election, self._seats, event)
        previous, self._feed_check = self._feed_check, check
        if quiet:
            if check != previous:
                self._channel_seqs[NATIONAL] = seq
            return Applied(feed_check=check)
        national = self._states.national
        current = national.get("feed_check")
        if current == check:
            return Applied(feed_check=check)
        # Replaced whole, never merged into: the old check may be shared with a sent patch.
        national["feed_check"] = check
        patch: Patch = {"feed_check": check if current is None else check_patch(current, check)}
        return Applied((self._stamp(NATIONAL, seq, patch),), feed_check=check)

    def _apply_seat_event(self, seq: Seq, event: SeatEvent, quiet: bool) -> Applied:
        seat_id = event.constituency
        old = self._seats[seat_id]
        revision = event.revision
        if revision is None:
            revision = old.revision
        elif old.revision is not None and revision <= old.revision:
            return _STALE
        transition = self._transition(seq, old, event, revision)
        if transition is None:
            return _STALE
        new, kind = transition
        if new.same_result(old):
            # Nothing that clients see: a resend, or a status the seat already has.
            self._seats[seat_id] = _revised(old, revision)
            return _NOTHING
        self._seats[seat_id] = new

        route = self._routes[seat_id]
        previous = route.seat.previous
        moves = vote_moves(old, new)
        for totals in (self._national, route.region_totals, route.nation_totals):
            totals.replace(old, new, previous, moves)
        if quiet:
            counted = bool(moves) or old.winner_party != new.winner_party
            self._stamp_quietly(seq, route, counted, kind, event, old, new)
            return _NOTHING
        states = self._states
        before = states.seats[route.channel]
        after = states.seats[route.channel] = constituency_state(route.seat, new)
        # Seat states are small: rebuilt and diffed. The others are large and updated in
        # place from the running totals; ``recompute`` checks that the two ways agree.
        patches = (
            (route.channel, json_merge_patch.create_patch(before, after)),
            (NATIONAL, update_national(self.election, self._national, states.national)),
            (
                route.region_channel,
                update_area(route.region, route.region_totals, states.areas[route.region_channel]),
            ),
            (
                route.nation_channel,
                update_area(route.nation, route.nation_totals, states.areas[route.nation_channel]),
            ),
        )
        changes = []
        seqs = self._channel_seqs
        for channel, patch in patches:
            if patch:
                changes.append(Change(channel, seq, seqs[channel], patch))
                seqs[channel] = seq
        if kind is not None:
            changes.append(self._declare(seq, kind, event, before))
        return Applied(tuple(changes))

    def _transition(
        self, seq: Seq, old: SeatRecord, event: SeatEvent, revision: int | None
    ) -> tuple[SeatRecord, str | None] | None:
        """The seat's next record (at ``revision``) and the declarations ``kind``.

        None to ignore the event; raises InvalidEvent to refuse it. The caller drops a
        record that is the ``same_result`` as the old one (and its kind).
        """
        seat_id = event.constituency
        if isinstance(event, Declaration):
            was_declared = old.status == "declared"
            declared_at = event.declared_at
            if declared_at is None:
                declared_at = old.declared_at if was_declared else iso_from_ms(seq.ms)
            electorate = event.electorate
            if electorate is None:
                # Resolved here so that a resend that leaves it out is not a correction.
                electorate = self._routes[seat_id].seat.electorate
            new = SeatRecord(
                status="declared",
                winner_name=event.winner.name,
                winner_party=event.winner.party,
                declaration=event,
                declared_at=declared_at,
                electorate=electorate,
                revision=revision,
                corrections=old.corrections + int(was_declared),
            )
            return new, "correction" if was_declared else "declaration"
        if isinstance(event, Flash):
            if old.status == "declared":
                return None  # a flash never overwrites the full result
            new = SeatRecord(
                status="flash",
                winner_name=event.winner_name,
                winner_party=event.winner_party,
                revision=revision,
                corrections=old.corrections,
            )
            return new, "flash"
        if isinstance(event, StatusChange):
            if old.winner_party is not None:
                raise InvalidEvent(
                    f"entry {seq}: constituency {seat_id} has a {old.status} result; "
                    f"retract it before setting status {event.status!r}"
                )
            return replace(old, status=event.status, revision=revision), None
        if isinstance(event, Retraction):
            if old.winner_party is None:
                # No result to withdraw, so nothing to announce; a status set in error (a
                # recount that was not) goes back to awaiting like any retracted seat.
                return replace(old, status="awaiting", revision=revision), None
            return SeatRecord(revision=revision, corrections=old.corrections), "retraction"
        raise TypeError(f"not a seat event: {event!r}")

    def _stamp_quietly(
        self,
        seq: Seq,
        route: _Route,
        counted: bool,
        kind: str | None,
        event: SeatEvent,
        old: SeatRecord,
        new: SeatRecord,
    ) -> None:
        """Advance the seqs of the channels whose states a normal apply would have changed.

        Called only when the records differ in what clients see (``same_result``), so the
        seat's state changes. The national, region and nation states change together when
        the seat ``counted`` differently in their totals: another winning party, or other
        votes for some party. ``test_catch_up`` holds this to what the normal patches say.
        """
        seqs = self._channel_seqs
        seqs[route.channel] = seq
        if counted:
            seqs[NATIONAL] = seqs[route.region_channel] = seqs[route.nation_channel] = seq
        if kind is not None:
            reason = event.reason if isinstance(event, Retraction) else None
            self._unshown.append(
                _Unshown(seq, seqs[DECLARATIONS], kind, route.seat, old, new, reason)
            )
            seqs[DECLARATIONS] = seq

    def _declare(self, seq: Seq, kind: str, event: SeatEvent, before: ConstituencyState) -> Change:
        seat_state = self._states.seats[self._routes[event.constituency].channel]
        reason = event.reason if isinstance(event, Retraction) else None
        data = self._entry(seq, kind, seat_state, before, reason)
        self._recent.append(data)
        prev = self._channel_seqs[DECLARATIONS]
        self._channel_seqs[DECLARATIONS] = seq
        return Change(DECLARATIONS, seq, prev, event=data)

    def _entry(
        self,
        seq: Seq,
        kind: str,
        seat_state: ConstituencyState,
        before: ConstituencyState,
        reason: str | None,
    ) -> DeclarationEntry:
        """A declarations entry: the seat's new state, and the headline of what happened."""
        data: DeclarationEntry = {
            "seq": str(seq),
            "kind": kind,
            "headline": headline(
                self.election, kind, before if kind == "retraction" else seat_state, reason
            ),
            "constituency": seat_state,
        }
        if reason:
            data["reason"] = reason
        return data

    def _stamp(self, channel: str, seq: Seq, patch: Patch) -> Change:
        prev = self._channel_seqs[channel]
        self._channel_seqs[channel] = seq
        return Change(channel, seq, prev, patch)

    def _stamp_event(self, channel: str, seq: Seq, data: PostEntry) -> Change:
        prev = self._channel_seqs[channel]
        self._channel_seqs[channel] = seq
        return Change(channel, seq, prev, event=data)

    # --- computing states ----------------------------------------------------------------

    def _compute_states(self, fresh: bool = False) -> _States:
        election = self.election
        national, regions, nations = self._national, self._regions, self._nations
        if fresh:
            parties = tuple(election.parties)
            national = Totals(parties)
            regions = {slug: Totals(parties) for slug in election.regions}
            nations = {slug: Totals(parties) for slug in election.nations}
            for seat_id, record in self._seats.items():
                seat = election.constituencies[seat_id]
                for totals in (national, regions[seat.region_slug], nations[seat.nation_slug]):
                    totals.add(record, seat.previous)
        states = _States(national_state(election, national, self._exit_poll), {}, {})
        if self._feed_check is not None:
            states.national["feed_check"] = self._feed_check
        for slug, area in election.regions.items():
            states.areas[f"region:{slug}"] = area_state(area, regions[slug])
        for slug, area in election.nations.items():
            states.areas[f"nation:{slug}"] = area_state(area, nations[slug])
        for seat_id, record in self._seats.items():
            states.seats[constituency_channel(seat_id)] = constituency_state(
                election.constituencies[seat_id], record
            )
        return states


def _revised(record: SeatRecord, revision: int | None) -> SeatRecord:
    return record if record.revision == revision else replace(record, revision=revision)
