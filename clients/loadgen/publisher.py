"""The events the load generator publishes: the real 2024 night, XADDed at a steady rate.

The exit poll goes onto the stream before the server starts (so it is part of the state the
clients subscribe to); the night's declarations after it are what is published and measured.
When more events are wanted than the night has, the declarations are sent again, each pass
with a higher ``revision`` and one more vote for the winner, so that every event is a real
correction that changes national, the seat and the declarations log.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from service import data

EVENT_FIELD = "event"


@dataclass(frozen=True, slots=True)
class Night:
    exit_poll: dict[str, Any]
    declarations: tuple[dict[str, Any], ...]

    @property
    def seats(self) -> tuple[str, ...]:
        return tuple(sorted({str(d["constituency"]) for d in self.declarations}))


def load_night(name: str = "uk-2024") -> Night:
    """The night's first exit poll and every per-seat event after it."""
    events = [
        orjson.loads(line) for line in data.night_path(name).read_bytes().splitlines() if line
    ]
    start = next(i for i, event in enumerate(events) if event.get("type") == "exit_poll")
    after = tuple(e for e in events[start + 1 :] if e.get("type") == "declaration")
    return Night(exit_poll=events[start], declarations=after)


def plan(night: Night, count: int, start: int = 0) -> list[tuple[str, bytes]]:
    """``count`` events as (constituency, encoded event), looping over the declarations;
    ``start``: skip as many first, when an earlier run published them on the same stream
    (published again, they would be stale repeats that change nothing)."""
    planned: list[tuple[str, bytes]] = []
    size = len(night.declarations)
    for i in range(start, start + count):
        rerun, position = divmod(i, size)
        event = night.declarations[position]
        if rerun:
            event = copy.deepcopy(event)
            top = max(event["candidates"], key=lambda c: c["votes"])
            top["votes"] += rerun
        event = {**event, "revision": rerun + 1}
        planned.append((str(event["constituency"]), orjson.dumps(event)))
    return planned


@dataclass(slots=True)
class Published:
    """What went onto the stream: IDs in order, and per channel how many and the last."""

    ids: list[str] = field(default_factory=list)
    started: float = 0.0
    """time.time() just before the first XADD."""
    finished: float = 0.0
    channels: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Channel -> (events published that change it, the last one's ID)."""

    @property
    def rate(self) -> float:
        elapsed = self.finished - self.started
        return len(self.ids) / elapsed if elapsed > 0 else 0.0

    def add(self, entry_id: str, seat: str) -> None:
        self.ids.append(entry_id)
        for channel in ("national", "declarations", f"constituency:{seat}"):
            count, _ = self.channels.get(channel, (0, ""))
            self.channels[channel] = (count + 1, entry_id)


def prepare_stream(client: redis.Redis, stream: str, night: Night) -> str:
    """Begin a new stream with the exit poll; return its entry ID.

    Raises ValueError if the key already holds anything: the load generator never writes
    onto (let alone deletes) a stream that something else may be using.
    """
    if client.exists(stream, f"{stream}:rejected"):
        raise ValueError(f"stream {stream!r} already exists: give the load generator a new key")
    entry_id = client.xadd(stream, {EVENT_FIELD: orjson.dumps(night.exit_poll)})
    return _text(entry_id)


def publish(
    client: redis.Redis, stream: str, events: list[tuple[str, bytes]], rate: float, deadline: float
) -> Published:
    """XADD the events at ``rate`` per second (0: as fast as possible) until done or ``deadline``.

    The pace is kept against the start, not the previous event, so a slow XADD does not
    lower the rate; ``deadline`` is a time.monotonic() value.
    """
    published = Published()
    start = time.monotonic()
    published.started = time.time()
    for i, (seat, event) in enumerate(events):
        if rate > 0:
            wait = start + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        if time.monotonic() > deadline:
            break
        published.add(_text(client.xadd(stream, {EVENT_FIELD: event})), seat)
    published.finished = time.time()
    return published


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
