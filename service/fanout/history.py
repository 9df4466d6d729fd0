"""Each channel's latest changes, for clients that resume with ``since`` (rule 3)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from service.core.seq import Seq
from service.protocol.messages import Outgoing


class History:
    """Per channel, the latest ``size`` changes as (prev, message), oldest first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._changes: dict[str, deque[tuple[Seq, Outgoing]]] = {}

    def record(self, channel: str, prev: Seq, message: Outgoing) -> None:
        changes = self._changes.get(channel)
        if changes is None:
            changes = self._changes[channel] = deque(maxlen=self.size)
        changes.append((prev, message))

    def clear(self) -> None:
        self._changes.clear()

    def place(self, channel: str, since: Seq, current: Seq) -> tuple[Seq, list[Outgoing]] | None:
        """For a ``since`` this instance has applied, with the channel's last change at
        ``current``: the channel's last change at or before ``since``, and the messages after
        that one; None when they are no longer all held."""
        if since >= current:
            return current, []
        # Walk back from the newest change to the first one after ``since``: its ``prev`` is
        # the client's place in the chain. If the history runs out first, not all are held.
        backlog: list[Outgoing] = []
        for prev, message in self._newest_first(channel):
            backlog.append(message)
            if prev <= since:
                return prev, backlog[::-1]
        return None

    def _newest_first(self, channel: str) -> Iterator[tuple[Seq, Outgoing]]:
        return reversed(self._changes.get(channel, ()))
