"""One connection as the hub sees it: its channels, a queue bounded in bytes, its rate limit."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from service.protocol.messages import Outgoing


class Sink(Protocol):
    """Where a subscriber's messages go: a connection, implemented by each transport.

    Calls go one way, from the hub to the transport; a sink never calls the hub back.
    """

    def send_now(self, message: Outgoing) -> bool:
        """Write this one message at once if the connection takes it that way (nothing of
        its own pending); False: the hub queues it instead."""
        ...

    def wake(self) -> None:
        """Messages are queued: send ``Subscriber.take()`` when the connection can take it."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Start closing the connection with this code."""
        ...


class TokenBucket:
    """Requests per second with a burst of twice that; far below empty is a flood."""

    __slots__ = ("clock", "rate", "refilled", "tokens")

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.clock = clock
        self.tokens = 2 * rate
        self.refilled = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(2 * self.rate, self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now
        self.tokens -= 1
        return self.tokens >= 0

    @property
    def flooding(self) -> bool:
        return self.tokens < -4 * self.rate


def _no_snapshots(channel: str, sees_embargoed: bool) -> Outgoing:
    raise RuntimeError("a subscriber owes snapshots only once the hub has connected it")


@dataclass(slots=True, eq=False)
class Subscriber:
    """One connection's subscriptions and outgoing queue."""

    sink: Sink
    limit: int
    """Queue bound in bytes: past it the slow-client policy. A sink takes what is queued
    only while its connection can take it (below the transport's high-water mark), so what
    it holds below the queue is bounded too and need not be counted on the hot path."""
    channels: set[str] = field(default_factory=set)
    queue: deque[Outgoing] = field(default_factory=deque)
    queued_bytes: int = 0
    resync: set[str] = field(default_factory=set)
    """State channels whose deltas were dropped: a fresh snapshot goes out once drained."""
    close_code: int | None = None
    allowed: Callable[[str], bool] | None = None
    """Channels this subscriber's credential permits; None: every channel."""
    sees_embargoed: bool = False
    """May see embargoed data (an exit poll before its publication time)."""
    rate: TokenBucket | None = None
    snapshot: Callable[[str, bool], Outgoing] = _no_snapshots
    """The channel's current snapshot (set by the hub on connect), for ``resync``."""

    def push(self, message: Outgoing) -> None:
        if self.close_code is None:
            self.queue.append(message)
            self.queued_bytes += len(message)

    def take(self) -> list[Outgoing]:
        """Everything queued, then any snapshots owed; the queue is empty after."""
        messages = list(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
        if self.resync:
            # Taken now, and sent before any later delta is queued: the chain restarts here.
            messages.extend(
                self.snapshot(channel, self.sees_embargoed) for channel in sorted(self.resync)
            )
            self.resync.clear()
        return messages

    def close(self, code: int, reason: str) -> None:
        """Close the connection with ``code``: nothing more is queued or sent."""
        if self.close_code is None:
            self.closed(code)
            self.sink.close(code, reason)

    def closed(self, code: int) -> None:
        """The connection is closing (whichever side began it): stop queueing."""
        if self.close_code is None:
            self.close_code = code
            self.queue.clear()
            self.queued_bytes = 0
