"""The stream reader: the whole stream on start, then XREAD BLOCK, forever.

Never skips an entry and never applies one twice: the last applied ID is the only cursor,
and after any Redis error the reader reconnects and resumes from it. Bad entries are copied
to the rejected stream under their original ID, which Redis refuses a second time, so
several instances reading one stream add each copy once.

The first catch-up is quiet: no one can be subscribed before the instance is ready, so the
tally applies without building changes and settles once, before ``ready``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError, ReadOnlyError, RedisError, ResponseError

from service.core.election import Election
from service.core.events import InvalidEvent, decode_event
from service.core.seq import ZERO, Seq
from service.core.tally import Applied, Change, Tally

log = logging.getLogger("seatcast.feed")

BLOCK_MS = 2000
BACKOFF_START = 0.1
BACKOFF_CAP = 5.0


@dataclass(slots=True)
class Rejection:
    seq: Seq
    reason: str
    raw: bytes


@dataclass
class FeedListener:
    """What the reader tells the rest of the service; every callback is synchronous."""

    applied: Callable[[Seq, Applied], None]
    rejected: Callable[[Rejection], None]
    reset: Callable[[Tally, Seq], None]
    """The stream was begun again: a fresh tally and the new epoch."""
    epoch_adopted: Callable[[Seq], None]
    settled: Callable[[tuple[Change, ...]], None]
    """The quiet first catch-up is done: the tally's states were rebuilt, nothing sent;
    with the latest declarations changes it made, for the history."""
    ready: Callable[[], None]
    batch_done: Callable[[], None]
    """After each batch of entries read: the time to send what they changed."""
    connected: Callable[[bool], None]
    lag: Callable[[float], None]


@dataclass
class Feed:
    client: aioredis.Redis
    stream: str
    rejected_stream: str
    election: Election
    listener: FeedListener
    batch: int = 1000
    tally: Tally = field(init=False)
    epoch: Seq = ZERO
    last_id: Seq = ZERO
    pending_rejections: list[Rejection] = field(default_factory=list)
    caught_up: bool = False
    quiet: bool = True
    """Applying without changes: until the first catch-up, before anyone can subscribe."""

    def __post_init__(self) -> None:
        self.tally = Tally(self.election)

    async def run(self) -> None:
        """Read until cancelled, reconnecting with jittered, capped backoff."""
        delay = BACKOFF_START
        while True:
            self._progressed = False
            try:
                await self._read_forever()
            except (RedisError, OSError) as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # redis-py can turn a cancellation mid-command into a connection
                    # error; the service is stopping, so stop rather than retry.
                    raise asyncio.CancelledError from exc
                if self._progressed:
                    delay = BACKOFF_START
                self.listener.connected(False)
                log.warning(
                    "Redis error after entry %s: %s; retrying in about %.1fs",
                    self.last_id,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(BACKOFF_CAP, delay * 2)

    _progressed: bool = False

    async def _read_forever(self) -> None:
        task = asyncio.current_task()
        while True:
            if task is not None and task.cancelling():
                # redis-py can swallow a cancellation that lands mid-command and return;
                # the reader would then read on for ever, and the process never exit.
                raise asyncio.CancelledError
            await self._flush_rejections()
            # One round trip: the read, then the stream's first and newest entries *after*
            # it. If the first entry is not this epoch's, the stream was deleted and begun
            # again, and what was just read belongs to the new run: rebuild instead.
            pipe = self.client.pipeline(transaction=False)
            pipe.xread(
                {self.stream: str(self.last_id)},
                count=self.batch,
                block=BLOCK_MS if self.caught_up else None,
            )
            pipe.xrange(self.stream, count=1)
            pipe.xrevrange(self.stream, count=1)
            response, first, newest = await pipe.execute()
            if not self._progressed:
                self._progressed = True
                self.listener.connected(True)
            if first:
                first_seq = Seq.parse(first[0][0])
                if self.epoch == ZERO:
                    self.epoch = first_seq
                    self.listener.epoch_adopted(first_seq)
                elif first_seq != self.epoch:
                    self._begin_again(first_seq)
                    continue
            entries = response[0][1] if response else []
            if entries:
                self._apply_batch(entries)
                self.listener.batch_done()
            if newest:
                lag = (Seq.parse(newest[0][0]).ms - self.last_id.ms) / 1000
                self.listener.lag(max(0.0, lag))
            if len(entries) < self.batch and not self.caught_up:
                # A short batch: this is the end of the stream as it stood.
                await self._flush_rejections()
                if self.quiet:
                    kept = self.tally.settle()
                    self.quiet = False
                    self.listener.settled(kept)
                self.caught_up = True
                log.info(
                    "caught up with %s at entry %s (epoch %s)",
                    self.stream,
                    self.last_id,
                    self.epoch,
                )
                self.listener.ready()

    def _begin_again(self, epoch: Seq) -> None:
        log.warning(
            "stream %s was begun again (first entry %s, was %s): rebuilding",
            self.stream,
            epoch,
            self.epoch,
        )
        self.tally = Tally(self.election)
        self.epoch = epoch
        self.last_id = ZERO
        self.caught_up = False
        # ``quiet`` stays as it is: once ready, clients are connected and get the rebuild
        # as it happens.
        self.listener.reset(self.tally, epoch)

    def _apply_batch(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        for raw_id, fields in entries:
            seq = Seq.parse(raw_id)
            if seq <= self.last_id:
                continue  # defensive: Redis never returns these for an exclusive XREAD
            raw = fields.get(b"event")
            try:
                if raw is None:
                    names = ", ".join(sorted(k.decode("utf-8", "replace") for k in fields))
                    raise InvalidEvent(f"entry {seq}: no 'event' field (fields: {names})")
                event = decode_event(raw, self.election, str(seq))
                applied = self.tally.apply(seq, event, quiet=self.quiet)
            except InvalidEvent as exc:
                self.tally.seq = max(self.tally.seq, seq)
                self.last_id = seq
                rejection = Rejection(seq, str(exc), raw if raw is not None else b"")
                self.pending_rejections.append(rejection)
                self.listener.rejected(rejection)
                continue
            self.last_id = seq
            self.listener.applied(seq, applied)

    async def _flush_rejections(self) -> None:
        while self.pending_rejections:
            rejection = self.pending_rejections[0]
            try:
                await self.client.xadd(
                    self.rejected_stream,
                    {"id": str(rejection.seq), "reason": rejection.reason, "event": rejection.raw},
                    id=str(rejection.seq),
                )
            except (ReadOnlyError, NoPermissionError) as exc:
                # A read-only replica or a user without XADD: the event stays logged and
                # counted, but reading must go on.
                log.warning(
                    "cannot copy entry %s to %s (%s): logged and counted only",
                    rejection.seq,
                    self.rejected_stream,
                    exc,
                )
            except ResponseError as exc:
                if "equal or smaller" not in str(exc):
                    raise
                # Another instance copied it first (or we did, before a reconnect).
            self.pending_rejections.pop(0)
