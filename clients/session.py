"""The client side of the seatcast wire protocol as a pure state machine: no I/O, no clock.

:class:`Session` takes each server message as a dict and returns the items an application
sees (:mod:`clients.items`); the requests it needs sent queue up for the caller. Two asyncio
shells move the bytes: :mod:`clients.client` over ``/ws``, where the client asks for each
channel, and :mod:`clients.sse` over ``/sse``, where the server answers the channels named
when connecting, unasked (``pushed``). It speaks only the wire; of ``service/`` it takes
only the protocol's own stream-ID type, :class:`service.core.seq.Seq`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import json_merge_patch

from clients.items import ConnectionState, ErrorMessage, Item, Message, Pong, State, Update
from service.core.seq import Seq

__all__ = [
    "LOG_CHANNELS",
    "ZERO",
    "ConnectionState",
    "ErrorMessage",
    "Item",
    "Message",
    "Pong",
    "Session",
    "State",
    "Update",
    "follow_posts",
]

LOG_CHANNELS = frozenset({"declarations", "posts"})
"""Channels that are logs of events rather than states patched by deltas."""
RECENT_KEPT = 50
"""How many events the client keeps in a log channel's ``recent`` list."""
ZERO = "0-0"
"""The seq before any entry, and the epoch of a service whose stream is still empty."""
_BARRIER = "seatcast-client-sync:"
"""Prefix of the ping ids the client uses to learn that a subscribe has been fully answered."""
_PUSHED = "pushed"
"""The key of the one answer a pushed session waits for: the connection's channels."""
_REFUSALS = frozenset({"unknown_channel", "forbidden"})
"""Error codes that refuse channels (their message names them after a colon)."""


# --- the protocol's bookkeeping, without I/O -------------------------------------------------


def follow_posts(posts: list[State], data: State) -> list[State]:
    """The posts (oldest first) after one event of the posts log, as a new list: a post is
    added last, a replacement takes its post's place, a withdrawal removes its post."""
    post = data.get("post", {})
    kept = [p for p in posts if p.get("id") != post.get("id")]
    if data.get("kind") == "withdrawal":
        return kept
    if data.get("kind") == "replacement" and len(kept) < len(posts):
        return [post if p.get("id") == post.get("id") else p for p in posts]
    return [*kept, post]


def _logged(channel: str, recent: list[State], data: State) -> list[State]:
    """A log's ``recent`` after one of its events (a new list).

    The declarations log lists its events; the posts log lists the posts themselves.
    """
    return follow_posts(recent, data) if channel == "posts" else [*recent, data]


def _at_or_before(seq: str, other: str) -> bool:
    try:
        return Seq.parse(seq) <= Seq.parse(other)
    except ValueError:
        return False


@dataclass(slots=True)
class _Channel:
    seq: str | None = None
    """The seq of the last message applied; None before the first snapshot."""
    state: State | None = None
    waiting: bool = True
    """A subscribe is unanswered: deltas are not applied until its snapshot or resumed."""
    barrier: str | None = None
    """The barrier ping after the subscribe this channel waits on."""


@dataclass(slots=True)
class _Sync:
    """One subscribe in flight, closed by the pong to the barrier ping sent after it."""

    channels: frozenset[str]
    resumed: set[str] = field(default_factory=set)
    snapshots: set[str] = field(default_factory=set)
    reason: str = ""
    refused: list[str] = field(default_factory=list)
    """Pushed: channels an error refused."""


