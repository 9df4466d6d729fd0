"""Channels and subscribers: snapshots, deltas, resume, bounded queues.

Every message is encoded once — JSON, and the websocket frame that uncompressed connections
(service.direct) write as it is — and the same bytes go to every subscriber of the channel.
Nothing here awaits: messages are queued per subscriber and handed to its sink in one write
per batch of stream entries, so a slow client costs only its own queue, never the others'
time.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from websockets.frames import Frame, Opcode

from service.core.seq import ZERO, Seq
from service.core.tally import DECLARATIONS, NATIONAL, Change, Tally

# Close codes (RFC 6455 and the IANA registry), as DESIGN.md guarantee 7 names them.
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_RESTART = 1012
CLOSE_TRY_LATER = 1013


RESUME_WAIT = 5.0
"""Seconds a resuming client waits for this instance to reach its seq before a snapshot."""
AHEAD_LIMIT_MS = 60_000
"""A ``since`` further ahead of this instance than this (in stream time) is not waited for:
no instance is that far ahead of another, so it is a seq this instance cannot place."""


class Outgoing:
    """One encoded message: the JSON text, and its unmasked websocket frame.

    Server frames are not masked, so one frame's bytes serve every uncompressed connection.
    """

    __slots__ = ("payload", "wire")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.wire = Frame(Opcode.TEXT, payload).serialize(mask=False)

    def __len__(self) -> int:
        return len(self.payload)


def encode(message: dict[str, Any]) -> Outgoing:
    return Outgoing(orjson.dumps(message))


def error_message(code: str, message: str) -> Outgoing:
    return encode({"type": "error", "code": code, "message": message})


class Sink(Protocol):
    """Where a subscriber's messages go: a connection, seen from the hub."""

    def flush(self, subscriber: Subscriber) -> None:
        """Send what is queued if the connection can take it now; never blocks."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Start closing the connection with this code."""
        ...

    def send_now(self, message: Outgoing) -> bool:
        """Send this one message at once if the connection takes it that way (nothing of
        its own pending); False: queue it instead."""
        ...


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
    embargoed: bool = False
    """May see embargoed data (an exit poll before its publication time)."""
    tokens: float = 0.0
    refilled: float = 0.0

    def push(self, message: Outgoing) -> None:
        if self.close_code is None:
            self.queue.append(message)
            self.queued_bytes += len(message)

    def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code
            self.queue.clear()
            self.queued_bytes = 0
            self.sink.close(code, reason)


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tally = tally
        self.epoch = epoch
        self.history_size = history
        self.max_channels = max_channels
        self.rate_limit = rate_limit
        self.clock = clock
        """Seconds, for the rate limit and resume waits (tests pass a clock they move)."""
        self.subscribers: set[Subscriber] = set()
        self._by_channel: dict[str, set[Subscriber]] = {}
        self._history: dict[str, deque[tuple[Seq, Outgoing]]] = {}
        """Per channel, the latest changes as (prev, message), oldest first."""
        self._snapshots: dict[str, tuple[Seq, Outgoing]] = {}
        self._dirty: set[Subscriber] = set()
        self._pending: list[tuple[str, Outgoing, Outgoing | None, tuple[Subscriber, ...]]] = []
        """This batch's changes, each with its channel's members as they were then."""
        self._waiting: dict[Subscriber, dict[str, tuple[Seq, float]]] = {}
        """Subscribers resuming from a seq this instance has not applied yet: per channel,
        that seq and when they asked. Answered once it is applied, or with a snapshot."""
        self._on_send = on_send or (lambda count: None)
        self._on_slow_close = on_slow_close or (lambda: None)
        self.embargo_until: float | None = None
        """When the current exit poll's embargo lifts (epoch seconds), if it has one."""
        self._embargo_seen = False
        self.on_embargo: Callable[[float], None] = lambda until: None
        """Called with the lift time of each new embargo: the caller calls lift_embargo."""
        self.on_resume_wait: Callable[[float], None] = lambda delay: None
        """Called when a resumer starts waiting: the caller calls expire_waiting after
        ``delay`` seconds, so that a wait ends even if no entry arrives."""

    # --- connections ---------------------------------------------------------------------

    def connect(self, subscriber: Subscriber) -> None:
        subscriber.tokens = 2 * self.rate_limit
        subscriber.refilled = self.clock()
        self.subscribers.add(subscriber)
        self._send(subscriber, self._hello())

    def disconnect(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        self._dirty.discard(subscriber)
        for channel in subscriber.channels:
            self._leave(subscriber, channel)
        subscriber.channels.clear()

    def _leave(self, subscriber: Subscriber, channel: str) -> None:
        """Take the subscriber off the channel's members and waiting list."""
        self._stop_waiting(subscriber, channel)
        members = self._by_channel.get(channel)
        if members is not None:
            members.discard(subscriber)
            if not members:
                del self._by_channel[channel]

    def _stop_waiting(self, subscriber: Subscriber, channel: str) -> None:
        waiting = self._waiting.get(subscriber)
        if waiting is not None:
            waiting.pop(channel, None)
            if not waiting:
                del self._waiting[subscriber]

    def subscription_counts(self) -> dict[str, int]:
        """Subscriptions by channel kind (``national``, ``constituency``, ...)."""
        counts: dict[str, int] = {}
        for channel, members in self._by_channel.items():
            kind = channel.partition(":")[0]
            counts[kind] = counts.get(kind, 0) + len(members)
        return counts

    # --- changes in ------------------------------------------------------------------------

    def publish(self, changes: Iterable[Change]) -> None:
        """Queue each change for its channel's subscribers, encoded once.

        Nothing is written, nor queued, until ``flush``: the reader calls it after each batch
        of stream entries, so a client gets one write per batch however many messages it
        holds. The channel's members are taken now: who subscribes later is not sent this.
        """
        for change in changes:
            message: dict[str, Any]
            if change.event is not None:
                message = {
                    "type": "event",
                    "channel": change.channel,
                    "seq": str(change.seq),
                    "prev": str(change.prev),
                    "data": change.event,
                }
            else:
                message = {
                    "type": "delta",
                    "channel": change.channel,
                    "seq": str(change.seq),
                    "prev": str(change.prev),
                    "patch": change.patch,
                }
            outgoing = encode(message)
            public = None
            if change.patch is not None and "exit_poll" in change.patch:
                public = self._embargo_check(message)
            history = self._history.get(change.channel)
            if history is None:
                history = self._history[change.channel] = deque(maxlen=self.history_size)
            history.append((change.prev, outgoing))
            members = self._by_channel.get(change.channel)
            if members:
                self._pending.append((change.channel, outgoing, public, tuple(members)))

    def _deliver_pending(self, *, at_once: bool) -> None:
        """Deliver this batch's changes in order. With ``at_once``, a change that is its
        channel's only one in the batch goes straight out to each member with nothing
        queued and no other channel changed in the batch — the common case, one write per
        subscriber per event with no queue touched; everything else is queued for the
        sinks' flush, which writes all of a subscriber's messages together."""
        pending, self._pending = self._pending, []
        changes = Counter(channel for channel, _, _, _ in pending) if at_once else Counter()
        changed = frozenset(changes)
        for channel, message, public, members in pending:
            others = changed - {channel} if changes[channel] == 1 and public is None else None
            self._deliver(channel, message, members, public, at_once_unless=others)

    def _deliver(
        self,
        channel: str,
        message: Outgoing,
        members: tuple[Subscriber, ...],
        public: Outgoing | None = None,
        *,
        at_once_unless: frozenset[str] | None = None,
    ) -> None:
        """Send or queue ``message`` for each member (``public`` instead for those who may
        not see embargoed data, when it differs), applying the slow-client policy.

        ``at_once_unless``: send at once to members with nothing queued that follow none of
        these channels (the batch's other changes); None: queue for every member.
        """
        is_log = channel == DECLARATIONS
        size = len(message)
        sent = 0
        dirty = self._dirty
        for subscriber in members:
            if subscriber.close_code is not None:
                continue  # closed by an earlier change of this batch
            if subscriber.resync and channel in subscriber.resync:
                continue  # a fresh snapshot is already owed
            if (
                at_once_unless is not None
                and not subscriber.queued_bytes
                and (
                    len(subscriber.channels) == 1 or at_once_unless.isdisjoint(subscriber.channels)
                )
                and subscriber.sink.send_now(message)
            ):
                sent += 1
                continue
            if public is not None and not subscriber.embargoed:
                self._queue_or_resync(subscriber, channel, public)
                continue
            if subscriber.queued_bytes + size <= subscriber.limit:
                subscriber.queue.append(message)
                subscriber.queued_bytes += size
                dirty.add(subscriber)
                sent += 1
            elif is_log:
                # Nothing on the declarations log may be dropped silently: the client is
                # closed, reconnects and resumes with 'since'.
                self._on_slow_close()
                subscriber.close(CLOSE_TRY_LATER, "too far behind: resume with 'since'")
                self.disconnect(subscriber)
            else:
                subscriber.resync.add(channel)
                dirty.add(subscriber)
        self._on_send(sent)

    def _queue_or_resync(self, subscriber: Subscriber, channel: str, message: Outgoing) -> None:
        if subscriber.queued_bytes + len(message) <= subscriber.limit:
            subscriber.push(message)
        else:
            subscriber.resync.add(channel)
        self._dirty.add(subscriber)

    # --- embargo ---------------------------------------------------------------------------

    def embargo_active(self) -> bool:
        return self.embargo_until is not None and time.time() < self.embargo_until

    def _embargo_check(self, message: dict[str, Any]) -> Outgoing | None:
        """After a national change to the exit poll: the message for those who may not see
        it yet, or None when it is not (or no longer) embargoed."""
        if not self._take_up_embargo():
            return None
        patch = {k: v for k, v in message["patch"].items() if k != "exit_poll"}
        return encode({**message, "patch": patch})

    def _take_up_embargo(self) -> bool:
        """Adopt the national exit poll's embargo; True while it holds."""
        exit_poll = self.tally.state(NATIONAL).get("exit_poll", {})
        until = _timestamp(exit_poll.get("embargo_until"))
        self.embargo_until = until
        if until is None or time.time() >= until:
            return False
        self._embargo_seen = True
        self.on_embargo(until)
        return True

    def lift_embargo(self) -> None:
        """The embargo's time has come: everyone on national gets the full state."""
        if self.embargo_active():
            return
        for subscriber in self._by_channel.get(NATIONAL, ()):
            if not subscriber.embargoed:
                subscriber.push(self.snapshot(NATIONAL))
                self._dirty.add(subscriber)
        self.flush()

    def public_state(self, channel: str, embargoed: bool = False) -> dict[str, Any]:
        """The channel's state as a client with (or without) embargo rights may see it."""
        state = self.tally.state(channel)
        if channel == NATIONAL and not embargoed and self.embargo_active():
            return {k: v for k, v in state.items() if k != "exit_poll"}
        return state

    def flush(self) -> None:
        """Deliver the batch's changes; answer the resumers this batch caught up with; hand
        every subscriber with messages to its sink."""
        if self._pending:
            self._deliver_pending(at_once=True)
        if self._waiting:
            self._answer_waiting(expired_only=False)
        dirty, self._dirty = self._dirty, set()
        for subscriber in dirty:
            if subscriber.close_code is None:
                subscriber.sink.flush(subscriber)

    def reset(self, tally: Tally, epoch: Seq) -> None:
        """The stream was begun again, or rebuilt: every client gets a new hello and fresh
        snapshots. ``tally`` may hold state already (a rebuild): its embargo holds at once."""
        self.tally = tally
        self.epoch = epoch
        self._pending.clear()
        self._history.clear()
        self._snapshots.clear()
        self._embargo_seen = False
        self._take_up_embargo()
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
                subscriber.push(self.snapshot(channel, subscriber.embargoed))
            self._dirty.add(subscriber)
        self.flush()

    def settled(self, kept: Iterable[Change] = ()) -> None:
        """The tally's states were rebuilt with nothing published (a quiet catch-up): drop
        what was cached from before and take up the exit poll's embargo. The history of
        state channels starts here (a client resuming from an older seq gets a snapshot);
        that of the declarations log holds ``kept``, its latest changes, so that no client
        loses a declaration to a restart."""
        self._history.clear()
        self._snapshots.clear()
        self._take_up_embargo()
        self.publish(kept)  # nobody is subscribed yet: this only fills the history

    def adopt_epoch(self, epoch: Seq) -> None:
        """The first entry of a stream that was empty: no state to throw away, and no new
        hello — a client that was told epoch "0-0" resumes as ``_placeable`` allows."""
        self.epoch = epoch

    # --- what a sink takes ----------------------------------------------------------------

    def drain(self, subscriber: Subscriber) -> list[Outgoing]:
        """Everything queued for the subscriber, then any snapshots it is owed."""
        messages = list(subscriber.queue)
        subscriber.queue.clear()
        subscriber.queued_bytes = 0
        if subscriber.resync:
            # Taken now, and sent before any later delta is queued: the chain restarts here.
            messages.extend(
                self.snapshot(channel, subscriber.embargoed)
                for channel in sorted(subscriber.resync)
            )
            subscriber.resync.clear()
        return messages

    def snapshot(self, channel: str, embargoed: bool = True) -> Outgoing:
        """The channel's snapshot, encoded once per seq (and audience, under an embargo)."""
        seq = self.tally.channel_seq(channel)
        key = channel
        if channel == NATIONAL and not embargoed and self.embargo_active():
            key = "national (public)"
        cached = self._snapshots.get(key)
        if cached is not None and cached[0] == seq:
            return cached[1]
        message = encode(
            {
                "type": "snapshot",
                "channel": channel,
                "seq": str(seq),
                "data": self.public_state(channel, embargoed),
            }
        )
        self._snapshots[key] = (seq, message)
        return message

    # --- requests in -----------------------------------------------------------------------

    def handle(self, subscriber: Subscriber, text: str | bytes) -> None:
        """Answer one client frame. Bad requests get an error; the connection stays open."""
        if subscriber.close_code is not None:
            return
        if self._pending:
            # What was published before this request is queued before anything it causes
            # (a snapshot must follow the deltas it includes, never precede them).
            self._deliver_pending(at_once=False)
        if not self._take_token(subscriber):
            if subscriber.tokens < -4 * self.rate_limit:
                subscriber.close(CLOSE_POLICY, "request flood")
            else:
                self._send(
                    subscriber, error_message("rate_limited", "too many requests: slow down")
                )
            return
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._send(subscriber, error_message("bad_json", "the frame is not valid JSON"))
            return
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            self._send(subscriber, error_message("bad_request", 'expected an object with an "op"'))
            return
        op = request["op"]
        if op == "subscribe":
            self._subscribe(subscriber, request)
        elif op == "unsubscribe":
            self._unsubscribe(subscriber, request)
        elif op == "ping":
            subscriber.push(encode({"type": "pong", "id": request.get("id")}))
        else:
            subscriber.push(
                error_message(
                    "unknown_op", f"unknown op {op!r}: use subscribe, unsubscribe or ping"
                )
            )
        subscriber.sink.flush(subscriber)

    def _send(self, subscriber: Subscriber, message: Outgoing) -> None:
        subscriber.push(message)
        subscriber.sink.flush(subscriber)

    def _take_token(self, subscriber: Subscriber) -> bool:
        now = self.clock()
        burst = 2 * self.rate_limit
        subscriber.tokens = min(
            burst, subscriber.tokens + (now - subscriber.refilled) * self.rate_limit
        )
        subscriber.refilled = now
        subscriber.tokens -= 1
        return subscriber.tokens >= 0

    def _channel_list(self, subscriber: Subscriber, request: dict[str, Any]) -> list[str] | None:
        channels = request.get("channels")
        if (
            not isinstance(channels, list)
            or not channels
            or not all(isinstance(c, str) for c in channels)
        ):
            subscriber.push(
                error_message("bad_request", '"channels" must be a non-empty list of channel names')
            )
            return None
        return list(dict.fromkeys(channels))

    def _subscribe(self, subscriber: Subscriber, request: dict[str, Any]) -> None:
        channels = self._channel_list(subscriber, request)
        if channels is None:
            return
        new = [c for c in channels if c not in subscriber.channels]
        if len(subscriber.channels) + len(new) > self.max_channels:
            subscriber.push(
                error_message(
                    "too_many_channels",
                    f"a connection may hold at most {self.max_channels} channels",
                )
            )
            return
        since = request.get("since")
        if since is not None and not isinstance(since, dict):
            subscriber.push(error_message("bad_request", '"since" must map channels to seqs'))
            return
        client_epoch = request.get("epoch")
        unknown = [c for c in channels if not self.tally.has_channel(c)]
        forbidden = [
            c
            for c in channels
            if c not in unknown and subscriber.allowed is not None and not subscriber.allowed(c)
        ]
        if unknown:
            subscriber.push(error_message("unknown_channel", f"no such channel: {_few(unknown)}"))
        if forbidden:
            subscriber.push(
                error_message("forbidden", f"your credential does not allow: {_few(forbidden)}")
            )
        for channel in channels:
            if channel in unknown or channel in forbidden:
                continue
            resume_from = self._placeable(client_epoch, since.get(channel) if since else None)
            subscriber.channels.add(channel)
            subscriber.resync.discard(channel)
            self._leave(subscriber, channel)
            if resume_from is not None and resume_from > self.tally.seq:
                if resume_from.ms <= self.tally.seq.ms + AHEAD_LIMIT_MS:
                    # Seen on a faster instance: answered once this one applies it (flush),
                    # or with a snapshot after RESUME_WAIT (expire_waiting).
                    waiting = self._waiting.setdefault(subscriber, {})
                    waiting[channel] = (resume_from, self.clock())
                    self.on_resume_wait(RESUME_WAIT)
                    continue
                resume_from = None
            self._answer(subscriber, channel, resume_from)

    def _answer(self, subscriber: Subscriber, channel: str, since: Seq | None) -> None:
        """Join the channel and queue what rule 3 gives for ``since`` (applied here, or
        None): ``resumed`` at the channel's last change at or before it and every change
        after, or a snapshot when those are not all held.

        Joining and queueing happen with no await in between, and after this batch's
        changes were delivered to the members: nothing can fall between the answer and the
        deltas that follow it, nor arrive twice."""
        placed = self._place(channel, since) if since is not None else None
        if channel == NATIONAL and self._embargo_seen and not subscriber.embargoed:
            placed = None  # the history holds what this client may not have seen
        self._by_channel.setdefault(channel, set()).add(subscriber)
        if placed is None:
            subscriber.push(self.snapshot(channel, subscriber.embargoed))
            return
        at, backlog = placed
        subscriber.push(encode({"type": "resumed", "channel": channel, "seq": str(at)}))
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

    def expire_waiting(self) -> None:
        """Give a snapshot to every resumer that has waited RESUME_WAIT (a timer calls this:
        the stream may be quiet, and then no batch would end the wait)."""
        if self._waiting:
            self._answer_waiting(expired_only=True)
            self.flush()

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

    def _place(self, channel: str, since: Seq) -> tuple[Seq, list[Outgoing]] | None:
        """For a ``since`` this instance has applied: the channel's last change at or before
        it, and the messages after that one; None when the history no longer holds them all.
        """
        current = self.tally.channel_seq(channel)
        if since >= current:
            return current, []
        # Walk back from the newest change to the first one after ``since``: its ``prev`` is
        # the client's place in the chain. If the history runs out first, not all are held.
        backlog: list[Outgoing] = []
        for prev, message in reversed(self._history.get(channel, ())):
            backlog.append(message)
            if prev <= since:
                return prev, backlog[::-1]
        return None

    def _unsubscribe(self, subscriber: Subscriber, request: dict[str, Any]) -> None:
        channels = self._channel_list(subscriber, request)
        if channels is None:
            return
        for channel in channels:
            subscriber.channels.discard(channel)
            subscriber.resync.discard(channel)
            self._leave(subscriber, channel)

    def _hello(self) -> Outgoing:
        return encode(
            {
                "type": "hello",
                "election": self.tally.election.id,
                "epoch": str(self.epoch),
                "seq": str(self.tally.seq),
            }
        )


def _timestamp(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _few(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
