"""The tally clients see, and the one being rebuilt off to the side after a failover.

Which tally a stream entry goes to is decided here and nowhere else: while a rebuild is under
way, entries, refusals and fresh starts all go to the tally being rebuilt, and clients keep
the one they had until the new one is whole and settled (``hand_over``).
"""

from __future__ import annotations

from service.core.election import Election
from service.core.events import Event
from service.core.seq import Seq
from service.core.tally import Applied, Change, Tally


class Tallies:
    def __init__(self, election: Election) -> None:
        self.election = election
        self.shown = Tally(election)
        """The tally clients see: the hub's snapshots and the REST answers come from it."""
        self.building: Tally | None = None
        """A fresh tally being rebuilt from the stream, or None."""

    @property
    def _target(self) -> Tally:
        return self.shown if self.building is None else self.building

    def apply(self, seq: Seq, event: Event, *, quiet: bool) -> Applied:
        """``Tally.apply`` on the tally being rebuilt, if any, else on the one shown; raises
        InvalidEvent when it refuses the event."""
        return self._target.apply(seq, event, quiet=quiet)

    def skip(self, seq: Seq) -> None:
        """Entry ``seq`` was refused: the tally's position moves past it all the same (unless
        the tally read it before refusing it, and has moved already)."""
        target = self._target
        if seq > target.seq:
            target.skip(seq)

    def begin(self, *, rebuild: bool) -> None:
        """Start again from an empty tally: off to the side (``rebuild``; a rebuild under way
        starts over), or in place of the one shown. Raises RuntimeError for the one shown
        while a rebuild is under way: its tally would never be handed over."""
        fresh = Tally(self.election)
        if rebuild:
            self.building = fresh
        elif self.building is None:
            self.shown = fresh
        else:
            raise RuntimeError("begin(rebuild=False) while a rebuild is under way")

    def settle(self) -> tuple[Change, ...]:
        """``Tally.settle`` on the tally entries go to, after its quiet applies."""
        return self._target.settle()

    def hand_over(self) -> Tally:
        """The rebuilt tally has caught up: settle it, and it becomes the one shown (returned).
        The log changes ``settle`` returns are dropped: clients of a rebuild start again from
        snapshots. Raises RuntimeError when no rebuild is under way."""
        if self.building is None:
            raise RuntimeError("hand_over() with no rebuild under way")
        self.building.settle()
        self.shown, self.building = self.building, None
        return self.shown