class Session:
    """The client side of the protocol as a pure state machine.

    Call :meth:`receive` with each decoded server message; it returns the items to hand to the
    application and queues requests, which the caller must send in order: take them with
    :meth:`take_requests` after every call to ``receive``, ``subscribe``, ``unsubscribe`` and
    ``ping``; after each of those, :meth:`take_drop` says when to close the connection and try
    again later instead. Call :meth:`connection_lost` when the socket goes; the next ``hello``
    resubscribes every channel with ``since`` and ``epoch``.

    ``pushed`` (Server-Sent Events): the server answers the channels named when connecting,
    unasked, and takes no requests. Nothing is queued then; give ``receive`` each event's id,
    and connect with :meth:`next_connection`'s ``Last-Event-ID`` and :attr:`channels`. A gap
    or a change of channels is a drop (reconnect), since nothing can be asked on the way.
    """

    def __init__(
        self,
        channels: Iterable[str],
        *,
        since: Mapping[str, str] | None = None,
        epoch: str | None = None,
        pushed: bool = False,
    ) -> None:
        """``since`` resumes log channels (``declarations``, ``posts``) from saved seqs;
        ``epoch`` is the epoch those seqs belong to (None: trust the first ``hello``). State
        channels always start from a snapshot: there is no state to patch. Raises ValueError
        otherwise."""
        self.epoch = epoch
        self.connected = False
        self.pushed = pushed
        self.position: str | None = None
        """Pushed: the id of the last event received (``<epoch>:<seq>``)."""
        self._channels: dict[str, _Channel] = {name: _Channel() for name in channels}
        for name, seq in (since or {}).items():
            if name not in LOG_CHANNELS:
                raise ValueError(f"'since' resumes log channels only, not {name!r}")
            Seq.parse(seq)
            self._channels[name] = _Channel(seq=seq, state={"recent": []})
        self._requests: list[Message] = []
        self._drop: str | None = None
        self._syncs: dict[str, _Sync] = {}
        self._next_id = 0
        self._ever_live = False
        self._rewind: Seq | None = None
        """Pushed: a gap was seen after this seq; the next connection resumes from it."""
        self._since: Seq | None = None
        """Pushed: the seq this connection resumed from (its Last-Event-ID's)."""

    # --- reading ---------------------------------------------------------------------------

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self._channels)

    def state(self, channel: str) -> State | None:
        """The channel's state (for a log, ``{"recent": [...]}``), or None if not held."""
        tracked = self._channels.get(channel)
        return None if tracked is None else tracked.state

    def seq(self, channel: str) -> str | None:
        tracked = self._channels.get(channel)
        return None if tracked is None else tracked.seq

    def take_requests(self) -> list[Message]:
        requests, self._requests = self._requests, []
        return requests

    def take_drop(self) -> str | None:
        """Why the connection should be dropped and tried again, or None to keep it."""
        drop, self._drop = self._drop, None
        return drop

    def next_connection(self) -> str | None:
        """Pushed: the ``Last-Event-ID`` to open the next connection with (call before each
        attempt), or None to have every channel sent afresh.

        One id resumes every channel, so it is None while any channel has no state to resume
        (a channel just added, or one that must start again); after a gap it is the last
        good seq on the gapped channel, and the other channels skip what they already hold.
        """
        held = [t.seq for t in self._channels.values() if t.state is not None and t.seq]
        if self.epoch is None or not held or len(held) < len(self._channels):
            self._since = None
            return None
        if self._rewind is not None:
            point = f"{self.epoch}:{self._rewind}"
        elif self.position is not None:
            point = self.position
        else:  # only logs resumed from the constructor's since: the earliest of them
            point = f"{self.epoch}:{min(held, key=Seq.parse)}"
        try:
            self._since = Seq.parse(point.rpartition(":")[2])
        except ValueError:
            self._since = None
        return point

    # --- the application's requests --------------------------------------------------------

    def subscribe(self, channels: Iterable[str]) -> None:
        new = [name for name in dict.fromkeys(channels) if name not in self._channels]
        for name in new:
            self._channels[name] = _Channel()
        if new and self.connected:
            if self.pushed:
                self._drop = f"reconnecting to add {', '.join(new)}"
            else:
                self._subscribe(new, "subscribed")

    def unsubscribe(self, channels: Iterable[str]) -> None:
        gone = [name for name in dict.fromkeys(channels) if self._channels.pop(name, None)]
        if gone and self.connected:
            if self.pushed:
                self._drop = f"reconnecting without {', '.join(gone)}"
            else:
                self._requests.append({"op": "unsubscribe", "channels": gone})

    def ping(self) -> int | None:
        """Queue an application ping; returns its id, or None when not connected (or pushed:
        an event stream takes no requests)."""
        if not self.connected or self.pushed:
            return None
        self._next_id += 1
        self._requests.append({"op": "ping", "id": self._next_id})
        return self._next_id

    # --- the connection --------------------------------------------------------------------

    def connection_lost(self) -> None:
        self.connected = False
        self._drop = None
        self._syncs.clear()
        self._requests.clear()
        for tracked in self._channels.values():
            tracked.waiting = True

    def receive(self, message: Message, event_id: str | None = None) -> list[Item]:
        """Apply one server message; returns what the application should see, in order.
        ``event_id``: pushed, the event's id (the last one seen when it carries none)."""
        if event_id:
            self.position = event_id
        kind = message.get("type")
        if kind == "hello":
            return self._hello(message)
        if kind == "error":
            code, text = str(message.get("code", "")), str(message.get("message", ""))
            return [ErrorMessage(code, text, message), *self._refused(code, text)]
        if kind == "pong":
            return self._pong(message)
        channel = message.get("channel")
        tracked = self._channels.get(channel) if isinstance(channel, str) else None
        seq = message.get("seq")
        if tracked is None or not isinstance(channel, str) or not isinstance(seq, str):
            return []  # a channel since unsubscribed, or a frame this client does not know
        if kind == "snapshot":
            return self._snapshot(channel, tracked, seq, message)
        if kind == "resumed":
            return self._resumed(channel, tracked, seq, message)
        if kind in ("delta", "event"):
            return self._change(channel, tracked, seq, message)
        return []

    def _hello(self, message: Message) -> list[Item]:
        epoch = str(message.get("epoch"))
        if not self.connected and epoch == ZERO and self.epoch not in (None, ZERO):
            if any(t.seq not in (None, ZERO) for t in self._channels.values()):
                # An instance that has not read the stream yet knows no epoch: its state
                # is older than this client's. Come back later rather than go backwards.
                self._drop = "the service has not read the stream yet"
                return []
        begun_again = self.epoch is not None and epoch != self.epoch and not self._adopted(epoch)
        self.epoch = epoch
        if begun_again:
            # The stream was deleted and begun again: every seq held belongs to a dead epoch.
            for name in self._channels:
                self._channels[name] = _Channel()
            self._rewind = None
        if self.connected:
            # A hello on a live connection: the server sends fresh snapshots of every
            # channel unprompted; the barrier only tells when they are all in.
            if begun_again:
                channels = frozenset(self._channels)
                if self.pushed:
                    self._syncs[_PUSHED] = _Sync(channels, reason=f"new epoch {epoch}")
                else:
                    barrier = self._barrier(channels, f"new epoch {epoch}")
                    for tracked in self._channels.values():
                        tracked.barrier = barrier
            return []
        self.connected = True
        if self._channels:
            reason = f"new epoch {epoch}" if begun_again else "reconnected"
            if self.pushed:
                self._syncs[_PUSHED] = _Sync(frozenset(self._channels), reason=reason)
            else:
                self._subscribe(list(self._channels), reason)
        elif not self._ever_live:
            self._ever_live = True
            return [ConnectionState("live", "connected, no channels yet")]
        return []

    def _adopted(self, epoch: str) -> bool:
        """Whether ``epoch`` is the first entry of the stream this client saw while it was empty.

        A service on an empty stream says epoch ``0-0`` and takes the first entry's ID as its
        epoch without a new hello; a client that held ``0-0`` learns it only on reconnecting.
        Its seqs then all come at or after the new epoch; a stream begun again afresh would
        start after them.
        """
        if self.epoch != ZERO:
            return False
        try:
            start = Seq.parse(epoch)
            return all(
                t.seq in (None, ZERO) or Seq.parse(t.seq) >= start for t in self._channels.values()
            )
        except ValueError:
            return False

    def _subscribe(self, channels: list[str], reason: str) -> None:
        request: Message = {"op": "subscribe", "channels": channels}
        since = {
            name: tracked.seq
            for name in channels
            if (tracked := self._channels[name]).seq is not None and tracked.state is not None
        }
        if since and self.epoch is not None:
            request["since"] = since
            request["epoch"] = self.epoch
        self._requests.append(request)
        barrier = self._barrier(frozenset(channels), reason)
        for name in channels:
            self._channels[name].waiting = True
            self._channels[name].barrier = barrier

    def _barrier(self, channels: frozenset[str], reason: str) -> str:
        # Requests are answered in order, so the pong to this ping comes after every
        # snapshot, resumed backlog or error that the subscribe before it produced.
        self._next_id += 1
        barrier = f"{_BARRIER}{self._next_id}"
        self._syncs[barrier] = _Sync(channels, reason=reason)
        self._requests.append({"op": "ping", "id": barrier})
        return barrier

    def _pong(self, message: Message) -> list[Item]:
        ping_id = message.get("id")
        if not (isinstance(ping_id, str) and ping_id.startswith(_BARRIER)):
            return [Pong(ping_id, None, message)]
        sync = self._syncs.pop(ping_id, None)
        if sync is None:
            return []
        held = {
            name: self._channels[name] for name in sorted(sync.channels) if name in self._channels
        }
        refused = [name for name, t in held.items() if t.waiting and t.barrier == ping_id]
        for name in refused:
            del self._channels[name]  # the server said why, in an error before this pong
        return self._synced(sync, refused)

    def _refused(self, code: str, text: str) -> list[Item]:
        """Pushed: the channels an ``unknown_channel`` or ``forbidden`` error names are not
        coming (there is no barrier to tell); the answer may now be complete."""
        sync = self._syncs.get(_PUSHED)
        if sync is None or code not in _REFUSALS:
            return []
        named = text.partition(": ")[2].rpartition(" and ")[0] or text.partition(": ")[2]
        for name in named.split(", "):
            tracked = self._channels.get(name)
            if name in sync.channels and tracked is not None and tracked.waiting:
                del self._channels[name]
                sync.refused.append(name)
        return self._pushed_answered()

    def _pushed_answered(self) -> list[Item]:
        sync = self._syncs.get(_PUSHED)
        if sync is None or any(
            self._channels[name].waiting for name in sync.channels if name in self._channels
        ):
            return []
        del self._syncs[_PUSHED]
        self._rewind = None
        return self._synced(sync, sync.refused)

    def _synced(self, sync: _Sync, refused: list[str]) -> list[Item]:
        """Every channel of a subscribe is answered: what the application should see."""
        if not self._ever_live:
            self._ever_live = True
            answered = [name for name in sync.channels if name in self._channels]
            detail = f"{len(answered)} channel{'' if len(answered) == 1 else 's'}"
            if refused:
                detail += f"; refused: {', '.join(refused)}"
            return [ConnectionState("live", detail)]
        if sync.reason == "subscribed":
            return []  # channels added to a live connection: nothing was out of date
        parts = [sync.reason]
        if sync.resumed:
            parts.append(f"resumed {', '.join(sorted(sync.resumed))}")
        if sync.snapshots:
            parts.append(f"fresh snapshot of {', '.join(sorted(sync.snapshots))}")
        if refused:
            parts.append(f"refused: {', '.join(refused)}")
        return [ConnectionState("resynced", "; ".join(parts))]

    def _note(self, channel: str, outcome: Literal["resumed", "snapshot"]) -> list[Item]:
        for sync in self._syncs.values():
            if channel in sync.channels:
                (sync.resumed if outcome == "resumed" else sync.snapshots).add(channel)
        return self._pushed_answered() if self.pushed else []

    def _snapshot(self, channel: str, tracked: _Channel, seq: str, message: Message) -> list[Item]:
        data = message.get("data")
        if not isinstance(data, dict):
            return []
        tracked.seq, tracked.state, tracked.waiting = seq, data, False
        return [Update(channel, "snapshot", seq, data, message), *self._note(channel, "snapshot")]

    def _resumed(self, channel: str, tracked: _Channel, seq: str, message: Message) -> list[Item]:
        if tracked.state is None or tracked.seq is None or not _at_or_before(seq, tracked.seq):
            # Not a point this client can resume from: start the channel afresh.
            self._channels[channel] = _Channel()
            if self.pushed:
                self._drop = f"{channel} resumed at an unexpected seq"
            else:
                self._subscribe([channel], f"{channel} resumed at an unexpected seq")
            return []
        if self._since is None or _at_or_before(tracked.seq, str(self._since)):
            # The channel's last change at or before ours: the state we hold is its state.
            tracked.seq = seq
        # else pushed, resumed from before a gap on another channel: this one holds changes
        # after that point, which come again and are passed over as already applied.
        tracked.waiting = False
        return [
            Update(channel, "resumed", tracked.seq, tracked.state, message),
            *self._note(channel, "resumed"),
        ]

    def _change(self, channel: str, tracked: _Channel, seq: str, message: Message) -> list[Item]:
        if tracked.waiting or tracked.seq is None or tracked.state is None:
            return []  # a snapshot or resumed backlog is on its way and covers this
        if message.get("prev") != tracked.seq:
            try:
                stale = Seq.parse(seq) <= Seq.parse(tracked.seq)
            except ValueError:
                stale = False
            if not stale:
                # A gap: never apply this; ask for what was missed after the last good seq.
                if self.pushed:
                    self._gap(channel, tracked.seq)
                else:
                    self._subscribe([channel], f"gap on {channel} after {tracked.seq}")
            return []
        if message.get("type") == "event":
            data = message.get("data")
            if not isinstance(data, dict):
                return []
            recent = _logged(channel, tracked.state.get("recent", []), data)
            tracked.seq, tracked.state = seq, {**tracked.state, "recent": recent[-RECENT_KEPT:]}
            return [Update(channel, "event", seq, data, message)]
        patch = message.get("patch")
        # merge() edits its target in place: patch a copy, so states already handed out
        # stay as they were.
        state: State = json_merge_patch.merge(copy.deepcopy(tracked.state), patch)
        tracked.seq, tracked.state = seq, state
        return [Update(channel, "delta", seq, state, message)]

    def _gap(self, channel: str, last: str) -> None:
        """Pushed: reconnect from the last good seq on ``channel``, the earliest if several."""
        try:
            point = Seq.parse(last)
        except ValueError:
            self._channels[channel] = _Channel()  # no seq to resume from: start it afresh
            self._drop = f"gap on {channel}"
            return
        self._rewind = point if self._rewind is None else min(self._rewind, point)
        self._drop = f"gap on {channel} after {last}"
