"""``?wait=<seq>`` on the channel endpoints: requests held until their channel moves past a
seq, for systems that can only poll. Bounded in number per instance and in time each."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator

from service.core.seq import Seq


class BadWait(ValueError):
    """A ``?wait=`` that names no seq; the message is for the caller."""


def parse_wait(text: str) -> tuple[str | None, Seq]:
    """``<seq>``, or ``<epoch>:<seq>`` as an ETag or an SSE id names it (quotes allowed):
    the epoch (if given) and the seq. Raises BadWait."""
    epoch, _, seq = text.strip().strip('"').rpartition(":")
    try:
        return epoch or None, Seq.parse(seq)
    except ValueError:
        raise BadWait(
            f"?wait= takes the seq you hold, such as 1720148400000-0 (or <epoch>:<seq>), "
            f"not {text[:40]!r}"
        ) from None


class Waiters:
    """The held requests, by channel; woken when their channel changes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self._by_channel: dict[str, set[asyncio.Future[None]]] = {}

    @property
    def full(self) -> bool:
        return self.count >= self.limit

    @contextlib.contextmanager
    def holding(self, channel: str) -> Iterator[asyncio.Future[None]]:
        """A future done when ``channel`` changes (or everything does), counted as one
        waiter while the ``with`` lasts."""
        future = asyncio.get_running_loop().create_future()
        members = self._by_channel.setdefault(channel, set())
        members.add(future)
        self.count += 1
        try:
            yield future
        finally:
            self.count -= 1
            members.discard(future)
            if not members and self._by_channel.get(channel) is members:
                del self._by_channel[channel]

    def changed(self, channels: Iterable[str]) -> None:
        for channel in channels:
            for future in self._by_channel.pop(channel, ()):
                if not future.done():
                    future.set_result(None)

    def everything_changed(self) -> None:
        self.changed(list(self._by_channel))
