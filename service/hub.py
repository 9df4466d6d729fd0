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
from service.core.tally import LOG_CHANNELS, NATIONAL, Change, Tally

# Close codes (RFC 6455 and the IANA registry), as DESIGN.md guarantee 7 names them.
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_RESTART = 1012
CLOSE_TRY_LATER = 1013


RESUME_WAIT = 5.0
"""Seconds a resuming client waits for this instance to reach its seq before a snapshot."""
AHEAD_LIMIT_MS = 60_000


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


AHEAD: list[Outgoing] = []
"""``_backlog``'s answer when the client is ahead of this instance (compared by identity)."""


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
    ) -> None:
        self.tally = tally
        self.epoch = epoch
        self.history_size = history
        self.max_channels = max_channels
        self.rate_limit = rate_limit
        self.subscribers: set[Subscriber] = set()
        self._by_channel: dict[str, set[Subscriber]] = {}
        self._history: dict[str, deque[tuple[Seq, Outgoing]]] = {}
        """Per channel, the latest changes as (prev, message), oldest first."""
        self._snapshots: dict[str, tuple[Seq, Outgoing]] = {}
        self._dirty: set[Subscriber] = set()
        self._pending: list[tuple[str, Outgoing, Outgoing | None, tuple[Subscriber, ...]]] = []
        """This batch's changes, each with its channel's members as they were then."""
        self._waiting: dict[str, dict[Subscriber, tuple[Seq, float]]] = {}
        """Per channel, subscribers resuming from a seq this instance has not reached yet."""
        self._on_send = on_send or (lambda count: None)
        self._on_slow_close = on_slow_close or (lambda: None)
        self.embargo_until: float | None = None
        """When the current exit poll's embargo lifts (epoch seconds), if it has one."""
        self._embargo_seen = False
        self.on_embargo: Callable[[float], None] = lambda until: None
        """Called with the lift time of each new embargo: the caller calls lift_embargo."""

    # --- connections ---------------------------------------------------------------------

    def connect(self, subscriber: Subscriber) -> None:
        subscriber.tokens = 2 * self.rate_limit
        subscriber.refilled = time.monotonic()
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
        waiting = self._waiting.get(channel)
        if waiting is not None:
            waiting.pop(subscriber, None)
            if not waiting:
                del self._waiting[channel]

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
            receivers = tuple(members) if members else ()
            if change.channel in self._waiting:
                receivers += self._admit_waiting(change)
            if receivers:
                self._pending.append((change.channel, outgoing, public, receivers))

    def _admit_waiting(self, change: Change) -> tuple[Subscriber, ...]:
        """Let in resuming subscribers once this instance reaches the seq they hold;
        returns those who get this change."""
        waiting = self._waiting[change.channel]
        now = time.monotonic()
        joining: list[Subscriber] = []
        for subscriber, (since, started) in list(waiting.items()):
            if change.prev == since:
                # This change is the one after theirs: they get it with everyone else.
                del waiting[subscriber]
                self._by_channel.setdefault(change.channel, set()).add(subscriber)
                joining.append(subscriber)
            elif change.prev > since or now - started > RESUME_WAIT:
                # Their seq was never a change here, or we are too slow: start afresh, from
                # a snapshot that already holds this change.
                del waiting[subscriber]
                self._by_channel.setdefault(change.channel, set()).add(subscriber)
                subscriber.push(self.snapshot(change.channel, subscriber.embargoed))
                self._dirty.add(subscriber)
        if not waiting:
            del self._waiting[change.channel]
        return tuple(joining)

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
        is_log = channel in LOG_CHANNELS
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
                # Nothing on a log (declarations, posts) may be dropped silently: the
                # client is closed, reconnects and resumes with 'since'.
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
        """Deliver the batch's changes; hand every subscriber with messages to its sink."""
        if self._pending:
            self._deliver_pending(at_once=True)
        dirty, self._dirty = self._dirty, set()
        for subscriber in dirty:
            if subscriber.close_code is None:
                subscriber.sink.flush(subscriber)

    def reset(self, tally: Tally, epoch: Seq) -> None:
        """The stream was begun again: every client gets a new hello and fresh snapshots."""
        self.tally = tally
        self.epoch = epoch
        self._pending.clear()
        self._history.clear()
        self._snapshots.clear()
        self.embargo_until = None
        self._embargo_seen = False
        for channel, waiting in self._waiting.items():
            self._by_channel.setdefault(channel, set()).update(waiting)
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
        those of the logs (declarations, posts) hold ``kept``, their latest changes, so that
        no client loses an entry to a restart."""
        self._history.clear()
        self._snapshots.clear()
        self._take_up_embargo()
        self.publish(kept)  # nobody is subscribed yet: this only fills the history

    def adopt_epoch(self, epoch: Seq) -> None:
        """The first entry of a stream that was empty: no state to throw away, and no new
        hello — a client that was told epoch "0-0" resumes as ``_resumable`` allows."""
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
        now = time.monotonic()
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
            resume_from = since.get(channel) if since else None
            if not self._resumable(client_epoch, resume_from):
                resume_from = None
            # Registration and the snapshot (or resumed backlog) happen with no await in
            # between, so no delta can fall between what the client is sent and what follows.
            subscriber.channels.add(channel)
            subscriber.resync.discard(channel)
            self._stop_waiting(subscriber, channel)
            backlog = self._backlog(channel, resume_from)
            if channel == NATIONAL and self._embargo_seen and not subscriber.embargoed:
                backlog = None  # the history holds what this client may not have seen
            if backlog is None:
                self._by_channel.setdefault(channel, set()).add(subscriber)
                subscriber.push(self.snapshot(channel, subscriber.embargoed))
                continue
            subscriber.push(
                encode({"type": "resumed", "channel": channel, "seq": str(resume_from)})
            )
            if backlog is AHEAD:
                # The client has seen more than this instance has applied (it came from a
                # faster instance): what follows its seq will arrive here shortly.
                assert isinstance(resume_from, str)
                self._by_channel.get(channel, set()).discard(subscriber)
                self._waiting.setdefault(channel, {})[subscriber] = (
                    Seq.parse(resume_from),
                    time.monotonic(),
                )
                continue
            self._by_channel.setdefault(channel, set()).add(subscriber)
            for message in backlog:
                subscriber.push(message)

    def _resumable(self, client_epoch: object, since: object) -> bool:
        """Whether a ``since`` from a client that was told ``client_epoch`` is of this run.

        A client that connected while the stream was empty was told epoch "0-0". Its seqs
        are of this run if they are not older than the run's first entry (a stream begun
        again has later IDs than everything before it), or "0-0": the empty state.
        """
        if client_epoch == str(self.epoch):
            return True
        if client_epoch != str(ZERO) or not isinstance(since, str):
            return False
        try:
            seq = Seq.parse(since)
        except ValueError:
            return False
        return seq == ZERO or seq >= self.epoch

    def _backlog(self, channel: str, since: object) -> list[Outgoing] | None:
        """The messages after ``since`` on the channel, or None when not all are held."""
        if not isinstance(since, str):
            return None
        try:
            seq = Seq.parse(since)
        except ValueError:
            return None
        current = self.tally.channel_seq(channel)
        if seq == current:
            return []
        if seq > current:
            # Ahead of this instance, but not by more than a plausible lag.
            return AHEAD if seq.ms <= self.tally.seq.ms + AHEAD_LIMIT_MS else None
        history = self._history.get(channel)
        if not history:
            return None
        # Walk back from the newest change to the one that followed ``since``; if the
        # history runs out first, what the client missed is no longer held.
        messages: list[Outgoing] = []
        for prev, message in reversed(history):
            messages.append(message)
            if prev == seq:
                return messages[::-1]
            if prev < seq:
                return None
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
