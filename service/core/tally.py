"""The tally: the whole election's state, and what each event changes.

Pure: no I/O. Call ``apply(seq, event)`` once per stream entry, in stream order; it returns
the per-channel changes (a JSON Merge Patch per state channel, an event on ``declarations``),
each stamped with the entry's seq and the seq of the channel's previous change.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace

import json_merge_patch

from service.core.election import Election
from service.core.events import (
    Declaration,
    Event,
    ExitPoll,
    Flash,
    InvalidEvent,
    Retraction,
    SeatEvent,
    StatusChange,
)
from service.core.headline import headline
from service.core.seq import ZERO, Seq
from service.core.views import (
    SeatRecord,
    State,
    Totals,
    area_patch,
    area_state,
    constituency_state,
    iso_from_ms,
    national_patch,
    national_state,
)

NATIONAL = "national"
DECLARATIONS = "declarations"
RECENT_DECLARATIONS = 50


@dataclass(frozen=True, slots=True)
class Change:
    """One message's worth of change on one channel.

    State channels carry ``patch`` (RFC 7386, from the state at ``prev`` to the state at
    ``seq``); the declarations channel carries ``event``.
    """

    channel: str
    seq: Seq
    prev: Seq
    patch: State | None = None
    event: State | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    """What one event did: its changes, or ``stale`` when its revision was not new."""

    changes: tuple[Change, ...] = ()
    stale: bool = False


def constituency_channel(seat_id: str) -> str:
    return f"constituency:{seat_id}"


class Tally:
    """The state of one election, advanced one stream entry at a time."""

    def __init__(self, election: Election) -> None:
        self.election = election
        self.seq = ZERO
        parties = tuple(election.parties)
        self._seats: dict[str, SeatRecord] = dict.fromkeys(election.constituencies, SeatRecord())
        self._national = Totals(parties)
        self._regions = {slug: Totals(parties) for slug in election.regions}
        self._nations = {slug: Totals(parties) for slug in election.nations}
        self._exit_poll: State | None = None
        self._recent: deque[State] = deque(maxlen=RECENT_DECLARATIONS)
        self._states: dict[str, State] = self._compute_states()
        self._channel_seqs: dict[str, Seq] = dict.fromkeys(self._states, ZERO)
        self._channel_seqs[DECLARATIONS] = ZERO

    # --- reading -------------------------------------------------------------------------

    def channels(self) -> Iterator[str]:
        """Every channel name: national, declarations, and one per seat, region and nation."""
        yield from self._channel_seqs

    def has_channel(self, channel: str) -> bool:
        return channel in self._channel_seqs

    def state(self, channel: str) -> State:
        """The channel's current state (a snapshot's data). Treat it as read-only.

        Raises KeyError for an unknown channel.
        """
        if channel == DECLARATIONS:
            return {"recent": list(self._recent)}
        return self._states[channel]

    def channel_seq(self, channel: str) -> Seq:
        """The seq of the channel's last change (``ZERO`` before any); KeyError if unknown."""
        return self._channel_seqs[channel]

    def recompute(self) -> dict[str, State]:
        """Every state channel computed afresh from the seat records, ignoring running totals.

        For checking: it must always equal the incrementally kept states.
        """
        return self._compute_states(fresh=True)

    # --- advancing -----------------------------------------------------------------------

    def apply(self, seq: Seq, event: Event) -> Applied:
        """Apply the event of stream entry ``seq``.

        Entries must come in stream order: a seq not above the last applied one raises
        ValueError (a programmer error: the reader applied an entry twice). Raises
        InvalidEvent when the event conflicts with the seat's state; then nothing changes.
        """
        if seq <= self.seq:
            raise ValueError(f"entry {seq} is not after the last applied entry {self.seq}")
        # The position advances even when the event is refused: it has been read.
        self.seq = seq
        if isinstance(event, ExitPoll):
            return self._apply_exit_poll(seq, event)
        return self._apply_seat_event(seq, event)

    def _apply_exit_poll(self, seq: Seq, event: ExitPoll) -> Applied:
        self._exit_poll = {
            "seats": dict(event.seats),
            "published_at": event.published_at or iso_from_ms(seq.ms),
        }
        if event.embargo_until is not None:
            # Kept in the state: the service withholds the exit poll from clients without
            # embargo rights until then (the tally itself knows no clocks).
            self._exit_poll["embargo_until"] = event.embargo_until
        patch: State = {}
        current = self._states[NATIONAL].get("exit_poll")
        if current is None:
            patch["exit_poll"] = self._exit_poll
        elif current != self._exit_poll:
            patch["exit_poll"] = json_merge_patch.create_patch(current, self._exit_poll)
        change = self._patch(NATIONAL, seq, patch)
        return Applied((change,) if change else ())

    def _apply_seat_event(self, seq: Seq, event: SeatEvent) -> Applied:
        seat_id = event.constituency
        old = self._seats[seat_id]
        if event.revision is not None and old.revision is not None:
            if event.revision <= old.revision:
                return Applied(stale=True)
        revision = old.revision if event.revision is None else event.revision
        transition = self._transition(seq, old, event)
        if transition is None:
            return Applied(stale=True)
        new, kind = transition
        new = replace(new, revision=revision)
        self._seats[seat_id] = new
        if new.same_result(old):
            return Applied()

        seat = self.election.constituencies[seat_id]
        region, nation = seat.region_slug, seat.nation_slug
        for totals in (self._national, self._regions[region], self._nations[nation]):
            totals.add(old, seat.previous, -1)
            totals.add(new, seat.previous)
        channel = constituency_channel(seat_id)
        before = self._states[channel]
        national = self._states[NATIONAL]
        region_channel, nation_channel = f"region:{region}", f"nation:{nation}"
        refreshed = [
            self._replace(channel, seq, constituency_state(seat, new)),
            self._patch(NATIONAL, seq, national_patch(self.election, self._national, national)),
            self._patch(
                region_channel,
                seq,
                area_patch(
                    self.election.regions[region],
                    self._regions[region],
                    self._states[region_channel],
                ),
            ),
            self._patch(
                nation_channel,
                seq,
                area_patch(
                    self.election.nations[nation],
                    self._nations[nation],
                    self._states[nation_channel],
                ),
            ),
        ]
        changes = [change for change in refreshed if change is not None]
        if kind is not None:
            changes.append(self._declare(seq, kind, event, before))
        return Applied(tuple(changes))

    def _transition(
        self, seq: Seq, old: SeatRecord, event: SeatEvent
    ) -> tuple[SeatRecord, str | None] | None:
        """The seat's next record and the declarations ``kind``, or None to ignore the event."""
        seat_id = event.constituency
        if isinstance(event, Declaration):
            was_declared = old.status == "declared"
            declared_at = event.declared_at
            if declared_at is None:
                declared_at = old.declared_at if was_declared else iso_from_ms(seq.ms)
            electorate = event.electorate
            if electorate is None:
                # Resolved here so that a resend that leaves it out is not a correction.
                electorate = self.election.constituencies[seat_id].electorate
            new = SeatRecord(
                status="declared",
                winner_name=event.winner.name,
                winner_party=event.winner.party,
                declaration=event,
                declared_at=declared_at,
                electorate=electorate,
                corrections=old.corrections,
            )
            if not was_declared:
                return new, "declaration"
            if new.same_result(old):
                return old, None
            return replace(new, corrections=old.corrections + 1), "correction"
        if isinstance(event, Flash):
            if old.status == "declared":
                return None  # a flash never overwrites the full result
            new = SeatRecord(
                status="flash",
                winner_name=event.winner_name,
                winner_party=event.winner_party,
                corrections=old.corrections,
            )
            return new, "flash"
        if isinstance(event, StatusChange):
            if old.winner_party is not None:
                raise InvalidEvent(
                    f"entry {seq}: constituency {seat_id} has a {old.status} result; "
                    f"retract it before setting status {event.status!r}"
                )
            return replace(old, status=event.status), None
        if isinstance(event, Retraction):
            if old.winner_party is None:
                # No result to withdraw, so nothing to announce; a status set in error (a
                # recount that was not) goes back to awaiting like any retracted seat.
                return replace(old, status="awaiting"), None
            return SeatRecord(corrections=old.corrections), "retraction"
        raise TypeError(f"not a seat event: {event!r}")

    def _declare(self, seq: Seq, kind: str, event: SeatEvent, before: State) -> Change:
        seat_state = self._states[constituency_channel(event.constituency)]
        reason = event.reason if isinstance(event, Retraction) else None
        data: State = {
            "seq": str(seq),
            "kind": kind,
            "headline": headline(
                self.election, kind, before if kind == "retraction" else seat_state, reason
            ),
            "constituency": seat_state,
        }
        if reason:
            data["reason"] = reason
        self._recent.append(data)
        prev = self._channel_seqs[DECLARATIONS]
        self._channel_seqs[DECLARATIONS] = seq
        return Change(DECLARATIONS, seq, prev, event=data)

    def _replace(self, channel: str, seq: Seq, state: State) -> Change | None:
        """Swap in a freshly built state; the change is the diff (small states only)."""
        patch: State = json_merge_patch.create_patch(self._states[channel], state)
        if not patch:
            return None
        self._states[channel] = state
        return self._stamp(channel, seq, patch)

    def _patch(self, channel: str, seq: Seq, patch: State) -> Change | None:
        """Apply a patch computed from running totals to the channel's state, in place.

        Large states are patched rather than rebuilt and diffed: that is most of the
        tally's speed. ``recompute`` checks that the two ways agree.
        """
        if not patch:
            return None
        json_merge_patch.merge(self._states[channel], patch)
        return self._stamp(channel, seq, patch)

    def _stamp(self, channel: str, seq: Seq, patch: State) -> Change:
        prev = self._channel_seqs[channel]
        self._channel_seqs[channel] = seq
        return Change(channel, seq, prev, patch=patch)

    # --- computing states ----------------------------------------------------------------

    def _compute_states(self, fresh: bool = False) -> dict[str, State]:
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
        states: dict[str, State] = {NATIONAL: national_state(election, national, self._exit_poll)}
        for slug, area in election.regions.items():
            states[f"region:{slug}"] = area_state(area, regions[slug])
        for slug, area in election.nations.items():
            states[f"nation:{slug}"] = area_state(area, nations[slug])
        for seat_id, record in self._seats.items():
            states[constituency_channel(seat_id)] = constituency_state(
                election.constituencies[seat_id], record
            )
        return states
