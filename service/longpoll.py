"""``?wait=<seq>`` on the channel endpoints: requests held until their channel moves past a
seq, for systems that can only poll. Bounded in number per instance and in time each."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from service.core.seq import Seq

LARGEST_PART = 2**64 - 1
"""A Redis entry ID's parts are 64-bit: anything larger names no entry, ever."""


class BadWait(ValueError):
    """A ``?wait=`` that names no seq; the message is for the caller."""


@dataclass(frozen=True, slots=True)
class Held:
    """What a ``?wait=`` says the caller holds: a seq, and, in an ETag's form, the run of the
    stream and whether that answer left out an embargoed exit poll (None: a bare seq, which
    does not say; such a caller is not told when an embargo lifts)."""

    seq: Seq
    epoch: str | None = None
    withheld: bool | None = None


def parse_wait(text: str) -> Held:
    """``<seq>``, or an ETag as the answers give it (``"<epoch>:<seq>"``, with
    ``:withheld``, weak ``W/`` or unquoted), or an SSE id (``<epoch>:<seq>``). Raises
    BadWait."""
    tag = text.strip()
    tag = (tag[2:] if tag.startswith("W/") else tag).strip('"')
    parts = tag.split(":")
    withheld: bool | None = None
    if len(parts) == 3 and parts[2] == "withheld":
        parts, withheld = parts[:2], True
    elif len(parts) == 2:
        withheld = False
    try:
        if len(parts) > 2:
            raise ValueError(tag)
        seqs = [Seq.parse(part) for part in parts]
        if any(max(seq.ms, seq.n) > LARGEST_PART for seq in seqs):
            raise ValueError(tag)
    except ValueError:
        raise BadWait(
            f"?wait= takes the seq you hold, such as 1720148400000-0, or the ETag you hold, "
            f"not {text[:40]!r}"
        ) from None
    if len(seqs) == 1:
        return Held(seqs[0])
    return Held(seqs[1], str(seqs[0]), withheld)


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
