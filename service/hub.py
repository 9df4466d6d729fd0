"""Channels and subscribers: snapshots, deltas, resume, bounded queues.

Every message is encoded once and the same bytes go to every subscriber of the channel.
Nothing here awaits: a subscriber's queue is drained by its connection's writer, so a slow
client costs only its own queue, never the others' time.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from service.core.seq import ZERO, Seq
from service.core.tally import DECLARATIONS, Change, Tally

# Close codes (RFC 6455 and the IANA registry), as DESIGN.md guarantee 7 names them.
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_RESTART = 1012
CLOSE_TRY_LATER = 1013


def encode(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message)


def error_frame(code: str, message: str) -> bytes:
    return encode({"type": "error", "code": code, "message": message})


@dataclass(slots=True, eq=False)
class Subscriber:
    """One connection's subscriptions and outgoing queue.

    The connection's writer waits on ``ready``, then takes ``drain()``; when the hub closes
    a subscriber it sets ``close_code`` and the writer closes the socket with it.
    """

    limit: int
    """Queue bound in bytes: past it the slow-client policy applies."""
    wake: Callable[[], None]
    """Called (without awaiting) when there is something for the writer to do."""
    channels: set[str] = field(default_factory=set)
    queue: deque[bytes] = field(default_factory=deque)
    queued_bytes: int = 0
    resync: set[str] = field(default_factory=set)
    """State channels whose deltas were dropped: a fresh snapshot goes out once drained."""
    close_code: int | None = None
    close_reason: str = ""
    allowed: Callable[[str], bool] | None = None
    """Channels this subscriber's credential permits; None: every channel."""
    tokens: float = 0.0
    refilled: float = 0.0

    def push(self, frame: bytes) -> None:
        if self.close_code is not None:
            return
        self.queue.append(frame)
        self.queued_bytes += len(frame)
        self.wake()

    def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
            self.queue.clear()
            self.queued_bytes = 0
            self.wake()


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
        self._history: dict[str, deque[tuple[Seq, bytes]]] = {}
        """Per channel, the latest changes as (prev, frame), oldest first."""
        self._snapshots: dict[str, tuple[Seq, bytes]] = {}
        self._on_send = on_send or (lambda count: None)
        self._on_slow_close = on_slow_close or (lambda: None)

    # --- connections ---------------------------------------------------------------------

    def connect(self, subscriber: Subscriber) -> None:
        subscriber.tokens = 2 * self.rate_limit
        subscriber.refilled = time.monotonic()
        self.subscribers.add(subscriber)
        subscriber.push(self._hello())

    def disconnect(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        for channel in subscriber.channels:
            members = self._by_channel.get(channel)
            if members is not None:
                members.discard(subscriber)
                if not members:
                    del self._by_channel[channel]
        subscriber.channels.clear()

    def subscription_counts(self) -> dict[str, int]:
        """Subscriptions by channel kind (``national``, ``constituency``, ...)."""
        counts: dict[str, int] = {}
        for channel, members in self._by_channel.items():
            kind = channel.partition(":")[0]
            counts[kind] = counts.get(kind, 0) + len(members)
        return counts

    # --- changes in ------------------------------------------------------------------------

    def publish(self, changes: Iterable[Change]) -> None:
        """Send each change to its channel's subscribers, encoded once."""
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
            frame = encode(message)
            history = self._history.get(change.channel)
            if history is None:
                history = self._history[change.channel] = deque(maxlen=self.history_size)
            history.append((change.prev, frame))
            members = self._by_channel.get(change.channel)
            if members:
                self._deliver(change.channel, frame, members)

    def _deliver(self, channel: str, frame: bytes, members: set[Subscriber]) -> None:
        is_log = channel == DECLARATIONS
        sent = 0
        for subscriber in tuple(members):
            if subscriber.queued_bytes + len(frame) <= subscriber.limit:
                if channel in subscriber.resync:
                    continue  # a fresh snapshot is already owed
                subscriber.push(frame)
                sent += 1
            elif is_log:
                # Nothing on the declarations log may be dropped silently: the client
                # reconnects and resumes with 'since'.
                self._on_slow_close()
                subscriber.close(CLOSE_TRY_LATER, "too far behind: resume with 'since'")
                self.disconnect(subscriber)
            else:
                subscriber.resync.add(channel)
        self._on_send(sent)

    def reset(self, tally: Tally, epoch: Seq) -> None:
        """The stream was begun again: every client gets a new hello and fresh snapshots."""
        self.tally = tally
        self.epoch = epoch
        self._history.clear()
        self._snapshots.clear()
        hello = self._hello()
        for subscriber in self.subscribers:
            subscriber.push(hello)
            subscriber.resync.clear()
            for channel in sorted(subscriber.channels):
                subscriber.push(self.snapshot_frame(channel))

    def adopt_epoch(self, epoch: Seq) -> None:
        """The first entry of a stream that was empty: no state to throw away."""
        self.epoch = epoch

    # --- what a writer takes -------------------------------------------------------------

    def drain(self, subscriber: Subscriber) -> list[bytes]:
        """Everything queued for the subscriber, then any snapshots it is owed."""
        frames = list(subscriber.queue)
        subscriber.queue.clear()
        subscriber.queued_bytes = 0
        if subscriber.resync:
            # Taken now, with no await before the writer sends them: later deltas follow.
            frames.extend(self.snapshot_frame(channel) for channel in sorted(subscriber.resync))
            subscriber.resync.clear()
        return frames

    def snapshot_frame(self, channel: str) -> bytes:
        seq = self.tally.channel_seq(channel)
        cached = self._snapshots.get(channel)
        if cached is not None and cached[0] == seq:
            return cached[1]
        frame = encode(
            {
                "type": "snapshot",
                "channel": channel,
                "seq": str(seq),
                "data": self.tally.state(channel),
            }
        )
        self._snapshots[channel] = (seq, frame)
        return frame

    # --- requests in -----------------------------------------------------------------------

    def handle(self, subscriber: Subscriber, text: str | bytes) -> None:
        """Answer one client frame. Bad requests get an error; the connection stays open."""
        if not self._take_token(subscriber):
            subscriber.push(error_frame("rate_limited", "too many requests: slow down"))
            if subscriber.tokens < -4 * self.rate_limit:
                subscriber.close(CLOSE_POLICY, "request flood")
            return
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            subscriber.push(error_frame("bad_json", "the frame is not valid JSON"))
            return
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            subscriber.push(error_frame("bad_request", 'expected an object with an "op"'))
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
                error_frame("unknown_op", f"unknown op {op!r}: use subscribe, unsubscribe or ping")
            )

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
                error_frame("bad_request", '"channels" must be a non-empty list of channel names')
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
                error_frame(
                    "too_many_channels",
                    f"a connection may hold at most {self.max_channels} channels",
                )
            )
            return
        since = request.get("since")
        if since is not None and not isinstance(since, dict):
            subscriber.push(error_frame("bad_request", '"since" must map channels to seqs'))
            return
        same_epoch = request.get("epoch") == str(self.epoch)
        unknown = [c for c in channels if not self.tally.has_channel(c)]
        forbidden = [
            c
            for c in channels
            if c not in unknown and subscriber.allowed is not None and not subscriber.allowed(c)
        ]
        if unknown:
            shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            subscriber.push(error_frame("unknown_channel", f"no such channel: {shown}"))
        if forbidden:
            shown = ", ".join(forbidden[:5]) + (" ..." if len(forbidden) > 5 else "")
            subscriber.push(error_frame("forbidden", f"your credential does not allow: {shown}"))
        for channel in channels:
            if channel in unknown or channel in forbidden:
                continue
            resume_from = since.get(channel) if since and same_epoch else None
            # Registration and the snapshot (or resumed backlog) happen with no await in
            # between, so no delta can fall between what the client is sent and what follows.
            subscriber.channels.add(channel)
            self._by_channel.setdefault(channel, set()).add(subscriber)
            subscriber.resync.discard(channel)
            backlog = self._backlog(channel, resume_from)
            if backlog is None:
                subscriber.push(self.snapshot_frame(channel))
            else:
                subscriber.push(
                    encode({"type": "resumed", "channel": channel, "seq": str(resume_from)})
                )
                for frame in backlog:
                    subscriber.push(frame)

    def _backlog(self, channel: str, since: object) -> list[bytes] | None:
        """The frames after ``since`` on the channel, or None when they are not all held."""
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
            return None
        history = self._history.get(channel)
        if not history:
            return None
        # Walk back from the newest change to the one that followed ``since``; if the
        # history runs out first, what the client missed is no longer held.
        frames: list[bytes] = []
        for prev, frame in reversed(history):
            frames.append(frame)
            if prev == seq:
                return frames[::-1]
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
            members = self._by_channel.get(channel)
            if members is not None:
                members.discard(subscriber)
                if not members:
                    del self._by_channel[channel]

    def _hello(self) -> bytes:
        return encode(
            {
                "type": "hello",
                "election": self.tally.election.id,
                "epoch": str(self.epoch),
                "seq": str(self.tally.seq),
            }
        )
