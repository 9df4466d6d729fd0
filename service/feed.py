"""The stream reader: the whole stream on start, then XREAD BLOCK, forever.

It reads, decodes and keeps its place; it holds no state of the election. Each decoded entry
goes to its listener (``FeedListener``, the runtime), which applies it to the tally it owns.

Never skips an entry and never applies one twice: the last applied ID is the only cursor,
and after any Redis error the reader reconnects and resumes from it. Bad entries are copied
to the rejected stream under their original ID, which Redis refuses a second time, so
several instances reading one stream add each copy once.

The first catch-up is quiet: no one can be subscribed before the instance is ready, so the
reader has the tally apply without building changes, and settle once, before ``ready``.

After every reconnect the reader reads without blocking until it is caught up again (``ready``
once more); until then the instance is not ready. If the entry it applied last is no longer on
the stream (a failover to a replica that had not received it), it rebuilds a fresh tally from
the stream, quietly and off to the side, and has it handed over whole: clients get a new
hello and fresh snapshots of what a fresh instance would build, never a replay from empty.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import (
    NoPermissionError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.core.decoding import decode_event
from service.core.election import Election
from service.core.events import Event, InvalidEvent
from service.core.seq import ZERO, Seq

log = logging.getLogger("seatcast.feed")

BLOCK_MS = 2000
BLOCK_SHARE = 0.5
"""Of the read timeout, the most a blocking read may take: a quiet stream must never look
like a Redis that stopped answering."""
READ_TIMEOUT_FLOOR = 1.0
"""The reader's read timeout is never shorter (a URL may ask for less, for the other
clients): Redis ends a block on its own clock, a tick (100 ms at its default hz) late."""
TIMEOUTS_IN_A_ROW = 3
PRIMARY_CHECK_EVERY = 1.0
"""Seconds between asking where the primary is (Sentinel URLs): an old primary keeps
answering for seconds after a failover, with entries the new one will never have."""
"""Timed-out blocking reads that count as empty ones before one counts as an error."""
BACKOFF_START = 0.1
BACKOFF_CAP = 5.0


def read_timeout(socket_timeout: float | None) -> float | None:
    """The read timeout for the reader's own client, given the URL's (None: none)."""
    return None if socket_timeout is None else max(READ_TIMEOUT_FLOOR, socket_timeout)


@dataclass(slots=True)
class Rejection:
    seq: Seq
    reason: str
    raw: bytes


class FeedListener(Protocol):
    """What the reader tells the rest of the service (service.runtime), which owns the
    tally; all synchronous."""

    def entry(self, seq: Seq, event: Event, *, quiet: bool) -> None:
        """Apply a decoded entry (``quiet``: building no changes). Raises InvalidEvent when
        the tally refuses it: the reader then rejects it (``rejected``)."""

    def rejected(self, rejection: Rejection) -> None:
        """An entry the decoder or the tally refused: the tally's position must move past it
        all the same."""

    def begin(self, epoch: Seq, *, rebuild: bool) -> None:
        """Start again from an empty tally: the stream was begun again (``epoch``, its new
        first entry), or the entry applied last was lost. With ``rebuild`` the fresh tally is
        built quietly off to the side (a rebuild under way starts over), clients keep the old
        one until ``rebuilt``; without, clients get it at once, with a new hello."""

    def rebuilt(self, epoch: Seq) -> None:
        """The tally built off to the side has caught up: settle it and hand it over whole;
        clients get a new hello (``epoch``) and fresh snapshots."""

    def epoch_adopted(self, epoch: Seq) -> None: ...

    def settled(self) -> None:
        """The quiet first catch-up is done: settle the tally (its states are rebuilt,
        nothing is sent)."""

    def caught_up(self) -> None:
        """The stream as it stood when the reader (re)connected is applied."""

    def batch_done(self) -> None:
        """After each batch of entries read: the time to send what they changed."""

    def reader_connected(self, connected: bool) -> None: ...

    def lag(self, seconds: float) -> None: ...


@dataclass
class Feed:
    client: aioredis.Redis
    stream: str
    rejected_stream: str
    election: Election
    listener: FeedListener
    batch: int = 1000
    epoch: Seq = ZERO
    last_id: Seq = ZERO
    pending_rejections: list[Rejection] = field(default_factory=list)
    socket_timeout: float | None = None
    """The client's read timeout (None: none); each blocking read stays well inside it."""
    caught_up: bool = False
    """Caught up with the stream as it stood when the reader last (re)connected."""
    quiet: bool = True
    """Applying without changes: until the first catch-up, before anyone can subscribe, and
    while rebuilding off to the side."""
    rebuilding: bool = False
    """A fresh tally is being built from the stream, off to the side, until it is whole."""
    primary_check: Callable[[], Awaitable[object]] | None = None
    """Where a Sentinel watches the primary: moves the client to a new one after a failover."""
    _primary_checked: float = 0.0

    @property
    def block_ms(self) -> int:
        if self.socket_timeout is None:
            return BLOCK_MS
        return max(1, min(BLOCK_MS, int(self.socket_timeout * 1000 * BLOCK_SHARE)))

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
                self.caught_up = False
                self.listener.reader_connected(False)
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
        timed_out = 0
        task = asyncio.current_task()
        while True:
            if task is not None and task.cancelling():
                # redis-py can swallow a cancellation that lands mid-command and return;
                # the reader would then read on for ever, and the process never exit.
                raise asyncio.CancelledError
            await self._flush_rejections()
            # One round trip: the read, then the stream's first and newest entries *after*
            # it, and whether the last entry applied is still there. If the first entry is
            # not this epoch's, the stream was deleted and begun again; if the last applied
            # is gone, a failover lost it. Either way, what was just read is not to be
            # applied on top of this tally: rebuild instead.
            blocking = self.caught_up
            pipe = self.client.pipeline(transaction=False)
            pipe.xread(
                {self.stream: str(self.last_id)},
                count=self.batch,
                block=self.block_ms if blocking else None,
            )
            pipe.xrange(self.stream, count=1)
            pipe.xrevrange(self.stream, count=1)
            if self.last_id != ZERO:
                pipe.xrange(self.stream, min=str(self.last_id), max=str(self.last_id))
            try:
                response, first, newest, *last = await pipe.execute()
            except RedisTimeoutError:
                # A blocking read that outlived the read timeout (a loaded machine, a slow
                # network) found nothing that we lost: the cursor has not moved. Only when
                # it happens again and again is Redis taken to have stopped answering.
                timed_out += 1
                if not blocking or timed_out >= TIMEOUTS_IN_A_ROW:
                    raise
                continue
            timed_out = 0
            if self.primary_check is not None:
                now = time.monotonic()
                if now - self._primary_checked >= PRIMARY_CHECK_EVERY:
                    self._primary_checked = now
                    await self.primary_check()
            if not self._progressed:
                self._progressed = True
                self.listener.reader_connected(True)
            if first:
                first_seq = Seq.parse(first[0][0])
                if self.epoch == ZERO:
                    self.epoch = first_seq
                    self.listener.epoch_adopted(first_seq)
                elif first_seq != self.epoch:
                    self._begin_again(first_seq)
                    continue
                elif last and not last[0]:
                    self._rebuild()
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
                    self.quiet = False
                    if self.rebuilding:
                        self.rebuilding = False
                        self.listener.rebuilt(self.epoch)
                    else:
                        self.listener.settled()
                self.caught_up = True
                log.info(
                    "caught up with %s at entry %s (epoch %s)",
                    self.stream,
                    self.last_id,
                    self.epoch,
                )
                self.listener.caught_up()

    def _begin_again(self, epoch: Seq) -> None:
        log.warning(
            "stream %s was begun again (first entry %s, was %s): rebuilding",
            self.stream,
            epoch,
            self.epoch,
        )
        self.epoch = epoch
        self.last_id = ZERO
        self.caught_up = False
        # ``quiet`` stays as it is: once ready, clients are connected and get the rebuild
        # as it happens; a rebuild under way starts over, and is handed over when whole.
        self.listener.begin(epoch, rebuild=self.rebuilding)

    def _rebuild(self) -> None:
        log.warning(
            "entry %s is no longer on %s (a failover to a replica that lacked it?): "
            "rebuilding from the stream; clients will get fresh snapshots",
            self.last_id,
            self.stream,
        )
        self.last_id = ZERO
        self.caught_up = False
        self.quiet = True
        self.rebuilding = True
        self.pending_rejections.clear()  # the rebuild finds those still on the stream
        self.listener.begin(self.epoch, rebuild=True)

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
                self.listener.entry(seq, event, quiet=self.quiet)
            except InvalidEvent as exc:
                self.last_id = seq
                rejection = Rejection(seq, str(exc), raw if raw is not None else b"")
                self.pending_rejections.append(rejection)
                self.listener.rejected(rejection)
                continue
            self.last_id = seq

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
