"""Channels and subscribers: the tally's changes in, each encoded once, queued or written to
every subscriber of its channel; snapshots and resume for requests. (Near 400 lines: the
channel table and every entry point that reads or changes it are here, in one class; the
policies it applies are beside it: subscriber, delivery, history, embargo.)

Nothing here awaits, and calls go one way: the hub writes to sinks (``send_now``) and closes
them; ``flush`` and the other entry points return the subscribers with messages queued, for
the caller to wake. A slow client costs only its own queue, never the others' time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from service.core.seq import ZERO, Seq
from service.core.tally import NATIONAL, Change, Tally
from service.fanout.delivery import Pending, deliver
from service.fanout.embargo import Embargo, without_exit_poll
from service.fanout.history import History
from service.fanout.subscriber import Subscriber, TokenBucket
from service.protocol import messages
from service.protocol.messages import CLOSE_POLICY, Outgoing, encode
from service.protocol.requests import BadRequest, Ping, Subscribe, parse_request

RESUME_WAIT = 5.0
"""Seconds a resuming client waits for this instance to reach its seq before a snapshot."""
AHEAD_LIMIT_MS = 60_000
"""A ``since`` further ahead of this instance than this (in stream time) is not waited for:
no instance is that far ahead of another, so it is a seq this instance cannot place."""


class Hub:
    """Routes the tally's changes to subscribers and answers their requests."""

    def __init__(
        self,
        tally: Tally,
        epoch: Seq = ZERO,
        *,
        history: int = 1000,
        max_channels: int = 1000,
        rate_limit: float = 20.0,
        on_send: Callable[[int], None] | None = None,
        on_slow_close: Callable[[], None] | None = None,
        on_resume_wait: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        embargo: Embargo | None = None,
    ) -> None:
        self.tally = tally
        self.epoch = epoch
        self.max_channels = max_channels
        self.rate_limit = rate_limit
        self.clock = clock
        """Seconds, for the rate limit and resume waits (tests pass a clock they move)."""
        self.embargo = embargo or Embargo()
        self.history = History(history)
        self.subscribers: set[Subscriber] = set()
        self._by_channel: dict[str, set[Subscriber]] = {}
        self._snapshots: dict[str, tuple[Seq, Outgoing]] = {}
        """Per channel (and audience): the latest entry applied when it was encoded, and the
        snapshot, which names that entry as its SSE position."""
        self._dirty: set[Subscriber] = set()
        self._pending: list[Pending] = []
        self._waiting: dict[Subscriber, dict[str, tuple[Seq, float]]] = {}
        """Subscribers resuming from a seq this instance has not applied yet: per channel,
        that seq and when they asked. Answered once it is applied, or with a snapshot."""
        self._on_send = on_send or (lambda count: None)
        self._on_slow_close = on_slow_close or (lambda: None)
        self._on_resume_wait = on_resume_wait or (lambda delay: None)
        """Called when a resumer starts waiting: the caller calls ``expire_waiting`` after
        ``delay`` seconds, so that a wait ends even if no entry arrives."""

    # --- connections ---------------------------------------------------------------------

    def connect(self, subscriber: Subscriber) -> None:
        """Take on a new connection; its hello is queued (the caller wakes its sink)."""
        subscriber.rate = TokenBucket(self.rate_limit, self.clock)
        subscriber.snapshot = self.snapshot
        self.subscribers.add(subscriber)
        subscriber.push(self._hello())

    def disconnect(self, subscriber: Subscriber) -> None:
        """The connection is gone: forget it (once; calling again does nothing)."""
        self.subscribers.discard(subscriber)
        self._dirty.discard(subscriber)
        self._waiting.pop(subscriber, None)
        for channel in subscriber.channels:
            self._leave(subscriber, channel)
        subscriber.channels.clear()

    def _leave(self, subscriber: Subscriber, channel: str) -> None:
        """Take the subscriber off the channel's members and waiting list."""
        waiting = self._waiting.get(subscriber)
        if waiting is not None:
            waiting.pop(channel, None)
            if not waiting:
                del self._waiting[subscriber]
        members = self._by_channel.get(channel)
        if members is not None:
            members.discard(subscriber)
            if not members:
                del self._by_channel[channel]

    def subscription_counts(self) -> dict[str, int]:
        """Subscriptions by channel kind (``national``, ``constituency``, ...)."""
        counts: dict[str, int] = {}
        for channel, members in self._by_channel.items():
            kind = channel.partition(":")[0]
            counts[kind] = counts.get(kind, 0) + len(members)
        return counts

    # --- changes in ------------------------------------------------------------------------

    def publish(self, changes: Iterable[Change]) -> None:
        """Encode each change once and hold it for its channel's members as they are now.

        Nothing is written until ``flush``: the reader calls it after each batch of stream
        entries, so a client gets one write per batch however many messages it holds.
        """
        for change in changes:
            message = messages.change_message(change)
            at = (self.epoch, change.seq)
            outgoing = encode(message, at)
            public = None
            if change.patch is not None and "exit_poll" in change.patch:
                public = self._embargoed_version(message, at)
            self.history.record(change.channel, change.prev, outgoing)
            members = self._by_channel.get(change.channel)
            if members:
                self._pending.append((change.channel, outgoing, public, tuple(members)))

    def flush(self) -> list[Subscriber]:
        """Deliver the batch's changes and answer the resumers it caught up with; returns
        the subscribers with messages queued, whose sinks the caller wakes."""
        if self._pending:
            self._deliver_pending(at_once=True)
        if self._waiting:
            self._answer_waiting(expired_only=False)
        dirty, self._dirty = self._dirty, set()
        return [subscriber for subscriber in dirty if subscriber.close_code is None]

    def _deliver_pending(self, *, at_once: bool) -> None:
        pending, self._pending = self._pending, []
        sent = deliver(pending, self._dirty, at_once=at_once, on_slow_close=self._on_slow_close)
        self._on_send(sent)

    # --- the embargo -----------------------------------------------------------------------

    def _embargoed_version(self, message: dict[str, Any], at: tuple[Seq, Seq]) -> Outgoing | None:
        """After a national change to the exit poll: the message for those who may not see
        it yet, or None when it is not (or no longer) embargoed."""
        if not self.embargo.take_up(self.tally.national()):
            return None
        return encode({**message, "patch": without_exit_poll(message["patch"])}, at)

    def lift_embargo(self) -> list[Subscriber]:
        """The embargo's time has come: everyone on national gets the full state."""
        if self.embargo.active():
            return []
        for subscriber in self._by_channel.get(NATIONAL, ()):
            if not subscriber.sees_embargoed:
                subscriber.push(self.snapshot(NATIONAL))
                self._dirty.add(subscriber)
        return self.flush()

    def public_state(self, channel: str, sees_embargoed: bool = False) -> Mapping[str, Any]:
        """The channel's state as a client with (or without) embargo rights may see it."""
        state = self.tally.state(channel)
        if channel == NATIONAL and not sees_embargoed and self.embargo.active():
            return without_exit_poll(state)
        return state

    def snapshot(self, channel: str, sees_embargoed: bool = True) -> Outgoing:
        """The channel's snapshot, encoded once per entry applied (and audience, under an
        embargo): its SSE position is that entry, up to which every channel is whole."""
        latest = self.tally.seq
        key = channel
        if channel == NATIONAL and not sees_embargoed and self.embargo.active():
            key = "national (public)"
        cached = self._snapshots.get(key)
        if cached is not None and cached[0] == latest:
            return cached[1]
        message = messages.snapshot(
            channel,
            self.tally.channel_seq(channel),
            self.public_state(channel, sees_embargoed),
            (self.epoch, latest),
        )
        self._snapshots[key] = (latest, message)
        return message

    # --- the stream begun again, or rebuilt -----------------------------------------------

    def reset(self, tally: Tally, epoch: Seq) -> list[Subscriber]:
        """The stream was begun again, or rebuilt: every client gets a new hello and fresh
        snapshots. ``tally`` may hold state already (a rebuild): its embargo holds at once."""
        self.tally = tally
        self.epoch = epoch
        self._pending.clear()
        self.history.clear()
        self._snapshots.clear()
        self.embargo.reset()
        self.embargo.take_up(self.tally.national())
        for subscriber, waiting in self._waiting.items():
            for channel in waiting:
                self._by_channel.setdefault(channel, set()).add(subscriber)
        self._waiting.clear()
        hello = self._hello()
        for subscriber in self.subscribers:
            subscriber.queue.clear()
            subscriber.queued_bytes = 0
            subscriber.resync.clear()
            subscriber.push(hello)
            for channel in sorted(subscriber.channels):
                subscriber.push(self.snapshot(channel, subscriber.sees_embargoed))
            self._dirty.add(subscriber)
        return self.flush()

    def settled(self, kept: Iterable[Change] = ()) -> None:
        """The tally's states were rebuilt with nothing published (a quiet catch-up): drop
        what was cached from before and take up the exit poll's embargo. The history of
        state channels starts here (a client resuming from an older seq gets a snapshot);
        those of the logs (declarations, posts) hold ``kept``, their latest changes, so that
        no client loses an entry to a restart."""
        self.history.clear()
        self._snapshots.clear()
        self.embargo.take_up(self.tally.national())
        self.publish(kept)  # nobody is subscribed yet: this only fills the history

    def adopt_epoch(self, epoch: Seq) -> None:
        """The first entry of a stream that was empty: no state to throw away, and no new
        hello — a client that was told epoch "0-0" resumes as ``_placeable`` allows."""
        self.epoch = epoch
        self._snapshots.clear()  # their SSE positions name the old epoch

    # --- requests in -----------------------------------------------------------------------

    def handle(self, subscriber: Subscriber, text: str | bytes) -> None:
        """Answer one client frame, queueing the answer (the caller then sends what the
        subscriber has queued). Bad requests get an error; the connection stays open."""
        if subscriber.close_code is not None:
            return
        if self._pending:
            # What was published before this request is queued before anything it causes
            # (a snapshot must follow the deltas it includes, never precede them).
            self._deliver_pending(at_once=False)
        rate = subscriber.rate
        if rate is not None and not rate.take():
            if rate.flooding:
                subscriber.close(CLOSE_POLICY, "request flood")
            else:
                subscriber.push(messages.error("rate_limited", "too many requests: slow down"))
            return
        try:
            request = parse_request(text)
        except BadRequest as exc:
            subscriber.push(messages.error(exc.code, str(exc)))
            return
        if isinstance(request, Subscribe):
            self._subscribe(subscriber, request)
        elif isinstance(request, Ping):
            subscriber.push(messages.pong(request.id))
        else:
            for channel in request.channels:
                subscriber.channels.discard(channel)
                subscriber.resync.discard(channel)
                self._leave(subscriber, channel)

    def subscribe(self, subscriber: Subscriber, request: Subscribe) -> None:
        """Subscribe as a ``subscribe`` frame would, for a transport that takes its request
        from somewhere else (the URL of an SSE stream); the answers are queued."""
        if subscriber.close_code is not None:
            return
        if self._pending:
            self._deliver_pending(at_once=False)  # as in ``handle``
        self._subscribe(subscriber, request)

    def _subscribe(self, subscriber: Subscriber, request: Subscribe) -> None:
        new = [c for c in request.channels if c not in subscriber.channels]
        if len(subscriber.channels) + len(new) > self.max_channels:
            subscriber.push(
                messages.error(
                    "too_many_channels",
                    f"a connection may hold at most {self.max_channels} channels",
                )
            )
            return
        unknown = [c for c in request.channels if not self.tally.has_channel(c)]
        forbidden = [
            c
            for c in request.channels
            if c not in unknown and subscriber.allowed is not None and not subscriber.allowed(c)
        ]
        if unknown:
            named = messages.listed(unknown)
            subscriber.push(messages.error("unknown_channel", f"no such channel: {named}"))
        if forbidden:
            named = messages.listed(forbidden)
            subscriber.push(messages.error("forbidden", f"your credential does not allow: {named}"))
        for channel in request.channels:
            if channel in unknown or channel in forbidden:
                continue
            since = self._placeable(request.epoch, request.since.get(channel))
            subscriber.channels.add(channel)
            subscriber.resync.discard(channel)
            self._leave(subscriber, channel)
            if since is not None and since > self.tally.seq:
                if since.ms <= self.tally.seq.ms + AHEAD_LIMIT_MS:
                    # Seen on a faster instance: answered once this one applies it (flush),
                    # or with a snapshot after RESUME_WAIT (expire_waiting).
                    self._waiting.setdefault(subscriber, {})[channel] = (since, self.clock())
                    self._on_resume_wait(RESUME_WAIT)
                    continue
                since = None
            self._answer(subscriber, channel, since)

    def _answer(self, subscriber: Subscriber, channel: str, since: Seq | None) -> None:
        """Join the channel and queue what rule 3 gives for ``since`` (applied here, or
        None): ``resumed`` at the channel's last change at or before it and every change
        after, or a snapshot when those are not all held.

        Joining and queueing happen with no await in between, and after this batch's
        changes were delivered to the members: nothing can fall between the answer and the
        deltas that follow it, nor arrive twice."""
        placed = None
        if since is not None and (since == ZERO or since in self.tally.entries):
            # Not an entry read here (made up, or lost in a failover): it cannot be placed.
            placed = self.history.place(channel, since, self.tally.channel_seq(channel))
        if channel == NATIONAL and self.embargo.seen and not subscriber.sees_embargoed:
            placed = None  # the history holds what this client may not have seen
        self._by_channel.setdefault(channel, set()).add(subscriber)
        if placed is None:
            subscriber.push(self.snapshot(channel, subscriber.sees_embargoed))
            return
        at, backlog = placed
        subscriber.push(messages.resumed(channel, at))
        for message in backlog:
            subscriber.push(message)

    def _answer_waiting(self, *, expired_only: bool) -> None:
        """Answer the resumers whose seq this instance has now applied (unless
        ``expired_only``), and with a snapshot those who waited RESUME_WAIT for it."""
        deadline = self.clock() - RESUME_WAIT
        for subscriber, waiting in list(self._waiting.items()):
            for channel, (since, started) in list(waiting.items()):
                if since <= self.tally.seq and not expired_only:
                    self._answer(subscriber, channel, since)
                elif started <= deadline:
                    self._answer(subscriber, channel, None)
                else:
                    continue
                del waiting[channel]
                self._dirty.add(subscriber)
            if not waiting:
                del self._waiting[subscriber]

    def expire_waiting(self) -> list[Subscriber]:
        """Give a snapshot to every resumer that has waited RESUME_WAIT (the stream may be
        quiet, and then no batch would end the wait)."""
        if self._waiting:
            self._answer_waiting(expired_only=True)
        return self.flush()

    def _placeable(self, client_epoch: object, since: object) -> Seq | None:
        """``since`` as a seq of this run of the stream, or None when it cannot be one.

        A client that connected while the stream was empty was told epoch "0-0". Its seqs
        are of this run if they are not older than the run's first entry (a stream begun
        again has later IDs than everything before it), or "0-0": the empty state.
        """
        if not isinstance(since, str) or client_epoch not in (str(self.epoch), str(ZERO)):
            return None
        try:
            seq = Seq.parse(since)
        except ValueError:
            return None
        if seq != ZERO and seq < self.epoch:
            return None
        return seq

    def _hello(self) -> Outgoing:
        return messages.hello(self.tally.election.id, self.epoch, self.tally.seq)
