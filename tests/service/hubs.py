"""A hub driven as the service drives it, with connections that record what they would write."""

from __future__ import annotations

from typing import Any

import orjson

from service.fanout.hub import Hub
from service.fanout.subscriber import Subscriber
from service.protocol.messages import Outgoing


class RecordingSink:
    """A connection: every message it would write, in order, at once or in one write each
    time it is woken; ``at_once=False`` makes it refuse the at-once path (all queued)."""

    def __init__(self, *, at_once: bool = True, closable: bool = True) -> None:
        self.subscriber: Subscriber | None = None
        self.log: list[tuple[str, list[dict[str, Any]]]] = []
        self.closed: tuple[int, str] | None = None
        self._at_once = at_once
        self._closable = closable

    def send_now(self, message: Outgoing) -> bool:
        if self._at_once:
            self.log.append(("at once", [orjson.loads(message.payload)]))
        return self._at_once

    def wake(self) -> None:
        assert self.subscriber is not None
        messages = self.subscriber.take()
        if messages:
            self.log.append(("write", [orjson.loads(m.payload) for m in messages]))

    def close(self, code: int, reason: str) -> None:
        if not self._closable:
            raise AssertionError(f"closed with {code}: {reason}")
        self.closed = (code, reason)

    @property
    def at_once(self) -> list[dict[str, Any]]:
        return [m for how, ms in self.log if how == "at once" for m in ms]

    @property
    def writes(self) -> list[list[dict[str, Any]]]:
        return [ms for how, ms in self.log if how == "write"]

    def received(self) -> list[dict[str, Any]]:
        """Everything, in the order the client would read it."""
        return [m for _, ms in self.log for m in ms]


def attach(hub: Hub, sink: RecordingSink, limit: int = 1 << 30) -> Subscriber:
    """Connect a subscriber writing to ``sink``; its hello is in the sink's log."""
    subscriber = Subscriber(sink, limit)
    sink.subscriber = subscriber
    hub.connect(subscriber)
    sink.wake()
    return subscriber


def handle(hub: Hub, subscriber: Subscriber, frame: str | bytes) -> None:
    """A client frame, answered, and the answer written (as a transport does)."""
    hub.handle(subscriber, frame)
    subscriber.sink.wake()


def flush(hub: Hub) -> None:
    """The end of a batch: deliver, then wake every subscriber with messages queued."""
    for subscriber in hub.flush():
        subscriber.sink.wake()
